"""policyopt.imitation (TransitionClassifier, LinearReward, behavioural cloning, the GAIL loop)
and scripts/imitate_mj.py end to end (design.md sections 4 "imitation", 5, 6)."""
import io
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import tables
from scipy.special import expit, log_expit

from imitation import diagnostics
from imitation.training import TrainingLog
from policyopt import ContinuousSpace, FiniteSpace, SimConfig, imitation, nn, rl

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO_ROOT, "scripts")

SMALL_SPEC = ('[{"type": "fc", "n": 6}, {"type": "nonlin", "func": "tanh"}, '
              '{"type": "fc", "n": 5}, {"type": "nonlin", "func": "tanh"}]')
GA_LOG_COLUMNS = ["iter", "trueret", "iret", "avglen", "ent", "nsa", "vf_r2", "dx", "dl", "kl",
                  "bt", "rloss", "racc", "raccpi", "raccex", "vf_dl", "vf_kl", "tsamp", "tadv",
                  "tstep", "ttotal"]


def run_script(name, *args, timeout=600):
    """Run scripts/<name>.py in a subprocess; returns the CompletedProcess (text)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, name + ".py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                          env=env)


def run_ok(name, *args, timeout=600):
    res = run_script(name, *args, timeout=timeout)
    assert res.returncode == 0, f"{name} {args} failed ({res.returncode}):\n{res.stdout[-3000:]}" \
                                f"\n{res.stderr[-3000:]}"
    return res


def read_log(path):
    with tables.open_file(str(path), "r") as f:
        return f.root.log.colnames, f.root.log[:]


# ================================================================= TransitionClassifier

def _make_classifier(discrete, rng, include_time=False, favor_zero=False, params=None,
                     norm_data=None, **kw):
    if discrete:
        obs_space, act_space, Din = ContinuousSpace(4), FiniteSpace(3), 4
    else:
        obs_space, act_space, Din = ContinuousSpace(3), ContinuousSpace(2), 5
    clf = imitation.TransitionClassifier(SMALL_SPEC, obs_space, act_space,
                                         include_time=include_time, time_scale=0.01,
                                         favor_zero_expert_reward=favor_zero, **kw)
    if params is None:
        params = rng.normal(scale=0.8, size=clf.get_num_params())
    clf.set_params(params)
    if norm_data is None:
        # non-trivial statistics: mean far from 0, stdevs far from 1 and different per column
        norm_data = rng.normal(loc=np.linspace(-3, 2, Din), scale=np.linspace(0.2, 4, Din),
                               size=(200, Din))
    clf.inputnorm.update(norm_data)
    return clf, params, norm_data


def _inputs(discrete, rng, B=37, scale=1.):
    if discrete:
        obs = rng.normal(size=(B, 4)) * scale
        a = rng.integers(0, 3, size=(B, 1))
    else:
        obs = rng.normal(size=(B, 3)) * scale
        a = rng.normal(size=(B, 2)) * scale
    t = rng.integers(0, 100, size=B).astype(float)
    return obs, a, t


def _numpy_scores(clf, obs, a, t):
    vals = {v.name.split("TransitionClassifier/", 1)[1]: v.get_value()
            for v in clf.get_trainable_variables()}
    x = obs if clf.discrete else np.concatenate([obs, a], axis=1)
    mean = clf.inputnorm.get_mean()
    stdev = clf.inputnorm.get_stdev()
    x = (x - mean) / (stdev + 1e-6)
    if clf.include_time:
        x = np.concatenate([x, (t * clf.time_scale)[:, None]], axis=1)
    h = np.tanh(x @ vals["hidden/FeedforwardNet/layer_0/AffineLayer/W"]
                + vals["hidden/FeedforwardNet/layer_0/AffineLayer/b"])
    h = np.tanh(h @ vals["hidden/FeedforwardNet/layer_2/AffineLayer/W"]
                + vals["hidden/FeedforwardNet/layer_2/AffineLayer/b"])
    out = h @ vals["out/AffineLayer/W"] + vals["out/AffineLayer/b"]
    if clf.discrete:
        return out[np.arange(len(out)), np.asarray(a).reshape(-1)]
    return out[:, 0]


CASES = [pytest.param(False, False, id="continuous"),
         pytest.param(False, True, id="continuous-time"),
         pytest.param(True, False, id="discrete"),
         pytest.param(True, True, id="discrete-time")]


@pytest.mark.parametrize("discrete,include_time", CASES)
def test_classifier_scores_match_numpy(rng, discrete, include_time):
    clf, _, _ = _make_classifier(discrete, rng, include_time=include_time)
    obs, a, t = _inputs(discrete, rng)
    scores = clf.compute_scores(obs, a, t)
    assert scores.shape == (len(obs),)
    np.testing.assert_allclose(scores, _numpy_scores(clf, obs, a, t), rtol=1e-9, atol=1e-10)
    assert np.std(scores) > 0.05  # the check is not vacuous


def test_classifier_discrete_uses_taken_action_score(rng):
    clf, _, _ = _make_classifier(True, rng)
    obs, _, t = _inputs(True, rng, B=10)
    per_action = np.stack([clf.compute_scores(obs, np.full((10, 1), k), t) for k in range(3)], 1)
    assert np.abs(per_action[:, 0] - per_action[:, 1]).max() > 1e-3
    a = rng.integers(0, 3, size=(10, 1))
    np.testing.assert_allclose(clf.compute_scores(obs, a, t), per_action[np.arange(10), a[:, 0]])


def _numpy_loss(s, y, w, ent_reg_weight):
    bce = -(y * log_expit(s) + (1 - y) * log_expit(-s))
    p = expit(s)
    ent = -(p * log_expit(s) + (1 - p) * log_expit(-s))
    return np.sum(w * (bce - ent_reg_weight * ent))


@pytest.mark.parametrize("discrete,include_time", CASES[::2])
@pytest.mark.parametrize("ent_reg_weight", [1e-3, 0.5])
def test_classifier_loss_matches_numpy(rng, discrete, include_time, ent_reg_weight):
    clf, _, _ = _make_classifier(discrete, rng, include_time=include_time,
                                 ent_reg_weight=ent_reg_weight)
    obs, a, t = _inputs(discrete, rng, B=40, scale=3.)
    labels = (rng.random(40) < 0.5).astype(float)
    weights = rng.random(40)
    loss = clf._compute_loss(*clf._cast(obs, a, t), labels, weights)
    assert isinstance(loss, float)
    s = _numpy_scores(clf, obs, a, t)
    np.testing.assert_allclose(loss, _numpy_loss(s, labels, weights, ent_reg_weight), rtol=1e-9)


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_classifier_reward_sign_conventions(rng, discrete):
    clf, params, norm = _make_classifier(discrete, rng)
    clf0, _, _ = _make_classifier(discrete, rng, favor_zero=True, params=params, norm_data=norm,
                                  varscope_name="TransitionClassifierFZ")
    obs, a, t = _inputs(discrete, rng, B=200, scale=20.)  # includes extreme scores
    s = clf.compute_scores(obs, a, t)
    np.testing.assert_allclose(clf0.compute_scores(obs, a, t), s)
    assert s.min() < -2 and s.max() > 2
    r = clf.compute_reward(obs, a, t)
    np.testing.assert_allclose(r, -log_expit(-s), rtol=1e-9, atol=1e-12)  # -log(1 - D)
    assert np.all(r >= 0) and np.all(np.isfinite(r))
    r0 = clf0.compute_reward(obs, a, t)
    np.testing.assert_allclose(r0, log_expit(s), rtol=1e-9, atol=1e-12)  # log D
    assert np.all(r0 <= 0) and np.all(np.isfinite(r0))
    # both rewards increase with the score (more expert-like = more reward)
    order = np.argsort(s)
    assert np.all(np.diff(r[order]) >= -1e-12) and np.all(np.diff(r0[order]) >= -1e-12)


def _separable(rng, n, sign, B_obs=3):
    obs = rng.normal(size=(n, B_obs))
    a = sign * 2. + 0.3 * rng.normal(size=(n, 2))
    return obs, a, rng.integers(0, 50, size=n).astype(float)


def test_classifier_fit_learns_separable_data(rng):
    clf = imitation.TransitionClassifier(SMALL_SPEC, ContinuousSpace(3), ContinuousSpace(2))
    exobs, exa, ext = _separable(rng, 300, +1)
    history = []
    for _ in range(60):
        obs, a, t = _separable(rng, 100, -1)
        fields = dict(clf.fit(obs, a, t, exobs, exa, ext, rng)[0])
        assert list(fields) == ["rloss", "racc", "raccpi", "raccex"]
        history.append(fields)
    losses = [h["rloss"] for h in history]
    assert losses[-1] < losses[0] - 0.3, losses
    # starts near chance (output layer W = 0): log 2 for each half, weights 1/B per half
    assert losses[0] < 2 * np.log(2) + 0.05
    last = history[-1]
    for k in ("racc", "raccpi", "raccex"):
        assert last[k] > 0.95, (k, history[-1])
    assert np.mean([h["racc"] for h in history[-5:]]) > np.mean([h["racc"] for h in history[:5]])
    assert np.isclose(last["racc"], 0.5 * (last["raccpi"] + last["raccex"]))
    # the expert now earns more reward than the policy
    obs, a, t = _separable(rng, 200, -1)
    assert clf.compute_reward(exobs, exa, ext).mean() > clf.compute_reward(obs, a, t).mean() + 1.
    # the policy's pairs get a low D and the expert's a high one
    assert np.mean(clf.compute_scores(obs, a, t) < 0) > 0.95
    assert np.mean(clf.compute_scores(exobs, exa, ext) > 0) > 0.95


@pytest.mark.parametrize("favor_zero", [False, True])
def test_classifier_fit_returns_the_rewards_of_the_fitted_batch(rng, favor_zero):
    """The value step reuses the rewards fit() returns; they must be compute_reward() of the
    fitted batch under the updated weights and standardizer (a fresh evaluation after fit)."""
    clf = imitation.TransitionClassifier(SMALL_SPEC, ContinuousSpace(3), ContinuousSpace(2),
                                         favor_zero_expert_reward=favor_zero)
    exobs, exa, ext = _separable(rng, 300, +1)
    for _ in range(3):
        obs, a, t = _separable(rng, 120, -1)
        before = clf.compute_reward(obs, a, t)
        _, returned = clf.fit(obs, a, t, exobs, exa, ext, rng)
        after = clf.compute_reward(obs, a, t)
        assert returned.shape == (120,)
        np.testing.assert_allclose(returned, after, rtol=1e-12, atol=1e-14)
        assert np.max(np.abs(after - before)) > 1e-6  # the fit did move the rewards


@pytest.mark.parametrize("mode", ["l2ball", "simplex"])
def test_linear_reward_fit_returns_the_rewards_of_the_fitted_batch(rng, mode):
    lin = imitation.LinearReward(ContinuousSpace(3), ContinuousSpace(2), mode)
    exobs, exa, ext = _separable(rng, 300, +1)
    obs, a, t = _separable(rng, 120, -1)
    _, returned = lin.fit(obs, a, t, exobs, exa, ext)
    np.testing.assert_array_equal(returned, lin.compute_reward(obs, a, t))


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
@pytest.mark.parametrize("B,N_ex", [(30, 200), (50, 20)])
def test_classifier_fit_batch_composition(rng, monkeypatch, discrete, B, N_ex):
    clf, _, _ = _make_classifier(discrete, rng, adam_steps=3)
    real_step = clf._adamstep  # the compiled function
    calls = []

    def spy(*args):
        calls.append([np.array(x, copy=True) for x in args])
        return real_step(*args)

    monkeypatch.setattr(clf, "_adamstep", spy)
    obs, a, t = _inputs(discrete, rng, B=B)
    exobs, exa, ext = _inputs(discrete, rng, B=N_ex)
    exobs[:, 0] += 1000.  # mark expert rows
    before = clf.get_params().copy()
    clf.fit(obs, a, t, exobs, exa, ext, rng)
    assert len(calls) == 3  # adam_steps updates
    assert not np.allclose(clf.get_params(), before)
    o, act, tt, labels, weights = calls[0]
    # policy rows first, label 0, weight 1/B each; then the distinct pairs of an equally sized
    # expert subsample (B draws), label 1, each weighted by its count / B
    assert labels.shape == weights.shape == (len(o),) and len(act) == len(o) == len(tt)
    U = len(o) - B
    assert 1 <= U <= min(B, N_ex)
    np.testing.assert_array_equal(labels, np.r_[np.zeros(B), np.ones(U)])
    np.testing.assert_allclose(o[:B], obs)
    np.testing.assert_allclose(act[:B].reshape(B, -1), np.asarray(a).reshape(B, -1))
    assert np.all(o[B:, 0] > 500)
    np.testing.assert_allclose(weights[:B], np.full(B, 1. / B))
    counts = weights[B:] * B
    np.testing.assert_allclose(counts, np.round(counts))  # integer draw counts
    assert np.all(counts >= 1) and np.isclose(counts.sum(), B)
    if B > N_ex:
        assert U < B  # with replacement: repeated draws collapse
    else:
        np.testing.assert_allclose(counts, 1.)  # without replacement: B distinct pairs
    np.testing.assert_allclose(weights[labels == 0].sum(), 1.)
    np.testing.assert_allclose(weights[labels == 1].sum(), 1.)
    # every expert row is a distinct expert pair (with its own action and time)
    seen = set()
    for row_o, row_a, row_t in zip(o[B:], act[B:], tt[B:]):
        j = int(np.argmin(np.abs(exobs - row_o).sum(axis=1)))
        np.testing.assert_allclose(exobs[j], row_o)
        np.testing.assert_allclose(np.asarray(exa[j]).reshape(-1), row_a.reshape(-1))
        assert ext[j] == row_t and j not in seen
        seen.add(j)
    for c in calls[1:]:
        for x, y in zip(c, calls[0]):
            np.testing.assert_array_equal(x, y)  # the same batch for every Adam step


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_classifier_count_weights_equal_repeated_rows(rng, discrete):
    """Collapsing repeated expert draws into count weights gives the same Adam step as feeding
    every repeated row: the same loss, gradient, and hence parameters."""
    clf, _, _ = _make_classifier(discrete, rng)
    B, N_ex = 40, 6
    obs, a, t = _inputs(discrete, rng, B=B)
    exobs, exa, ext = _inputs(discrete, rng, B=N_ex)
    state = clf.get_state()
    adam0 = [v.get_value().copy() for v in clf.adam_state_vars()]
    clf.fit(obs, a, t, exobs, exa, ext, np.random.default_rng(7))
    fitted = clf.get_params().copy()
    # the reference: the same draws, every repeated row fed explicitly with weight 1/B
    clf.set_state(state)
    for v, x in zip(clf.adam_state_vars(), adam0):
        v.set_value(x)
    ex_idx = np.random.default_rng(7).choice(N_ex, size=B, replace=True)
    all_o = np.concatenate([obs, exobs[ex_idx]])
    all_a = np.concatenate([np.asarray(a).reshape(B, -1),
                            np.asarray(exa).reshape(N_ex, -1)[ex_idx]])
    all_t = np.concatenate([t, ext[ex_idx]])
    clf.update_inputnorm(all_o, all_a)
    clf._adamstep(*clf._cast(all_o, all_a, all_t), np.r_[np.zeros(B), np.ones(B)],
                  np.full(2 * B, 1. / B))
    np.testing.assert_allclose(clf.get_params(), fitted, rtol=1e-10, atol=1e-12)


def test_classifier_fit_updates_inputnorm(rng):
    clf = imitation.TransitionClassifier(SMALL_SPEC, ContinuousSpace(3), ContinuousSpace(2))
    obs, a, t = _separable(rng, 50, -1)
    exobs, exa, ext = _separable(rng, 50, +1)
    clf.fit(obs, a, t, exobs, exa, ext, rng)
    assert clf.inputnorm.get_count() == 100
    # the actions' mean is ~0 over policy (-2) and expert (+2) rows
    assert np.all(np.abs(clf.inputnorm.get_mean()[0, 3:]) < 0.3)
    assert np.all(clf.inputnorm.get_stdev()[0, 3:] > 1.5)


# ========================================================================= LinearReward

def _np_features(rew, obs, a, t, discrete, n_actions=3):
    mean, stdev = rew.inputnorm.get_mean(), rew.inputnorm.get_stdev()
    B = len(obs)
    if discrete:
        z = (obs - mean) / (stdev + 1e-6)
        base = np.concatenate([z, (0.01 * z) ** 2], axis=1)
        F = base.shape[1]
        blocks = np.zeros((B, n_actions * F))
        for i in range(B):
            k = int(np.asarray(a).reshape(-1)[i])
            blocks[i, k * F:(k + 1) * F] = base[i]
        parts = [blocks]
    else:
        z = (np.concatenate([obs, a], axis=1) - mean) / (stdev + 1e-6)
        zo, za = z[:, :obs.shape[1]], z[:, obs.shape[1]:]
        parts = [zo, za, (0.01 * zo) ** 2, (0.01 * za) ** 2]
    if rew.include_time:
        ts = t[:, None] * rew.time_scale
        parts += [ts, ts ** 2, ts ** 3]
    parts.append(np.ones((B, 1)))
    return np.concatenate(parts, axis=1)


def _linear_reward(discrete, mode, rng, include_time=False, favor_zero=False, stats=True):
    if discrete:
        obs_space, act_space, Din = ContinuousSpace(4), FiniteSpace(3), 4
    else:
        obs_space, act_space, Din = ContinuousSpace(3), ContinuousSpace(2), 5
    rew = imitation.LinearReward(obs_space, act_space, mode, include_time=include_time,
                                 time_scale=0.01, favor_zero_expert_reward=favor_zero)
    if stats:
        rew.update_inputnorm(*_split_x(rng.normal(loc=np.linspace(-2, 3, Din),
                                                  scale=np.linspace(0.5, 3, Din),
                                                  size=(100, Din)), discrete, rng))
    return rew


def _split_x(x, discrete, rng):
    if discrete:
        return x, rng.integers(0, 3, size=(len(x), 1))
    return x[:, :3], x[:, 3:]


LIN_CASES = [pytest.param(d, it, id=f"{'discrete' if d else 'continuous'}{'-time' if it else ''}")
             for d in (False, True) for it in (False, True)]


@pytest.mark.parametrize("discrete,include_time", LIN_CASES)
def test_linear_reward_features_match_numpy(rng, discrete, include_time):
    rew = _linear_reward(discrete, "l2ball", rng, include_time=include_time)
    obs, a, t = _inputs(discrete, rng, B=25, scale=5.)
    phi = rew.features(obs, a, t)
    expected = _np_features(rew, obs, a, t, discrete)
    n_base = (2 * 4 * 3) if discrete else (3 + 2 + 3 + 2)
    assert phi.shape == (25, n_base + (3 if include_time else 0) + 1)
    np.testing.assert_allclose(phi, expected, rtol=1e-12, atol=1e-12)
    assert np.all(phi[:, -1] == 1.)
    if discrete:  # only the taken action's block is non-zero
        blocks = phi[:, :n_base].reshape(25, 3, 8)
        nz = np.abs(blocks).sum(axis=2) > 0
        np.testing.assert_array_equal(nz, np.eye(3, dtype=bool)[a[:, 0]])
    # the weight vector has one entry per feature
    assert rew.w.get_value().shape == (phi.shape[1],)
    assert _linear_reward(discrete, "simplex", rng, include_time=include_time) \
        .w.get_value().shape == (2 * phi.shape[1],)


def _al_data(discrete, rng, n_pi=60, n_ex=40):
    obs, a, t = _inputs(discrete, rng, B=n_pi)
    exobs, exa, ext = _inputs(discrete, rng, B=n_ex)
    exobs = exobs + 1.5  # the expert visits different states
    if not discrete:
        exa = exa - 1.
    return (obs, a, t), (exobs, exa, ext)


@pytest.mark.parametrize("discrete,include_time", LIN_CASES)
def test_linear_reward_l2ball_weight(rng, discrete, include_time):
    rew = _linear_reward(discrete, "l2ball", rng, include_time=include_time, stats=False)
    (obs, a, t), (exobs, exa, ext) = _al_data(discrete, rng)
    fields = dict(rew.fit(obs, a, t, exobs, exa, ext, rng)[0])
    # fit updates the standardizer with policy + expert pairs first
    assert rew.inputnorm.get_count() == len(obs) + len(exobs)
    gap = _np_features(rew, exobs, exa, ext, discrete).mean(0) \
        - _np_features(rew, obs, a, t, discrete).mean(0)
    w = rew.w.get_value()
    np.testing.assert_allclose(w, gap / np.linalg.norm(gap), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(w), 1.)
    np.testing.assert_allclose(fields["rloss"], np.linalg.norm(gap), rtol=1e-9)
    assert list(fields) == ["rloss", "racc", "raccpi", "raccex"]


@pytest.mark.parametrize("discrete,include_time", LIN_CASES)
def test_linear_reward_simplex_weight(rng, discrete, include_time):
    rew = _linear_reward(discrete, "simplex", rng, include_time=include_time, stats=False)
    (obs, a, t), (exobs, exa, ext) = _al_data(discrete, rng)
    fields = dict(rew.fit(obs, a, t, exobs, exa, ext, rng)[0])
    gap = _np_features(rew, exobs, exa, ext, discrete).mean(0) \
        - _np_features(rew, obs, a, t, discrete).mean(0)
    ext_gap = np.concatenate([gap, -gap])
    w = rew.w.get_value()
    expected = np.zeros_like(ext_gap)
    expected[np.argmax(ext_gap)] = 1.
    np.testing.assert_array_equal(w, expected)
    np.testing.assert_allclose(fields["rloss"], np.max(np.abs(gap)), rtol=1e-9)
    # the raw reward is the selected (possibly negated) feature
    k = int(np.argmax(ext_gap))
    phi = _np_features(rew, obs, a, t, discrete)
    raw = rew._raw_reward(obs, a, t)
    np.testing.assert_allclose(raw, phi[:, k] if k < len(gap) else -phi[:, k - len(gap)])


@pytest.mark.parametrize("mode", ["l2ball", "simplex"])
@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_linear_reward_sign_after_fit(rng, mode, discrete):
    for favor_zero in (False, True):
        rew = _linear_reward(discrete, mode, rng, favor_zero=favor_zero, stats=False)
        (obs, a, t), (exobs, exa, ext) = _al_data(discrete, rng)
        rew.fit(obs, a, t, exobs, exa, ext, rng)
        r_pi = rew.compute_reward(obs, a, t)
        r_ex = rew.compute_reward(exobs, exa, ext)
        if favor_zero:
            assert np.all(r_pi <= 1e-12) and np.all(r_ex <= 1e-12)
        else:
            assert np.all(r_pi >= -1e-12) and np.all(r_ex >= -1e-12)
        # the shift is a constant: the reward still prefers the expert
        assert r_ex.mean() > r_pi.mean()
        np.testing.assert_allclose(r_pi - rew._raw_reward(obs, a, t),
                                   np.full(len(r_pi), (r_pi - rew._raw_reward(obs, a, t))[0]))


def test_linear_reward_unknown_mode():
    with pytest.raises(ValueError):
        imitation.LinearReward(ContinuousSpace(3), ContinuousSpace(2), "nn")


# ==================================================================== behavioural cloning

TINY = nn.TINY_HIDDEN_SPEC


@pytest.fixture(scope="module")
def cartpole_mdp():
    from imitation.envs import GymMDP

    mdp = GymMDP("CartPole-v0", num_workers=0)
    yield mdp
    mdp.close()


def _bclone(path, mdp, freq, steps):
    from imitation.data import load_dataset, subsample

    data = load_dataset(path)
    ex_obs, ex_a, _ = subsample(data, 10, freq, seed=0)
    n = len(ex_obs)
    assert n == 2000 // freq
    policy = rl.GibbsPolicy(TINY, mdp.obs_space, mdp.action_space)
    policy.update_obsnorm(ex_obs)
    rng = np.random.default_rng(0)
    opt = imitation.BehavioralCloningOptimizer(
        mdp, policy, lr=1e-3, batch_size=128, obsfeat_fn=None, ex_obs=ex_obs,
        ex_a=ex_a, eval_sim_cfg=SimConfig(min_num_trajs=3, min_total_sa=-1), eval_freq=100,
        train_frac=0.7, rng=rng)
    # 70/30 split of the expert pairs, disjoint
    assert len(opt.train_obs) == round(0.7 * n) and len(opt.val_obs) == n - round(0.7 * n)
    assert len(np.unique(np.concatenate([opt.train_obs, opt.val_obs]), axis=0)) == n
    valloss0, valacc0 = opt.validation()
    np.testing.assert_allclose(valloss0, np.log(2), rtol=1e-6)  # output layer W = 0: uniform
    assert valacc0 == -valloss0  # the original's accuracy for discrete actions: -NLL
    losses = [opt.step() for _ in range(steps)]
    assert opt.total_steps == steps
    valloss, valacc = opt.validation()
    assert valloss < valloss0 - 0.1, (valloss0, valloss)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    fields = dict(opt.evaluate())
    for k in ("iter", "trueret", "valloss", "valacc"):
        assert k in fields
    assert fields["iter"] == steps
    assert np.isclose(fields["valloss"], valloss) and np.isclose(fields["valacc"], valacc)
    assert fields["trueret"] > 0
    pred = policy.sample_actions(opt.val_obs, rng, deterministic=True)[0][:, 0]
    return float(np.mean(pred == opt.val_a[:, 0])), fields


@pytest.mark.parametrize("freq", [1, 5])
def test_bclone_optimizer_cartpole_deterministic_expert(cartpole_expert_data_deterministic,
                                                        cartpole_mdp, freq):
    argmax_acc, fields = _bclone(cartpole_expert_data_deterministic, cartpole_mdp, freq, 600)
    assert argmax_acc > 0.8, argmax_acc


def test_bclone_optimizer_cartpole_stochastic_expert(cartpole_expert_data, cartpole_mdp):
    """The paper's datasets come from the stochastic expert, whose argmax matches its own
    sampled actions only ~80% of the time on CartPole: that is the accuracy ceiling here."""
    argmax_acc, fields = _bclone(cartpole_expert_data, cartpole_mdp, 1, 300)
    assert argmax_acc > 0.7, argmax_acc


def test_bclone_validation_accuracy_continuous_is_minus_squared_error_of_the_mean():
    """The original's valacc for continuous actions: -mean over validation pairs of
    sum_d (mean action - expert action)^2. At initialisation the output layer is zero, so the
    mean action is 0 and valacc is -mean sum_d a^2; after training it tracks the mean action
    the policy acts with deterministically, and rises."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(400, 3))
    acts = np.tanh(obs @ rng.normal(size=(3, 2))) + 0.5
    policy = rl.GaussianPolicy(TINY, ContinuousSpace(3), ContinuousSpace(2))
    opt = imitation.BehavioralCloningOptimizer(
        None, policy, lr=1e-2, batch_size=64, obsfeat_fn=None, ex_obs=obs, ex_a=acts,
        eval_sim_cfg=None, eval_freq=100, train_frac=0.7, rng=np.random.default_rng(1))
    _, acc0 = opt.validation()
    np.testing.assert_allclose(acc0, -np.mean(np.sum(opt.val_a ** 2, axis=1)), rtol=1e-12)
    for _ in range(300):
        opt.step()
    _, acc = opt.validation()
    mean_B_Da = policy.sample_actions(opt.val_obs, rng, deterministic=True)[0]
    np.testing.assert_allclose(acc, -np.mean(np.sum((mean_B_Da - opt.val_a) ** 2, axis=1)),
                               rtol=1e-10)
    assert acc > 0.2 * acc0  # the error of the mean action fell by more than 5x


