#!/usr/bin/env python
"""Sample an expert dataset from a policy snapshot (the dataset format of design.md section 6).

    python scripts/sample_expert.py \\
        ~/.cache/policyopt/expert_policies/classic/CartPole-v0.h5/snapshots/iter0000100 \\
        --num_trajs 10 --out cartpole.h5

The file records env_name (and obs_adapter), the source policy, seed, returns and the command.
"""
import argparse
import os

from imitation import cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", help="FILE.h5/snapshots/iterNNNNNNN (FILE.h5 alone: last snapshot)")
    p.add_argument("--out", required=True, help="dataset file to write (must not exist)")
    p.add_argument("--num_trajs", type=cli.positive_int, required=True)
    p.add_argument("--env_name", help="default: the env_name stored with the policy")
    p.add_argument("--obs_adapter", default=None, help="legacy observation adapter")
    p.add_argument("--env_kwargs", default=None, metavar="JSON",
                   help="keyword arguments for gymnasium.make, a JSON object (default: the "
                        "ones stored with the policy's run , unless --env_name is given)")
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
    cli.check_writable_output("--out", args.out)
    from imitation.experts import sample_dataset

    sample_dataset(args.policy, args.out, args.num_trajs, env_name=args.env_name,
                   obs_adapter=args.obs_adapter, max_traj_len=args.max_traj_len,
                   deterministic=args.deterministic, seed=args.seed,
                   num_workers=args.num_workers, data_subsamp_freq=args.data_subsamp_freq,
                   full_length_only=args.full_length_only, env_kwargs=args.env_kwargs)


if __name__ == "__main__":
    cli.run_main(main)
