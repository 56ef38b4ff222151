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

DEFAULT_MAX_ITER = {"ga": 501, "bclone": 20001}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["bclone", "ga"],
                   help="ga: policy optimisation against a learned reward (GAIL with "
                        "--reward_type nn); bclone: behavioural cloning (required, except with "
                        "--resume: the run's own)")
    g = p.add_argument_group("expert data")
    g.add_argument("--data", help="expert dataset (HDF5, SPEC section 6; required, except "
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
    g.add_argument("--save_freq", type=cli.positive_int, default=20)
    g.add_argument("--log", default=None, help="HDF5 log file to create")
    cli.add_resume_arg(g)
    cli.add_common_args(p)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.require_unless_resume(parser, args, "mode", "data")
    cli.check_log_path(args.log, resume=args.resume)
    if args.resume:
        cli.restore_args(args, parser, argv)
    else:
        args.policy_hidden_spec = cli.resolve_hidden_spec(args)
    cli.setup_backend(args)
    if args.max_iter is None:
        args.max_iter = DEFAULT_MAX_ITER[args.mode]

    import numpy as np

    from imitation.data import check_fits_mdp, load_dataset, subsample
    from imitation.envs import GymMDP
    from imitation.training import RunState, TrainingLog, train_loop
    from policyopt import FiniteSpace, SimConfig, imitation, nn, rl

    data = load_dataset(args.data)
    env_name = args.env_name or data.env_name
    if not env_name:
        raise cli.UserError(f"{args.data} records no env_name; pass --env_name")
    obs_adapter = args.obs_adapter or (data.obs_adapter if not args.env_name else None)
    args.env_name, args.obs_adapter = env_name, obs_adapter
    if args.data_subsamp_freq is None:
        freq = data.attrs.get("data_subsamp_freq") or 20
        try:
            args.data_subsamp_freq = int(freq)
        except (TypeError, ValueError):
            args.data_subsamp_freq = 0
        if args.data_subsamp_freq <= 0 or args.data_subsamp_freq != freq:
            raise cli.UserError(f"{args.data}: attribute data_subsamp_freq {freq!r} is not a "
                                "positive integer; pass --data_subsamp_freq")
    mdp = GymMDP(env_name, obs_adapter=obs_adapter, max_traj_len=args.max_traj_len,
                 num_workers=args.num_workers)
    args.num_workers = mdp.num_workers  # recorded resolved: a resume samples the same way
    try:
        check_fits_mdp(data, mdp)
        # offsets from RandomState(0) whatever --seed is, as the original
        ex_obs, ex_a, ex_t = subsample(data, args.limit_trajs, args.data_subsamp_freq)
        print(f"{args.mode} on {mdp.spec.gym_id}: {args.limit_trajs or data.num_trajs} expert "
              f"trajectories (return {data.returns_B[:args.limit_trajs].mean():.2f}), "
              f"{len(ex_obs)} pairs after subsampling every {args.data_subsamp_freq}; "
              f"{mdp.num_workers} sampling workers", flush=True)

        nn.seed_initializers(args.seed)
        rng = np.random.default_rng(args.seed)
        enable_obsnorm = args.obsnorm_mode != "none"
        if isinstance(mdp.action_space, FiniteSpace):
            policy = rl.GibbsPolicy(args.policy_hidden_spec, mdp.obs_space, mdp.action_space,
                                    enable_obsnorm=enable_obsnorm)
        else:
            policy = rl.GaussianPolicy(args.policy_hidden_spec, mdp.obs_space, mdp.action_space,
                                       enable_obsnorm=enable_obsnorm)
        if args.obsnorm_mode == "expertdata":
            policy.update_obsnorm(ex_obs)
        log = TrainingLog(args.log, attrs=vars(args))

        if args.mode == "bclone":
            opt = imitation.BehavioralCloningOptimizer(
                mdp, policy, lr=args.bclone_lr, batch_size=args.bclone_batch_size,
                obsfeat_fn=None, ex_obs=ex_obs, ex_a=ex_a,
                eval_sim_cfg=SimConfig(min_num_trajs=args.bclone_eval_ntrajs, min_total_sa=-1,
                                       batch_size=args.sim_batch_size,
                                       max_traj_len=args.max_traj_len),
                eval_freq=args.bclone_eval_freq, train_frac=args.bclone_train_frac, rng=rng)
            n_evals = (args.max_iter - 1) // args.bclone_eval_freq + 1

            def bclone_block():
                # Block k ends after Adam step k * eval_freq + 1 (block 0: after the first step);
                # its log row and snapshot are both labelled with the number of steps done.
                target = len(log_steps) * args.bclone_eval_freq + 1
                while opt.total_steps < min(target, args.max_iter):
                    opt.step()
                log_steps.append(opt.total_steps)
                return opt.evaluate()

            log_steps = []
            state = RunState([policy], shared_vars=policy.bclone_adam_state_vars(), rng=rng,
                             counters={"steps": (opt, "total_steps")})
            start = 0
            if args.resume:
                start = resume_point(state, args.log, n_evals)
                if start is None:
                    return
                log_steps.extend(logged_iters(args.log))
            train_loop(bclone_block, log, [policy], n_evals, save_freq=1,
                       print_freq=args.print_freq, start_iter=start,
                       extra_state=state.saver(lambda: len(log_steps) - 1),
                       snapshot_label=lambda it: log_steps[it])
            return

        time_scale = 1. / mdp.horizon(args.max_traj_len)
        if args.reward_type == "nn":
            reward = imitation.TransitionClassifier(
                hidden_spec=args.policy_hidden_spec, obsfeat_space=mdp.obs_space,
                action_space=mdp.action_space, adam_lr=args.reward_lr,
                adam_steps=args.reward_steps, ent_reg_weight=args.reward_ent_reg_weight,
                enable_inputnorm=enable_obsnorm, include_time=bool(args.reward_include_time),
                time_scale=time_scale,
                favor_zero_expert_reward=bool(args.favor_zero_expert_reward))
        else:
            reward = imitation.LinearReward(
                obsfeat_space=mdp.obs_space, action_space=mdp.action_space,
                mode=args.reward_type, enable_inputnorm=enable_obsnorm,
                favor_zero_expert_reward=bool(args.favor_zero_expert_reward),
                include_time=bool(args.reward_include_time), time_scale=time_scale)
        vf = None if args.no_vf else rl.ValueFunc(
            args.policy_hidden_spec, mdp.obs_space, enable_obsnorm=enable_obsnorm,
            enable_vnorm=True, max_kl=args.vf_max_kl, damping=args.vf_cg_damping,
            time_scale=time_scale)
        if args.obsnorm_mode == "expertdata":
            reward.update_inputnorm(ex_obs, ex_a)
            if vf is not None:
                vf.obsnorm.update(ex_obs)
        opt = imitation.ImitationOptimizer(
            mdp=mdp, discount=args.discount, lam=args.lam, policy=policy,
            sim_cfg=SimConfig(min_num_trajs=-1, min_total_sa=args.min_total_sa,
                              batch_size=args.sim_batch_size, max_traj_len=args.max_traj_len),
            step_func=rl.TRPO(max_kl=args.policy_max_kl, damping=args.policy_cg_damping),
            reward_func=reward, value_func=vf, policy_obsfeat_fn=None, reward_obsfeat_fn=None,
            policy_ent_reg=args.policy_ent_reg, ex_obs=ex_obs, ex_a=ex_a, ex_t=ex_t, rng=rng)
        models = [policy, reward] + ([vf] if vf is not None else [])
        shared = reward.adam_state_vars() if args.reward_type == "nn" else []
        state = RunState(models, shared_vars=shared, rng=rng,
                         counters={"iter": (opt, "curr_iter")})
        start = 0
        if args.resume:
            start = resume_point(state, args.log, args.max_iter)
            if start is None:
                return
        train_loop(opt.step, log, models, args.max_iter, args.save_freq, args.print_freq,
                   start_iter=start, extra_state=state.saver(lambda: opt.curr_iter - 1))
    finally:
        mdp.close()


def resume_point(state, log, n_iter):
    """Restore the run state from `log`; the next iteration, or None when already done."""
    start = state.load(log) + 1
    if start >= n_iter:
        print(f"{log} already holds iterations 0..{start - 1}; nothing to do")
        return None
    print(f"resuming {log} at iteration {start}", flush=True)
    return start


def logged_iters(log):
    """The `iter` column of a log's table (bclone: Adam steps done at each evaluation)."""
    from imitation.training import read_log

    return [int(i) for i in read_log(log).rows["iter"]]


if __name__ == "__main__":
    cli.run_main(main)