def test_bclone_minibatches_are_drawn_with_replacement_as_the_original():
    """The original drew np.random.choice(n, size=128): 128 pairs with replacement, also from
    a training set smaller than 128, so a minibatch repeats pairs unevenly (and, from 100
    pairs, leaves about (99/100)^128 = 28% of them out) instead of being the whole set."""
    for n_pairs, n_train in ((20, 14), (143, 100)):
        rng = np.random.default_rng(0)
        obs = rng.normal(size=(n_pairs, 3))
        acts = rng.normal(size=(n_pairs, 2))
        policy = rl.GaussianPolicy(TINY, ContinuousSpace(3), ContinuousSpace(2))
        opt = imitation.BehavioralCloningOptimizer(
            None, policy, lr=1e-3, batch_size=128, obsfeat_fn=None, ex_obs=obs, ex_a=acts,
            eval_sim_cfg=None, eval_freq=100, train_frac=0.7, rng=np.random.default_rng(1))
        assert len(opt.train_obs) == n_train
        seen = []
        opt.step_fn = lambda o, a, seen=seen: seen.append(o) or 0.
        for _ in range(20):
            opt.step()
        assert all(len(o) == 128 for o in seen)
        counts = [np.unique(o, axis=0, return_counts=True)[1] for o in seen]
        assert all(c.max() > c.min() for c in counts)          # uneven repeats
        if n_train == 100:
            left_out = [n_train - len(c) for c in counts]
            assert 15 <= np.mean(left_out) <= 40, left_out     # about 28 left out


