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
    p.add_argument("--env_kwargs", default=None, metavar="JSON",
                   help="keyword arguments the environment was made with (gymnasium.make), a "
                        "JSON object merged over the source's own, e.g. '{\"g\": 2.0}'; "
                        "stored in the dataset, so training builds the same environment")
    p.add_argument("--data_subsamp_freq", type=cli.positive_int, default=None,
                   help="store the subsampling frequency training uses by default (without it "
                        "training keeps every 20th pair, the paper's MuJoCo setting)")
    p.add_argument("--drop_unfinished", action="store_true",
                   help="flat files: drop a last episode that ends by neither a terminal nor a "
                        "timeout flag (D4RL files often end mid-episode)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        raise cli.UserError(f"--out {args.out} already exists (pass --force to overwrite)")
    cli.check_writable_output("--out", args.out)
    from imitation import interop
    from imitation.data import command_line
    from imitation.envs import parse_env_kwargs

    try:
        given_kwargs = parse_env_kwargs(args.env_kwargs)
    except cli.EnvError as e:
        raise cli.UserError(f"--env_kwargs: {e}")

    if os.path.splitext(args.source)[1].lower() in (".npz", ".hdf5", ".h5"):
        eps = interop.read_flat(args.source, drop_unfinished=args.drop_unfinished)
    else:
        eps = interop.read_minari(args.source)
    if args.env_name and args.env_name != eps.env_name:
        eps.env_kwargs = None  # the source's kwargs belong to its own environment
    eps.env_name = args.env_name or eps.env_name
    if not eps.env_name:
        raise cli.UserError(f"{args.source} does not say which environment it comes from: "
                            "pass --env_name")
    eps.env_kwargs = {**(eps.env_kwargs or {}), **given_kwargs} or None
    data = interop.fit_to_env(eps, eps.env_name, eps.env_kwargs)
    interop.write_dataset(data, args.out, {"command": command_line(),
                                           "data_subsamp_freq": args.data_subsamp_freq})
    n = sum(len(r) for r in eps.rewards)
    kw = f" made with {eps.env_kwargs}" if eps.env_kwargs else ""
    print(f"{args.out}: {len(eps)} episodes, {n} steps of {eps.env_name}{kw} from {eps.source} "
          f"({int(eps.terminated.sum())} terminated, {int(eps.truncated.sum())} truncated)")
    if args.data_subsamp_freq is None:
        print("note: training keeps every 20th pair of these episodes by default (the paper's "
              "MuJoCo setting); pass --data_subsamp_freq to imitate_mj.py, or store another "
              "default with import_dataset.py --data_subsamp_freq N")


if __name__ == "__main__":
    cli.run_main(main)
