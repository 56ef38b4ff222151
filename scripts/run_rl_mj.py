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
    g.add_argument("--save_freq", type=cli.positive_int, default=20)
    g.add_argument("--print_freq", type=cli.positive_int, default=1)
    cli.add_resume_arg(g)
    cli.add_common_args(p)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.require_unless_resume(parser, args, "env_name")
    cli.check_log_path(args.log, resume=args.resume)
    if args.resume:
        cli.restore_args(args, parser, argv)
    else:
        args.policy_hidden_spec = cli.resolve_hidden_spec(args)
    cli.setup_backend(args)

    import numpy as np

    from imitation.envs import GymMDP
    from imitation.training import RunState, TrainingLog, train_loop
    from policyopt import FiniteSpace, SimConfig, nn, rl

    mdp = GymMDP(args.env_name, obs_adapter=args.obs_adapter, max_traj_len=args.max_traj_len,
                 num_workers=args.num_workers)
    args.num_workers = mdp.num_workers  # recorded resolved: a resume samples the same way
    nn.seed_initializers(args.seed)
    rng = np.random.default_rng(args.seed)
    if isinstance(mdp.action_space, FiniteSpace):
        policy = rl.GibbsPolicy(args.policy_hidden_spec, mdp.obs_space, mdp.action_space,
                                enable_obsnorm=bool(args.enable_obsnorm))
    else:
        policy = rl.GaussianPolicy(args.policy_hidden_spec, mdp.obs_space, mdp.action_space,
                                   enable_obsnorm=bool(args.enable_obsnorm))
    vf = rl.ValueFunc(args.policy_hidden_spec, mdp.obs_space,
                      enable_obsnorm=bool(args.enable_obsnorm), enable_vnorm=True,
                      max_kl=args.vf_max_kl, damping=args.vf_cg_damping,
                      time_scale=1. / mdp.horizon(args.max_traj_len))
    opt = rl.SamplingPolicyOptimizer(
        mdp, args.discount, args.lam, policy,
        SimConfig(min_num_trajs=-1, min_total_sa=args.min_total_sa,
                  batch_size=args.sim_batch_size, max_traj_len=args.max_traj_len),
        rl.TRPO(args.policy_max_kl, args.policy_cg_damping), vf, rng)
    print(f"TRPO on {mdp.spec.gym_id}: obs {mdp.obs_space.storage_size}, actions "
          f"{mdp.action_space}, policy {policy.get_num_params()} params, "
          f"{mdp.num_workers} sampling workers", flush=True)
    state = RunState([policy, vf], rng=rng, counters={"iter": (opt, "curr_iter")})
    start = 0
    if args.resume:
        start = state.load(args.log) + 1
        if start >= args.max_iter:
            print(f"{args.log} already holds iterations 0..{start - 1} (--max_iter "
                  f"{args.max_iter}); nothing to do")
            return
        print(f"resuming {args.log} at iteration {start}", flush=True)
    log = TrainingLog(args.log, attrs=vars(args))
    try:
        train_loop(opt.step, log, [policy, vf], args.max_iter, args.save_freq, args.print_freq,
                   start_iter=start, extra_state=state.saver(lambda: opt.curr_iter - 1))
    finally:
        mdp.close()


if __name__ == "__main__":
    cli.run_main(main)