def test_imitate_bclone_end_to_end(cartpole_expert_data, tmp_path):
    log = tmp_path / "bc.h5"
    res = run_ok("imitate_mj", "--mode", "bclone", "--data", cartpole_expert_data,
                 "--max_iter", 2001, "--bclone_eval_freq", 1000, "--bclone_eval_ntrajs", 5,
                 "--log", log)
    assert "bclone on CartPole-v0" in res.stdout
    cols, rows = read_log(log)
    for k in ("iter", "trueret", "valloss", "valacc"):
        assert k in cols
    # one row after the first Adam step, then every eval_freq steps; iter = Adam steps done
    assert rows["iter"].tolist() == [1, 1001, 2001]
    assert np.all(np.isfinite(rows["valloss"]))
    np.testing.assert_allclose(rows["valacc"], -rows["valloss"])  # discrete: -NLL
    with h5py.File(str(log), "r") as f:
        snaps = sorted(f["snapshots"].keys())
        assert list(f["snapshots/" + snaps[-1]].keys()) == ["GibbsPolicy"]
    # each snapshot is keyed by its log row's iter (Adam steps done), so the row with the best
    # validation accuracy names its snapshot
    assert snaps == [f"iter{i:07d}" for i in rows["iter"]]
    assert snaps == ["iter0000001", "iter0001001", "iter0002001"]
    from imitation.pipeline import select_snapshot

    key, _ = select_snapshot(str(log))       # what the pipeline evaluates: the best valacc
    assert key == "snapshots/" + snaps[int(np.argmax(rows["valacc"]))]
    from imitation.snapshots import load_policy

    params = []
    for s in snaps[:-1]:
        policy, key, fargs = load_policy(f"{log}/snapshots/{s}")
        assert key == "snapshots/" + s and fargs["env_name"] == "CartPole-v0"
        params.append(policy.get_params())
    assert not np.allclose(params[0], params[1])
    for s in snaps:
        out = run_ok("eval_policy", f"{log}/snapshots/{s}", "--num_trajs", 2, "--num_workers",
                     0).stdout
        assert re.search(r"^return: [-\d.]+ \+/- [\d.]+ \(2 trajectories\)$",
                         out.strip().splitlines()[-1]), out


