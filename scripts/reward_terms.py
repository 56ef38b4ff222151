#!/usr/bin/env python
"""Split a policy's return into the environment's reward terms, and describe its actions.

    python scripts/reward_terms.py runs/mujoco_original/logs/halfcheetah/ga_n4_run2.h5 --num_trajs 10

Gymnasium's MuJoCo environments report each term of their reward in the step's `info`
(`reward_forward`, `reward_ctrl`, `reward_survive`, `reward_contact`, ...). This prints each
term's per-episode sum (mean and standard deviation over episodes), the return, and for
Gaussian policies how large the actions are: mean |mean action|, mean standard deviation,
and the share of sampled action components outside the action space's bounds.

The control cost is computed from the action the environment receives, e.g. HalfCheetah's
-0.1 * sum_j a_j^2, while MuJoCo clamps the actuators to their range; components beyond the
bounds cost reward and do nothing. `--clip_actions` clips the sampled actions to the bounds
before the step: the motion stays the same, only the control cost changes. The original
code passed the sampled actions unclipped (the published expert returns agree with that), so
returns are comparable with the paper's only without the flag.

`--unclamped_actuators` turns MuJoCo's clamping off (the model's `actuator_ctrllimited`), so
actions beyond the bounds push harder: a check on the simulator rather than on the policy.
The original experts' published returns match the clamped simulator, not the unclamped one.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imitation import cli  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", help="FILE.h5/snapshots/iterNNNNNNN (FILE.h5 alone: last snapshot)")
    p.add_argument("--env_name", default=None,
                   help="Gymnasium id, or an original id such as Ant-v1 (default: the policy's)")
    p.add_argument("--obs_adapter", default=None,
                   help="legacy observation adapter (ant_v1, acrobot_v0) for original experts")
    p.add_argument("--num_trajs", type=cli.positive_int, default=10,
                   help="episodes (default: 10)")
    p.add_argument("--max_traj_len", type=cli.positive_int, default=None,
                   help="episode length limit (default: the environment's)")
    p.add_argument("--deterministic", action="store_true",
                   help="act with the distribution's mean/mode instead of sampling")
    p.add_argument("--clip_actions", action="store_true",
                   help="clip continuous actions to the action space's bounds before each step")
    p.add_argument("--unclamped_actuators", action="store_true",
                   help="MuJoCo tasks: turn off the simulator's clamping of the actuators to "
                        "their control range")
    p.add_argument("--seed", type=cli.nonneg_int, default=0,
                   help="episode k resets with seed + k; actions are drawn from a generator "
                        "seeded with seed (default: 0)")
    return p


def unclamp_actuators(env):
    """Turn off MuJoCo's clamping of `env`'s actuator controls to their ctrlrange."""
    model = getattr(env.unwrapped, "model", None)
    if model is None or not hasattr(model, "actuator_ctrllimited"):
        raise cli.UserError(f"--unclamped_actuators: {env.spec.id} is not a MuJoCo task")
    model.actuator_ctrllimited[:] = 0


def episode_terms(spec, policy, num_trajs, seed, clip_actions=False, deterministic=False,
                  unclamped_actuators=False):
    """Roll out `num_trajs` episodes one at a time. Returns a dict of per-episode arrays:
    'return', 'length', one entry per `reward_*` key of the environment's info (its sum over
    the episode), and for Gaussian policies 'abs_mean' (mean |mean action|), 'stdev' (mean
    standard deviation) and 'outside' (share of sampled components outside the bounds)."""
    import numpy as np

    from policyopt import ContinuousSpace

    env = spec.make()
    try:
        if unclamped_actuators:
            unclamp_actuators(env)
        continuous = isinstance(policy.action_space, ContinuousSpace)
        lo, hi = (env.action_space.low, env.action_space.high) if continuous else (None, None)
        rng = np.random.default_rng(seed)
        rows = []
        for k in range(num_trajs):
            obs, _ = env.reset(seed=seed + k)
            row = {"return": 0., "length": 0}
            abs_mean, stdev, outside = [], [], []
            while True:
                a_1_Da, actiondist_1_Pa = policy.sample_actions(spec.adapt(obs)[None], rng,
                                                                 deterministic=deterministic)
                a = a_1_Da[0]
                if continuous:
                    Da = len(a)
                    abs_mean.append(np.abs(actiondist_1_Pa[0, :Da]).mean())
                    stdev.append(actiondist_1_Pa[0, Da:].mean())
                    outside.append(np.mean((a < lo) | (a > hi)))
                    if clip_actions:
                        a = np.clip(a, lo, hi)
                else:
                    a = int(a[0])
                obs, r, terminated, truncated, info = env.step(a)
                row["return"] += float(r)
                row["length"] += 1
                for key, v in info.items():
                    if key.startswith("reward_"):
                        row[key] = row.get(key, 0.) + float(v)
                if terminated or truncated:
                    break
            if continuous:
                row.update(abs_mean=np.mean(abs_mean), stdev=np.mean(stdev),
                           outside=np.mean(outside))
            rows.append(row)
    finally:
        env.close()
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, 0.) for row in rows], dtype=float) for k in keys}


def format_terms(terms):
    """The table the script prints: one line per reward term, their sum, the return."""
    names = [k for k in terms if k.startswith("reward_")]
    lines = [f"{'term':<16}{'mean':>11}{'std':>10}"]
    rows = [(k, terms[k]) for k in names]
    if names:  # 0 when the terms add up to the reward, as in Gymnasium's MuJoCo tasks
        rows.append(("return - terms", terms["return"] - sum(terms[k] for k in names)))
    rows += [("return", terms["return"]), ("length", terms["length"])]
    for name, v in rows:
        lines.append(f"{name:<16}{v.mean():>11.1f}{v.std():>10.1f}")
    if "abs_mean" in terms:
        lines.append(f"actions: mean |mean| {terms['abs_mean'].mean():.3f}, mean stdev "
                     f"{terms['stdev'].mean():.3f}, outside the bounds "
                     f"{100 * terms['outside'].mean():.1f}% of components")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from imitation.envs import GymMDP
    from imitation.snapshots import check_policy_fits, load_policy_for_env, policy_summary

    policy, key, _, env_name = load_policy_for_env(args.policy, args.env_name)
    mdp = GymMDP(env_name, obs_adapter=args.obs_adapter, max_traj_len=args.max_traj_len,
                 num_workers=0)
    check_policy_fits(policy, mdp)
    spec = mdp.spec
    if args.unclamped_actuators:  # fail before printing anything when the task has no actuators
        env = spec.make()
        try:
            unclamp_actuators(env)
        finally:
            env.close()
    how = "mean actions" if args.deterministic else "sampled actions"
    how += ", clipped to the bounds" if args.clip_actions else ", unclipped"
    how += ", actuators unclamped" if args.unclamped_actuators else ""
    print(f"{policy_summary(policy)}; {key}; {spec.gym_id}; {args.num_trajs} episodes, {how}")
    terms = episode_terms(spec, policy, args.num_trajs, args.seed, args.clip_actions,
                          args.deterministic, args.unclamped_actuators)
    print(format_terms(terms))


if __name__ == "__main__":
    cli.run_main(main)
