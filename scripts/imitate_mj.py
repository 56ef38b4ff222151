#!/usr/bin/env python
"""Imitation learning from an expert dataset: GAIL, behavioural cloning, and the
apprenticeship-learning baselines (Ho & Ermon 2016).

    python scripts/imitate_mj.py --mode ga --data expert_trajs/cartpole.h5       # GAIL
    python scripts/imitate_mj.py --mode bclone --data expert_trajs/cartpole.h5   # BC
    python scripts/imitate_mj.py --mode ga --reward_type l2ball --data ...       # FEM
    python scripts/imitate_mj.py --mode ga --reward_type simplex --data ...      # GTAL

The environment comes from the dataset (attribute env_name); every flag has the original
default. Each iteration prints one row (header every 20 rows); with --log, rows, arguments and
policy snapshots (every --save_freq iterations) go to one HDF5 file for
`scripts/eval_policy.py FILE.h5/snapshots/iterNNNNNNN`.
"""
import argparse

from imitation import cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["bclone", "ga"],
                   help="ga: policy optimisation against a learned reward (GAIL with "
                        "--reward_type nn); bclone: behavioural cloning (required, except with "
                        "--resume: the run's own)")
    g = p.add_argument_group("expert data")
    g.add_argument("--data", help="expert dataset (HDF5, design.md section 6; required, except "
                                   "with --resume)")
    g.add_argument("--limit_trajs", type=cli.positive_int, default=None,
                   help="use the first N trajectories (default: all)")
    g.add_argument("--data_subsamp_freq", type=cli.positive_int, default=None,
                   help="keep every k-th pair from a random offset (default: the file's "
                        "data_subsamp_freq attribute, else 20)")
    g = p.add_argument_group("environment")
    g.add_argument("--env_name", default=None, help="default: the dataset's env_name")
    g.add_argument("--obs_adapter", default=None,
                   help="legacy observation adapter (default: the dataset's obs_adapter)")
    g.add_argument("--env_kwargs", default=None, metavar="JSON",
                   help="keyword arguments for gymnasium.make, a JSON object, e.g. "
                        "'{\"ctrl_cost_weight\": 0.05}' (stored in the log: evaluation and "
                        "--resume rebuild the same environment); default: the dataset's")
    g.add_argument("--max_traj_len", type=cli.positive_int, default=None,
                   help="episode length limit, replacing the environment's time limit "
                        "(may be longer; the original experts trained with 2000)")
    g = p.add_argument_group("policy")
    g.add_argument("--policy_hidden_spec", default=None,
                   help="JSON list of layers for the policy, value function and discriminator "
                        "(default: fc100-tanh-fc100-tanh)")
    g.add_argument("--tiny_policy", action="store_true", help="fc64-tanh-fc64-tanh")
    g.add_argument("--obsnorm_mode", choices=["none", "expertdata", "online"],
                   default="expertdata",
                   help="expertdata: initialise every standardizer from the expert data "
                        "(default); online: running statistics only; none: off")
    g = p.add_argument_group("behavioural cloning (--mode bclone)")
    g.add_argument("--bclone_lr", type=cli.positive_float, default=1e-3)
    g.add_argument("--bclone_batch_size", type=cli.positive_int, default=128)
    g.add_argument("--bclone_eval_ntrajs", type=cli.positive_int, default=20)
    g.add_argument("--bclone_eval_freq", type=cli.positive_int, default=1000)
    g.add_argument("--bclone_train_frac", type=cli.unit_interval, default=0.7)
    g = p.add_argument_group("policy optimisation (--mode ga)")
    g.add_argument("--discount", type=cli.unit_interval, default=0.995)
    g.add_argument("--lam", type=cli.unit_interval, default=0.97)
    g.add_argument("--max_iter", type=cli.positive_int, default=None,
                   help="iterations (ga, default 501) or Adam steps (bclone, default 20001)")
    g.add_argument("--policy_max_kl", type=cli.positive_float, default=0.01)
    g.add_argument("--policy_cg_damping", type=cli.nonneg_float, default=0.1)
    g.add_argument("--no_vf", type=cli.int01, default=0, help="1: no value function baseline")
    g.add_argument("--vf_max_kl", type=cli.positive_float, default=0.01)
    g.add_argument("--vf_cg_damping", type=cli.nonneg_float, default=0.1)
    g.add_argument("--policy_ent_reg", type=cli.nonneg_float, default=0.)
    g.add_argument("--reward_type", choices=["nn", "l2ball", "simplex"], default="nn",
                   help="nn: GAIL discriminator; l2ball: feature expectation matching; "
                        "simplex: game-theoretic apprenticeship learning")
    g.add_argument("--reward_lr", type=cli.positive_float, default=0.01)
    g.add_argument("--reward_steps", type=cli.positive_int, default=1)
    g.add_argument("--reward_ent_reg_weight", type=cli.nonneg_float, default=0.001)
    g.add_argument("--reward_include_time", type=cli.int01, default=0)
    g.add_argument("--sim_batch_size", type=cli.positive_int, default=None,
                   help="environments stepped together per worker (default: automatic)")
    g.add_argument("--min_total_sa", type=cli.positive_int, default=50000,
                   help="transitions sampled per iteration (default 50000)")
    g.add_argument("--favor_zero_expert_reward", type=cli.int01, default=0,
                   help="1: reward log D (<= 0), for tasks that end early on success")
    g = p.add_argument_group("output")
    g.add_argument("--print_freq", type=cli.positive_int, default=1)
    g.add_argument("--verbose", action="store_true",
                   help="print every log column on the console (default: a compact set; the "
                        "log always holds all of them; showlog.py --columns explains each)")
    g.add_argument("--save_freq", type=cli.positive_int, default=20)
    g.add_argument("--log", default=None, help="HDF5 log file to create")
    g.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write every logged field as a TensorBoard scalar per iteration to "
                        "DIR (needs tensorboardX: pip install -e \".[tensorboard]\")")
    cli.add_resume_arg(g)
    cli.add_common_args(p)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.require_unless_resume(parser, args, "mode", "data")
    cli.check_log_path(args.log, resume=args.resume)
    if args.tensorboard:
        cli.check_writable_output("--tensorboard", args.tensorboard, directory=True,
                                  create_parents=True)
    if args.resume:
        cli.restore_args(args, parser, argv)
    cli.setup_backend(args)
    from dataclasses import asdict

    from imitation.experiment import (
        DEFAULT_MAX_ITER,
        ImitationConfig,
        build_imitation,
        config_from,
    )

    if args.max_iter is None:
        args.max_iter = DEFAULT_MAX_ITER[args.mode]
    with build_imitation(config_from(ImitationConfig, args)) as exp:
        vars(args).update(asdict(exp.config))  # the log records what the builder resolved
        print(exp.summary, flush=True)
        exp.run(args.max_iter, log=args.log, save_freq=args.save_freq,
                print_freq=args.print_freq, resume=args.resume, attrs=vars(args),
                verbose=args.verbose, tensorboard=args.tensorboard)


if __name__ == "__main__":
    cli.run_main(main)