# ============================================================ imitate_mj.py conventions

SECTION5_FLAGS = ["--mode", "--data", "--limit_trajs", "--data_subsamp_freq", "--env_name",
                  "--max_traj_len", "--policy_hidden_spec", "--tiny_policy", "--obsnorm_mode",
                  "--bclone_lr", "--bclone_batch_size", "--bclone_eval_ntrajs",
                  "--bclone_eval_freq", "--bclone_train_frac", "--discount", "--lam",
                  "--max_iter", "--policy_max_kl", "--policy_cg_damping", "--no_vf",
                  "--vf_max_kl", "--vf_cg_damping", "--policy_ent_reg", "--reward_type",
                  "--reward_lr", "--reward_steps", "--reward_ent_reg_weight",
                  "--reward_include_time", "--sim_batch_size", "--min_total_sa",
                  "--favor_zero_expert_reward", "--print_freq", "--save_freq", "--log", "--seed"]


def test_imitate_help_mentions_every_flag():
    res = run_script("imitate_mj", "--help", timeout=120)
    assert res.returncode == 0, res.stderr
    for flag in SECTION5_FLAGS:
        assert re.search(re.escape(flag) + r"\b", res.stdout), flag


def test_imitate_parser_defaults_follow_spec(tmp_path):
    """The arguments a run stores are the original's defaults (design.md section 5)."""
    log = tmp_path / "defaults.h5"
    run_ok("imitate_mj", "--mode", "ga", "--data", os.path.join(REPO_ROOT, "expert_trajs",
                                                                "cartpole.h5"),
           "--max_iter", 1, "--min_total_sa", 100, "--num_workers", 0, "--log", log)
    with h5py.File(log, "r") as f:
        args = SimpleNamespace(**json.loads(f.attrs["args"]))
    expected = dict(limit_trajs=None, env_name="CartPole-v0", max_traj_len=None,
                    tiny_policy=False, obsnorm_mode="expertdata",
                    bclone_lr=1e-3, bclone_batch_size=128, bclone_eval_ntrajs=20,
                    bclone_eval_freq=1000, bclone_train_frac=0.7, discount=0.995, lam=0.97,
                    policy_max_kl=0.01, policy_cg_damping=0.1, no_vf=0, vf_max_kl=0.01,
                    vf_cg_damping=0.1, policy_ent_reg=0., reward_type="nn", reward_lr=0.01,
                    reward_steps=1, reward_ent_reg_weight=1e-3, reward_include_time=0,
                    favor_zero_expert_reward=0, save_freq=20)
    for k, v in expected.items():
        assert getattr(args, k) == v, k
    assert args.policy_hidden_spec == nn.DEFAULT_HIDDEN_SPEC  # resolved from None
    res = run_script("imitate_mj", "--mode", "gail", "--data", "x")
    assert res.returncode == 2 and "invalid choice: 'gail'" in res.stderr


