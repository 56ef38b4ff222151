#!/usr/bin/env python
"""Import expert demonstrations into the project's dataset format (design.md section 6).

SOURCE is a Minari dataset id from the local store (`minari download ID` fetches a remote one
first), or a D4RL-style flat file (.npz, .hdf5/.h5) with one row per step: observations,
actions, rewards, terminals, timeouts. The result trains like any dataset:

    python scripts/import_dataset.py cartpole/expert-v0 --out cartpole_minari.h5
    python scripts/import_dataset.py hopper_medium.hdf5 --env_name Hopper-v5 --out hopper.h5
    python scripts/imitate_mj.py --mode ga --data cartpole_minari.h5

The dataset records the source, how each episode ended (terminated_B, truncated_B) and, from
Minari, the observation after each episode's last action (obs_final_B_Do). The environment id
comes from the source when it has one; --env_name overrides it. The data must fit the
environment's observation and action spaces.
"""
import argparse
import os

from imitation import cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a Minari dataset id, or a .npz/.hdf5/.h5 flat file")
    p.add_argument("--out", required=True, help="dataset file to write (must not exist)")
    p.add_argument("--env_name", default=None,
                   help="the environment the data comes from (default: the source's own)")
    p.add_argument("--drop_unfinished", action="store_true",
                   help="flat files: drop a last episode that ends by neither a terminal nor a "
                        "timeout flag (D4RL files often end mid-episode)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        raise cli.UserError(f"--out {args.out} already exists (pass --force to overwrite)")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise cli.UserError(f"--out {args.out}: directory {out_dir} does not exist")
    from imitation import interop
    from imitation.data import command_line

    if os.path.splitext(args.source)[1].lower() in (".npz", ".hdf5", ".h5"):
        eps = interop.read_flat(args.source, drop_unfinished=args.drop_unfinished)
    else:
        eps = interop.read_minari(args.source)
    eps.env_name = args.env_name or eps.env_name
    if not eps.env_name:
        raise cli.UserError(f"{args.source} does not say which environment it comes from: "
                            "pass --env_name")
    data = interop.to_expert_data(eps)
    interop.check_fits_env(data, eps.env_name)
    interop.write_dataset(data, args.out, {"command": command_line()})
    n = sum(len(r) for r in eps.rewards)
    print(f"{args.out}: {len(eps)} episodes, {n} steps of {eps.env_name} from {eps.source} "
          f"({int(eps.terminated.sum())} terminated, {int(eps.truncated.sum())} truncated)")


if __name__ == "__main__":
    cli.run_main(main)
