#!/usr/bin/env python
"""What does a GAIL run's discriminator look at? Scores D's logit on fresh policy rollouts and
on the expert pairs, then again with the actions swapped, at one snapshot of a training log.

    python scripts/inspect_discriminator.py \\
        runs/mujoco_original/logs/halfcheetah/ga_n4_run0.h5 --iter 100

Rows (score = D's logit; expert pairs score > 0 when D is right; the policy's reward is
-log(1 - sigmoid(score)), about exp(score) for very negative scores):
  policy                        the policy's states and sampled actions
  policy, mean action           the same states, the policy's mean action (its noise removed)
  policy, zero action           the same states, action 0
  expert                        the expert pairs the run imitated (first --limit_trajs, every step)
  expert, policy's mean action  expert states, the policy's mean action there
When swapping actions barely moves the scores, D separates the two by their states alone, and
the policy's reward only rises once it reaches expert-like states. Two more lines: the share of
the policy's reward held by its top 1% and 10% of pairs (near 100%: a sparse signal), and the
policy-pair inputs (obs[i], a[j]) most correlated with D's score.
"""
import argparse

from imitation import cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", help="a GAIL training log (imitate_mj.py --mode ga --reward_type nn)")
    p.add_argument("--iter", type=cli.nonneg_int, default=None,
                   help="snapshot iteration (default: the last)")
    p.add_argument("--num_trajs", type=cli.positive_int, default=3,
                   help="policy rollouts to score (default: 3)")
    p.add_argument("--data", default=None, help="expert dataset (default: the run's --data)")
    cli.add_common_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.setup_backend(args)
    import numpy as np

    from imitation.data import load_dataset, subsample
    from imitation.diagnostics import (
        load_discriminator,
        reward_concentration,
        score_table,
        top_correlations,
    )
    from imitation.envs import GymMDP
    from imitation.snapshots import check_policy_fits, load_policy
    from policyopt import ContinuousSpace, SimConfig

    key = None if args.iter is None else f"snapshots/iter{args.iter:07d}"
    policy, key, run_args = load_policy(args.log if key is None else f"{args.log}/{key}")
    if run_args.get("mode") != "ga" or run_args.get("reward_type", "nn") != "nn":
        raise cli.UserError(f"{args.log} is not a GAIL run with a neural discriminator")
    if not isinstance(policy.action_space, ContinuousSpace):
        raise cli.UserError("only continuous actions are supported (swapping a discrete "
                            "action changes which score is read, not the input)")
    data = load_dataset(args.data or run_args["data"])
    n_ex = run_args.get("limit_trajs") or data.num_trajs
    mdp = GymMDP(run_args["env_name"], obs_adapter=run_args.get("obs_adapter"),
                 num_workers=args.num_workers)
    try:
        check_policy_fits(policy, mdp)
        reward = load_discriminator(args.log, key, run_args, mdp.obs_space, mdp.action_space)
        batch = mdp.sim_mp(policy, None, SimConfig(min_num_trajs=args.num_trajs,
                                                   min_total_sa=-1),
                           np.random.default_rng(args.seed))
    finally:
        mdp.close()
    ex_obs, ex_a, ex_t = subsample(data, n_ex, data_subsamp_freq=1)   # every step

    print(f"{args.log}/{key}: policy return {batch.returns.mean():.1f} over {len(batch)} "
          f"rollouts; {len(ex_obs)} expert pairs from {n_ex} trajectories")
    print(f"{'':30s} {'mean':>8s} {'p10':>8s} {'p90':>8s} {'D right':>8s}")
    table = score_table(reward, policy, batch, ex_obs, ex_a, ex_t)
    for name, s in table:
        right = np.mean(s > 0) if name.startswith("expert") else np.mean(s < 0)
        print(f"{name:30s} {s.mean():8.2f} {np.percentile(s, 10):8.2f} "
              f"{np.percentile(s, 90):8.2f} {right:8.1%}")
    # Where the policy's reward comes from: a few pairs (sparse signal) or all of them, and
    # which inputs move D's score on the policy's own pairs.
    o, a, t = batch.obsfeat.stacked, batch.a.stacked, batch.time.stacked
    s_pi = dict(table)["policy"]
    r_pi = reward.compute_reward(o, a, t)
    if np.all(r_pi >= 0):
        top1, top10 = reward_concentration(r_pi)
        print(f"policy reward held by its top 1% of pairs: {top1:.1%}, top 10%: {top10:.1%}")
    names = [f"obs[{i}]" for i in range(o.shape[1])] + [f"a[{j}]" for j in range(a.shape[1])]
    corr = top_correlations(np.concatenate([o, a], axis=1), s_pi, names)
    print("score on policy pairs most correlated with: "
          + ", ".join(f"{n} {c:+.2f}" for n, c in corr))


if __name__ == "__main__":
    cli.run_main(main)