@pytest.mark.parametrize("argv,missing", [(["--data", "x"], "--mode"),
                                          (["--mode", "ga"], "--data"),
                                          ([], "--mode, --data")])
def test_imitate_requires_mode_and_data_unless_resuming(argv, missing):
    """--mode and --data are required (argparse's usage error, exit 2) except with --resume,
    which takes them from the run's log."""
    res = run_script("imitate_mj", *argv)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].endswith(
        f"the following arguments are required: {missing}")


def test_training_log_header_repeats_every_20_rows():
    out = io.StringIO()
    log = TrainingLog(None, out=out)
    for i in range(45):
        log.write([("iter", i), ("trueret", float(i) * 1.5)])
    lines = out.getvalue().splitlines()
    header_idx = [j for j, line in enumerate(lines) if line.split() == ["iter", "trueret"]]
    assert len(header_idx) == 3
    # header + rule, 20 rows, header + rule, 20 rows, header + rule, 5 rows
    assert header_idx == [0, 22, 44]
    assert len(lines) == 45 + 2 * 3
    assert set(lines[1].replace(" ", "")) == {"-"}


def test_imitate_ga_reads_env_from_data(cartpole_expert_data, tmp_path):
    log = tmp_path / "ga.h5"
    res = run_ok("imitate_mj", "--mode", "ga", "--data", cartpole_expert_data, "--max_iter", 1,
                 "--min_total_sa", 500, "--log", log)
    assert "ga on CartPole-v0" in res.stdout
    assert re.search(r"^\s*iter\s+trueret\s+iret", res.stdout, re.M), res.stdout
    with tables.open_file(str(log), "r") as f:
        import json

        args = json.loads(f.root._v_attrs.args)
        assert f.root.log.nrows == 1
        iret = f.root.log[:]["iret"]
    assert np.all(iret > 0)  # the discriminator's reward -log(1 - D) is positive
    assert args["env_name"] == "CartPole-v0"
    assert args["data_subsamp_freq"] == 20  # the file records none: the original default
    assert args["reward_type"] == "nn" and args["discount"] == 0.995
    with h5py.File(str(log), "r") as f:
        assert sorted(f["snapshots/iter0000000"].keys()) == ["GibbsPolicy",
                                                             "TransitionClassifier", "ValueFunc"]


