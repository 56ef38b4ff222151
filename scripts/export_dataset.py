#!/usr/bin/env python
"""Export a project dataset to Minari or to a D4RL-style flat .npz, for other libraries.

    python scripts/export_dataset.py expert_trajs/cartpole.h5 --minari cartpole/gail-expert-v0
    python scripts/export_dataset.py expert_trajs/hopper.h5 --npz hopper_expert.npz

Minari datasets go to the local store ($MINARI_DATASETS_PATH or ~/.minari/datasets). How each
episode ended comes from the dataset when it records it (imported datasets do), else from its
length: an episode as long as the environment's time limit was truncated, a shorter one
terminated. Minari wants the observation after the last action too: an imported dataset has it;
for others it is a copy of the last observation, and the Minari dataset's description says so.
Importing an export gives back the same arrays.
"""
import argparse
import os

from imitation import cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="a project dataset (HDF5)")
    p.add_argument("--minari", metavar="ID", default=None,
                   help="write a Minari dataset with this id, e.g. cartpole/gail-expert-v0")
    p.add_argument("--npz", metavar="FILE", default=None,
                   help="write a D4RL-style flat .npz file")
    p.add_argument("--force", action="store_true", help="overwrite --npz if it exists")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.minari and not args.npz:
        raise cli.UserError("nothing to write: pass --minari ID and/or --npz FILE")
    if args.npz and os.path.exists(args.npz) and not args.force:
        raise cli.UserError(f"--npz {args.npz} already exists (pass --force to overwrite)")
    if args.npz:
        cli.check_writable_output("--npz", args.npz)
    from imitation import interop
    if args.minari:
        interop.check_minari_id(args.minari)
    from imitation.data import load_dataset
    from imitation.envs import GymMDP
    from imitation.errors import EnvError

    data = load_dataset(args.data)
    limit = None
    if data.env_name:
        try:  # the environment as the dataset was sampled in (adapter, kwargs)
            mdp = GymMDP(data.env_name, obs_adapter=data.obs_adapter, num_workers=0,
                         env_kwargs=data.attrs.get("env_kwargs"))
            limit = mdp.max_episode_steps
            mdp.close()
        except EnvError:  # an id this machine does not know: lengths say nothing
            limit = None
    eps = interop.from_dataset(data, max_episode_steps=limit)
    if args.npz:
        interop.write_flat(eps, args.npz)
        print(f"{args.npz}: {len(eps)} episodes")
    if args.minari:
        interop.write_minari(eps, args.minari)
        print(f"Minari dataset {args.minari}: {len(eps)} episodes")


if __name__ == "__main__":
    cli.run_main(main)
