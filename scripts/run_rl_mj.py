#!/usr/bin/env python
"""Train a policy with TRPO (e.g. an expert for imitation).

    python scripts/run_rl_mj.py --env_name Hopper-v5 --log runs/hopper_trpo.h5

Every iteration prints one row (header every 20 rows); with --log, the rows, the run's
arguments and policy/value-function snapshots (every --save_freq iterations) go to one HDF5
file, whose snapshots `scripts/eval_policy.py FILE.h5/snapshots/iterNNNNNNN` evaluates.
"""
import argparse

from imitation import cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("environment")
    g.add_argument("--env_name",
                   help="Gymnasium id (any Box or Discrete action space), or an original id such "
                        "as Hopper-v1 (required, except with --resume: the run's own)")
    g.add_argument("--obs_adapter", default=None, help="legacy observation adapter (ant_v1, "
                                                       "acrobot_v0)")
    g.add_argument("--env_kwargs", default=None, metavar="JSON",
                   help="keyword arguments for gymnasium.make, a JSON object, e.g. "
                        "'{\"ctrl_cost_weight\": 0.05}' (stored in the log: evaluation and "
                        "--resume rebuild the same environment)")
    g.add_argument("--max_traj_len", type=cli.positive_int, default=None,
                   help="episode length limit, replacing the environment's time limit "
                        "(may be longer; the original experts trained with 2000)")
    g = p.add_argument_group("policy")
    g.add_argument("--policy_hidden_spec", default=None,
                   help="JSON list of layers (default: fc100-tanh-fc100-tanh)")
    g.add_argument("--tiny_policy", action="store_true", help="fc64-tanh-fc64-tanh")
    g.add_argument("--enable_obsnorm", type=cli.int01, default=1,
                   help="standardize observations with running statistics (default: 1)")
    g = p.add_argument_group("TRPO")
    g.add_argument("--max_iter", type=cli.positive_int, default=500)
    g.add_argument("--discount", type=cli.unit_interval, default=0.995)
    g.add_argument("--lam", type=cli.unit_interval, default=0.97)
    g.add_argument("--policy_max_kl", type=cli.positive_float, default=0.01)
    g.add_argument("--policy_cg_damping", type=cli.nonneg_float, default=0.1)
    g.add_argument("--vf_max_kl", type=cli.positive_float, default=0.01)
    g.add_argument("--vf_cg_damping", type=cli.nonneg_float, default=0.1)
    g.add_argument("--min_total_sa", type=cli.positive_int, default=50000,
                   help="transitions sampled per iteration (whole trajectories; default 50000)")
    g.add_argument("--sim_batch_size", type=cli.positive_int, default=None,
                   help="environments stepped together per worker (default: automatic)")
    g = p.add_argument_group("output")
    g.add_argument("--log", default=None, help="HDF5 log file to create")
    g.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write every logged field as a TensorBoard scalar per iteration to "
                        "DIR (needs tensorboardX: pip install -e \".[tensorboard]\")")
    g.add_argument("--save_freq", type=cli.positive_int, default=20)
    g.add_argument("--print_freq", type=cli.positive_int, default=1)
    g.add_argument("--verbose", action="store_true",
                   help="print every log column on the console (default: a compact set; the "
                        "log always holds all of them; showlog.py --columns explains each)")
    cli.add_resume_arg(g)
    cli.add_common_args(p)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.require_unless_resume(parser, args, "env_name")
    cli.check_log_path(args.log, resume=args.resume)
    if args.tensorboard:
        cli.check_writable_output("--tensorboard", args.tensorboard, directory=True,
                                  create_parents=True)
    if args.resume:
        cli.restore_args(args, parser, argv)
    cli.setup_backend(args)
    from dataclasses import asdict

    from imitation.experiment import RLConfig, build_trpo, config_from

    with build_trpo(config_from(RLConfig, args)) as exp:
        vars(args).update(asdict(exp.config))  # the log records what the builder resolved
        print(exp.summary, flush=True)
        exp.run(args.max_iter, log=args.log, save_freq=args.save_freq,
                print_freq=args.print_freq, resume=args.resume, attrs=vars(args),
                verbose=args.verbose, tensorboard=args.tensorboard)


if __name__ == "__main__":
    cli.run_main(main)