def test_imitate_bad_data_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    res = run_script("imitate_mj", "--mode", "ga", "--data", bad, timeout=120)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "bad.h5" in err[0], res.stderr


# ========================================================= apprenticeship learning, GAIL

AL_ARGS = ["--limit_trajs", 1, "--data_subsamp_freq", 10, "--min_total_sa", 5000,
           "--sim_batch_size", 1, "--max_iter", 21]
RANDOM_CARTPOLE_RETURN = 22.


@pytest.mark.slow
@pytest.mark.parametrize("reward_type,min_best", [("l2ball", 150.), ("simplex", 150.)])
def test_apprenticeship_learning_cartpole(cartpole_expert_data, tmp_path, reward_type,
                                          min_best):
    log = tmp_path / f"{reward_type}.h5"
    res = run_ok("imitate_mj", "--mode", "ga", "--reward_type", reward_type, "--data",
                 cartpole_expert_data, *AL_ARGS, "--log", log)
    cols, rows = read_log(log)
    assert len(rows) == 21
    assert rows["iter"].tolist() == list(range(21))
    # the printed table repeats its header every 20 rows
    headers = [line for line in res.stdout.splitlines() if line.split()[:2] == ["iter", "trueret"]]
    assert len(headers) == 2
    # the reward is shifted to stay >= 0
    assert np.all(rows["iret"] >= -1e-9), rows["iret"]
    assert rows["trueret"][0] < 60  # starts near a random policy
    best = rows["trueret"].max()
    assert best >= min_best, rows["trueret"]
    assert best > 4 * RANDOM_CARTPOLE_RETURN
    assert np.mean(rows["trueret"][-5:]) > 2 * RANDOM_CARTPOLE_RETURN, rows["trueret"]
    assert np.all(rows["rloss"][1:] >= 0)  # w . (mu_E - mu_pi) >= 0 by construction


