"""Diagnostics of a trained policy and its discriminator, behind
`scripts/inspect_discriminator.py` (what the discriminator looks at) and
`scripts/reward_terms.py` (where a return comes from)."""
import numpy as np

from imitation.errors import UserError

# ------------------------------------------------------------------------ the discriminator

def load_discriminator(log, key, args, obs_space, action_space):
    """The run's TransitionClassifier with the parameters and input standardizer of `key`."""
    from imitation.snapshots import open_h5
    from policyopt import imitation

    reward = imitation.TransitionClassifier(
        hidden_spec=args["policy_hidden_spec"], obsfeat_space=obs_space,
        action_space=action_space, include_time=bool(args.get("reward_include_time", 0)),
        favor_zero_expert_reward=bool(args.get("favor_zero_expert_reward", 0)))
    with open_h5(log) as f:
        if "TransitionClassifier" not in f[key]:
            raise UserError(f"{log}/{key} holds no discriminator (not a --reward_type nn "
                                "GAIL run)")
        reward.load_h5(f, key)
    return reward


def score_table(reward, policy, batch, ex_obs, ex_a, ex_t):
    """[(row name, scores)] for the rows the module docstring lists."""
    o, a, t = batch.obsfeat.stacked, batch.a.stacked, batch.time.stacked
    Da = a.shape[1]
    mean_a = policy.compute_actiondist_params(o)[:, :Da]
    ex_mean_a = policy.compute_actiondist_params(ex_obs)[:, :Da]
    return [("policy", reward.compute_scores(o, a, t)),
            ("policy, mean action", reward.compute_scores(o, mean_a, t)),
            ("policy, zero action", reward.compute_scores(o, np.zeros_like(mean_a), t)),
            ("expert", reward.compute_scores(ex_obs, ex_a, ex_t)),
            ("expert, policy's mean action", reward.compute_scores(ex_obs, ex_mean_a, ex_t))]


def reward_concentration(r_B, fractions=(0.01, 0.1)):
    """Share of the total reward sum(r) held by the top fraction f of the pairs (ranked by
    reward), for each f: sum of the ceil(f*B) largest r / sum(r). Needs r >= 0."""
    r_sorted = np.sort(np.asarray(r_B, dtype=float))[::-1]
    total = r_sorted.sum()
    return [float(r_sorted[:int(np.ceil(f * len(r_sorted)))].sum() / total) if total > 0
            else np.nan for f in fractions]


def top_correlations(x_B_D, s_B, names, k=5):
    """The k input columns with the largest |Pearson correlation| with the scores:
    [(name, corr)], constant columns skipped."""
    x = np.asarray(x_B_D, dtype=float) - np.mean(x_B_D, axis=0)
    s = np.asarray(s_B, dtype=float) - np.mean(s_B)
    denom = np.sqrt((x ** 2).sum(0) * (s ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, x.T @ s / denom, np.nan)
    order = [i for i in np.argsort(-np.abs(np.nan_to_num(corr))) if np.isfinite(corr[i])]
    return [(names[i], float(corr[i])) for i in order[:k]]


# --------------------------------------------------------------------- reward terms, actions

def unclamp_actuators(env):
    """Turn off MuJoCo's clamping of `env`'s actuator controls to their ctrlrange."""
    model = getattr(env.unwrapped, "model", None)
    if model is None or not hasattr(model, "actuator_ctrllimited"):
        raise UserError(f"--unclamped_actuators: {env.spec.id} is not a MuJoCo task")
    model.actuator_ctrllimited[:] = 0


def episode_terms(spec, policy, num_trajs, seed, clip_actions=False, deterministic=False,
                  unclamped_actuators=False):
    """Roll out `num_trajs` episodes one at a time. Returns a dict of per-episode arrays:
    'return', 'length', one entry per `reward_*` key of the environment's info (its sum over
    the episode), and for Gaussian policies 'abs_mean' (mean |mean action|), 'stdev' (mean
    standard deviation) and 'outside' (share of sampled components outside the bounds)."""
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
