#!/usr/bin/env python
"""Evaluate a policy snapshot: mean and standard deviation of its return.

Works with the project's own logs and with the original authors' experts, e.g.

    python scripts/eval_policy.py \\
        ~/.cache/policyopt/expert_policies/modern/log_Hopper-v0_3.h5/snapshots/iter0000500 \\
        --env_name Hopper-v5 --num_trajs 10

The last line printed is always `return: <mean> +/- <std> (<n> trajectories)`.
"""
import argparse

from imitation import cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", help="FILE.h5/snapshots/iterNNNNNNN (FILE.h5 alone: last snapshot)")
    p.add_argument("--env_name", help="Gymnasium id, or an original id such as Ant-v1 (default: "
                                      "the env_name stored with the policy)")
    p.add_argument("--obs_adapter", default=None,
                   help="legacy observation adapter (ant_v1, acrobot_v0) for original experts")
    p.add_argument("--env_kwargs", default=None, metavar="JSON",
                   help="keyword arguments for gymnasium.make, a JSON object (default: the "
                        "ones stored with the policy's run, unless --env_name is given)")
    p.add_argument("--num_trajs", type=cli.positive_int, default=10,
                   help="evaluation trajectories (default: 10)")
    p.add_argument("--deterministic", action="store_true",
                   help="act with the distribution's mean/mode instead of sampling")
    p.add_argument("--max_traj_len", type=cli.positive_int, default=None,
                   help="cut episodes at this length (default: the environment's limit)")
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    cli.add_common_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.setup_backend(args)
    import numpy as np

    from imitation.envs import GymMDP, parse_env_kwargs
    from imitation.snapshots import check_policy_fits, load_policy_for_env, policy_summary
    from policyopt import SimConfig

    policy, key, run_args, env_name = load_policy_for_env(args.policy, args.env_name)
    # --env_kwargs is merged over the run's own (kept unless --env_name names another env)
    try:
        env_kwargs = {**parse_env_kwargs(None if args.env_name else run_args.get("env_kwargs")),
                      **parse_env_kwargs(args.env_kwargs)}
    except cli.EnvError as e:
        raise cli.UserError(f"--env_kwargs: {e}")
    mdp = GymMDP(env_name, obs_adapter=args.obs_adapter, max_traj_len=args.max_traj_len,
                 num_workers=args.num_workers, env_kwargs=env_kwargs)
    check_policy_fits(policy, mdp)
    if not args.quiet:
        adapter = f" with adapter {mdp.spec.adapter.name}" if mdp.spec.adapter else ""
        made = f" made with {env_kwargs}" if env_kwargs else ""
        print(f"{policy_summary(policy)}; {key}; {mdp.spec.gym_id}{adapter}{made}", flush=True)
    rng = np.random.default_rng(args.seed)
    batch = mdp.sim_mp(policy, None, SimConfig(min_num_trajs=args.num_trajs, min_total_sa=-1),
                       rng, deterministic=args.deterministic,
                       progress=None if args.quiet else "evaluating")
    mdp.close()
    rets = batch.returns
    if not args.quiet:
        print(f"lengths: mean {batch.obs.lengths.mean():.1f}, min {batch.obs.lengths.min()}, "
              f"max {batch.obs.lengths.max()}")
    print(f"return: {rets.mean():.2f} +/- {rets.std():.2f} ({len(rets)} trajectories)")


if __name__ == "__main__":
    cli.run_main(main)