@pytest.mark.slow
@pytest.mark.parametrize("reward_type", ["nn", "l2ball", "simplex"])
def test_favor_zero_expert_reward_sign(cartpole_expert_data, tmp_path, reward_type):
    """With --favor_zero_expert_reward 1 every reward is <= 0 (log D for the discriminator).
    The default sign (>= 0) is checked by the l2ball/simplex runs above and, for the
    discriminator, by test_imitate_ga_reads_env_from_data and the Hopper smoke run."""
    log = tmp_path / f"{reward_type}_fz.h5"
    run_ok("imitate_mj", "--mode", "ga", "--reward_type", reward_type, "--data",
           cartpole_expert_data, "--limit_trajs", 2, "--data_subsamp_freq", 5,
           "--min_total_sa", 1000, "--sim_batch_size", 1, "--max_iter", 3,
           "--favor_zero_expert_reward", 1, "--log", log)
    rows = read_log(log)[1]
    assert len(rows) == 3
    assert np.all(rows["iret"] <= 1e-9), rows["iret"]
    if reward_type == "nn":  # log sigmoid(score) is strictly negative
        assert np.all(rows["iret"] < 0), rows["iret"]
    else:  # the shifted linear rewards: 0 at the first iteration (w = 0), then negative
        assert np.all(rows["iret"][1:] < 0), rows["iret"]


# ================================================================ MuJoCo smoke (Hopper)

