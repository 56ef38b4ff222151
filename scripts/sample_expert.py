#!/usr/bin/env python
"""Sample an expert dataset from a policy snapshot (the dataset format of SPEC section 6).

    python scripts/sample_expert.py ../shared/expert_policies/classic/CartPole-v0.h5/snapshots/iter0000100 \\
        --num_trajs 10 --out cartpole.h5

The file records env_name (and obs_adapter), the source policy, seed, returns and the command.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imitation import cli  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", help="FILE.h5/snapshots/iterNNNNNNN (FILE.h5 alone: last snapshot)")
    p.add_argument("--out", required=True, help="dataset file to write (must not exist)")
    p.add_argument("--num_trajs", type=cli.positive_int, required=True)
    p.add_argument("--env_name", help="default: the env_name stored with the policy")
    p.add_argument("--obs_adapter", default=None, help="legacy observation adapter")
    p.add_argument("--max_traj_len", type=cli.positive_int, default=None)
    p.add_argument("--deterministic", action="store_true",
                   help="act with the mean/mode (the paper's datasets use the stochastic expert)")
    p.add_argument("--data_subsamp_freq", type=cli.positive_int, default=None,
                   help="record this subsampling frequency as the dataset's default")
    p.add_argument("--full_length_only", action="store_true",
                   help="keep only trajectories that run to the time limit, sampling on until "
                        "--num_trajs of them are kept (for experts that fall in some episodes "
                        "on today's environments but did not on the originals)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    cli.add_common_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.setup_backend(args)
    if os.path.exists(args.out) and not args.force:
        raise cli.UserError(f"--out {args.out} already exists (pass --force to overwrite)")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise cli.UserError(f"--out {args.out}: directory {out_dir} does not exist")
    sample_dataset(args.policy, args.out, args.num_trajs, env_name=args.env_name,
                   obs_adapter=args.obs_adapter, max_traj_len=args.max_traj_len,
                   deterministic=args.deterministic, seed=args.seed,
                   num_workers=args.num_workers, data_subsamp_freq=args.data_subsamp_freq,
                   full_length_only=args.full_length_only)


def sample_dataset(policy_string, out, num_trajs, env_name=None, obs_adapter=None,
                   max_traj_len=None, deterministic=False, seed=0, num_workers=None,
                   data_subsamp_freq=None, full_length_only=False, verbose=True):
    """Roll out a snapshot and write the dataset; returns the sampled TrajBatch.

    With `full_length_only`, trajectories that end before the time limit are dropped and
    sampling goes on until `num_trajs` full-length ones are kept, in the order sampled.
    """
    import numpy as np

    from imitation.data import command_line, write_dataset
    from imitation.envs import GymMDP
    from imitation.snapshots import check_policy_fits, load_policy_for_env

    policy, key, _, env_name = load_policy_for_env(policy_string, env_name)
    mdp = GymMDP(env_name, obs_adapter=obs_adapter, max_traj_len=max_traj_len,
                 num_workers=num_workers)
    try:
        check_policy_fits(policy, mdp)
        batch, n_dropped = _sample_trajs(mdp, policy, num_trajs, np.random.default_rng(seed),
                                         deterministic, full_length_only, max_traj_len,
                                         "sampling expert trajectories" if verbose else None)
    finally:
        mdp.close()
    rets = batch.returns
    write_dataset(out, batch, {
        "expert_trained_with": policy_file_attr(policy_string, "trained_with"),
        "env_name": env_name, "obs_adapter": mdp.spec.adapter.name if mdp.spec.adapter else None,
        "gym_id": mdp.spec.gym_id, "source_policy": policy_string, "seed": int(seed),
        "deterministic": int(deterministic), "num_trajs": int(len(batch)),
        "return_mean": float(rets.mean()), "return_std": float(rets.std()),
        "data_subsamp_freq": data_subsamp_freq, "command": command_line(),
        "full_length_only": int(full_length_only), "dropped_trajs": int(n_dropped)})
    if verbose:
        dropped = f" ({n_dropped} shorter ones dropped)" if full_length_only else ""
        print(f"wrote {out}: {len(batch)} trajectories{dropped}, {batch.num_sa} transitions, "
              f"return {rets.mean():.2f} +/- {rets.std():.2f}")
    return batch


# Give up on full-length trajectories when fewer than one in this many reaches the time limit.
MAX_DROP_RATIO = 10


def _sample_trajs(mdp, policy, num_trajs, rng, deterministic, full_length_only, max_traj_len,
                  progress):
    """(TrajBatch of num_trajs trajectories, number of early-ended ones dropped)."""
    from imitation.errors import UserError
    from imitation.envs import NO_TIME_LIMIT
    from policyopt import SimConfig, TrajBatch

    def sample(n):
        return mdp.sim_mp(policy, None, SimConfig(min_num_trajs=n, min_total_sa=-1), rng,
                          deterministic=deterministic, progress=progress)

    if not full_length_only:
        return sample(num_trajs), 0
    horizon = mdp.horizon(max_traj_len)
    if horizon >= NO_TIME_LIMIT:
        raise UserError(f"--full_length_only: {mdp.spec.env_name} has no time limit; "
                        "pass --max_traj_len")
    kept, n_sampled = [], 0
    while len(kept) < num_trajs:
        if n_sampled >= MAX_DROP_RATIO * num_trajs:
            raise UserError(f"--full_length_only: only {len(kept)} of {n_sampled} trajectories "
                            f"reached the time limit of {horizon} steps")
        batch = sample(num_trajs - len(kept))
        n_sampled += len(batch)
        kept += [t for t in batch.trajs if len(t.obs_T_Do) == horizon]
    return TrajBatch.from_trajs(kept[:num_trajs]), n_sampled - len(kept)


def policy_file_attr(policy_string, name):
    """A root attribute of the policy's file (e.g. how the expert was trained), or None."""
    from imitation.snapshots import open_h5, parse_policy_string

    with open_h5(parse_policy_string(policy_string)[0]) as f:
        v = f.attrs.get(name)
    return v.decode() if isinstance(v, bytes) else v


if __name__ == "__main__":
    cli.run_main(main)
