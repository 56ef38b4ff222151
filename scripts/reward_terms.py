#!/usr/bin/env python
"""Split a policy's return into the environment's reward terms, and describe its actions.

    python scripts/reward_terms.py runs/mujoco_original/logs/halfcheetah/ga_n4_run2.h5 \\
        --num_trajs 10

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

from imitation import cli


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


def main(argv=None):
    args = build_parser().parse_args(argv)
    from imitation.diagnostics import episode_terms, format_terms, unclamp_actuators
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