@pytest.mark.slow
def test_gail_hopper_smoke(hopper_expert_data, tmp_path):
    from imitation.data import load_dataset

    data = load_dataset(hopper_expert_data)
    assert data.env_name == "Hopper-v5" and data.num_trajs == 4
    assert data.obs_B_T_Do.shape[2] == 11 and data.a_B_T_Da.shape[2] == 3
    assert data.returns_B.mean() > 2500  # the expert hops
    log = tmp_path / "hopper.h5"
    res = run_ok("imitate_mj", "--mode", "ga", "--data", hopper_expert_data, "--max_iter", 3,
                 "--min_total_sa", 2000, "--save_freq", 1, "--log", log)
    assert "ga on Hopper-v5" in res.stdout
    cols, rows = read_log(log)
    for c in GA_LOG_COLUMNS:
        assert c in cols, c
    assert len(rows) == 3 and rows["iter"].tolist() == [0, 1, 2]
    assert np.all(rows["nsa"] >= 2000)
    for c in ("trueret", "iret", "ent", "rloss", "racc", "kl"):
        assert np.all(np.isfinite(rows[c])), c
    assert np.all(rows["iret"] > 0)
    assert np.all((rows["racc"] >= 0) & (rows["racc"] <= 1))
    with h5py.File(str(log), "r") as f:
        snaps = sorted(f["snapshots"].keys())
        assert snaps == ["iter0000000", "iter0000001", "iter0000002"]
        for s in snaps:
            assert sorted(f["snapshots"][s].keys()) == ["GaussianPolicy", "TransitionClassifier",
                                                        "ValueFunc"]
    out = run_ok("eval_policy", f"{log}/snapshots/iter0000002", "--env_name", "Hopper-v5",
                 "--num_trajs", 2).stdout
    assert re.search(r"^return: [-\d.]+ \+/- [\d.]+ \(2 trajectories\)$",
                     out.strip().splitlines()[-1]), out

    # What the discriminator looks at, on the same log (scripts/inspect_discriminator.py).
    out = run_ok("inspect_discriminator", log, "--iter", 2, "--num_trajs", 1).stdout
    lines = out.splitlines()
    rows = {line[:30].strip(): line[30:].split() for line in lines[2:7]}
    assert list(rows) == ["policy", "policy, mean action", "policy, zero action", "expert",
                          "expert, policy's mean action"]
    for name, (mean, p10, p90, right) in rows.items():
        assert np.isfinite(float(mean)) and float(p10) <= float(p90), name
        assert 0 <= float(right.rstrip("%")) <= 100
    share = re.fullmatch(r"policy reward held by its top 1% of pairs: ([\d.]+)%, "
                         r"top 10%: ([\d.]+)%", lines[7])
    assert share and 0 < float(share[1]) <= float(share[2]) <= 100, lines[7]
    assert re.fullmatch(r"score on policy pairs most correlated with: "
                        r"(obs|a)\[\d+\] [+-][\d.]+(, (obs|a)\[\d+\] [+-][\d.]+){4}",
                        lines[8]), lines[8]


@pytest.mark.parametrize("blind_to", ["actions", "nothing"])
def test_inspect_discriminator_action_swaps(rng, blind_to):
    """A discriminator whose first layer ignores the action inputs scores the action-swapped
    rows exactly like the originals; one that reads the actions does not."""
    score_table = diagnostics.score_table
    clf, _, _ = _make_classifier(False, rng)            # obs 3, actions 2
    if blind_to == "actions":
        W = clf.get_trainable_variables()[0]             # layer_0 W, (obs + actions) x hidden
        W_val = W.get_value()
        W_val[3:] = 0.
        W.set_value(W_val)
    policy = rl.GaussianPolicy(SMALL_SPEC, ContinuousSpace(3), ContinuousSpace(2))
    policy.set_params(rng.normal(size=policy.get_num_params()))
    obs, a, t = _inputs(False, rng)
    ex_obs, ex_a, ex_t = _inputs(False, rng, B=11)
    batch = SimpleNamespace(**{k: SimpleNamespace(stacked=v)     # the TrajBatch fields it reads
                               for k, v in (("obsfeat", obs), ("a", a), ("time", t))})
    rows = dict(score_table(clf, policy, batch, ex_obs, ex_a, ex_t))
    np.testing.assert_allclose(rows["policy"], clf.compute_scores(obs, a, t))
    np.testing.assert_allclose(rows["expert"], clf.compute_scores(ex_obs, ex_a, ex_t))
    same = [np.allclose(rows["policy"], rows["policy, mean action"]),
            np.allclose(rows["policy"], rows["policy, zero action"]),
            np.allclose(rows["expert"], rows["expert, policy's mean action"])]
    assert all(same) if blind_to == "actions" else not any(same)


def test_inspect_discriminator_reward_concentration_hand_computed():
    concentration = diagnostics.reward_concentration
    # 200 pairs: the 2 largest (top 1%) hold 10 + 6 of 40, the top 20 (10%) 10 + 6 + 18 * 1
    r = np.concatenate([[6., 10.], np.ones(18), np.zeros(180)])
    np.testing.assert_allclose(concentration(np.random.default_rng(0).permutation(r)),
                               [16 / 34, 1.])
    np.testing.assert_allclose(concentration(np.ones(50)), [1 / 50, 5 / 50])   # ceil(0.5) = 1
    assert np.isnan(concentration(np.zeros(10))).all()


def test_inspect_discriminator_top_correlations(rng):
    top = diagnostics.top_correlations
    x = rng.normal(size=(500, 4))
    x[:, 2] = 1.                                          # constant: skipped
    s = -3. * x[:, 1] + 0.5 * x[:, 3]
    names = ["o0", "o1", "o2", "a0"]
    got = top(x, s, names, k=5)
    assert [n for n, _ in got] == ["o1", "a0", "o0"]
    for name, c in got:
        np.testing.assert_allclose(c, np.corrcoef(x[:, names.index(name)], s)[0, 1],
                                   rtol=1e-10)
    assert got[0][1] < -0.9


def test_run_rl_requires_env_name_unless_resuming():
    res = run_script("run_rl_mj", "--max_iter", "1")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].endswith(
        "the following arguments are required: --env_name")
