#!/usr/bin/env python
"""Get the original authors' expert policies, which the paper's protocol samples datasets from.

    python scripts/fetch_experts.py                  # into ~/.cache/policyopt/expert_policies
    python scripts/fetch_experts.py --dest DIR       # somewhere else
    python scripts/fetch_experts.py --source /path/to/expert_policies   # an offline copy
    python scripts/fetch_experts.py --check DIR      # only verify a copy

The files come from the original repository, openai/imitation, at a pinned commit (MIT License,
Copyright (c) 2016 Jonathan Ho and Stefano Ermon); every file's SHA-256 is checked before it is
put in place, and files already present with the right checksum are kept. `im_pipeline.py
--experts original` then finds them; a copy elsewhere is named with $POLICYOPT_EXPERTS_DIR (or
`--experts DIR`). The project's own experts (expert_trajs/policies, `--experts own`) need
nothing fetched.
"""
import argparse

from imitation import cli


def build_parser():
    from imitation import original_experts as oe

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", default=None,
                   help=f"directory to write (default: {oe.default_fetch_dir()})")
    p.add_argument("--source", default=oe.DEFAULT_SOURCE,
                   help="base URL (https://, file://) or directory holding classic/ and modern/ "
                        "(default: the original repository at commit "
                        f"{oe.COMMIT[:12]})")
    p.add_argument("--only", default=None,
                   help="comma-separated subset, e.g. classic/CartPole-v0.h5")
    p.add_argument("--check", metavar="DIR", default=None,
                   help="verify the experts in DIR against the pinned checksums; fetch nothing")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from imitation import original_experts as oe

    files = args.only.split(",") if args.only else None
    if args.check:
        problems = oe.verify(args.check, files)
        for rel, what in problems.items():
            print(f"  {rel}: {what}")
        if problems:
            raise cli.UserError(f"{len(problems)} of {len(files or oe.FILES)} expert files in "
                                f"{args.check} are missing or differ")
        print(f"{args.check}: all {len(files or oe.FILES)} expert files match")
        return 0
    print(f"fetching the original experts from {args.source}")
    dest = oe.fetch(args.dest, args.source, files)
    print(f"done: {dest}")
    if args.dest and args.dest != oe.default_fetch_dir():
        print(f"im_pipeline.py finds them with: export {oe.ENV_VAR}={dest}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)
