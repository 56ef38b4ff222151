"""Returns, GAE and the ragged containers (policyopt.rl.compute_qvals / compute_advantage,
policyopt.RaggedArray / TrajBatch, policyopt.util.discount).

Every expected number is computed by explicit Python loops over single trajectories,
independently of the library's vectorised (padded, lfilter-based) code.
"""
import numpy as np
import pytest

from policyopt import RaggedArray, TrajBatch, Trajectory, util
from policyopt.rl import compute_advantage, compute_qvals

DISCOUNT, LAM = 0.9, 0.8


# ------------------------------------------------------------------------- loop references

def loop_qvals(r_T, gamma):
    """q_t = sum_{k>=t} gamma^(k-t) r_k, by a forward double loop."""
    T = len(r_T)
    q = np.zeros(T)
    for t in range(T):
        for k in range(t, T):
            q[t] += gamma ** (k - t) * r_T[k]
    return q


def loop_gae(r_T, v_T, gamma, lam):
    """GAE with V after the last step = 0, by an explicit double loop over deltas."""
    T = len(r_T)
    delta = np.zeros(T)
    for t in range(T):
        vnext = v_T[t + 1] if t + 1 < T else 0.
        delta[t] = r_T[t] + gamma * vnext - v_T[t]
    adv = np.zeros(T)
    for t in range(T):
        for k in range(t, T):
            adv[t] += (gamma * lam) ** (k - t) * delta[k]
    return adv


def loop_r2(pred, y):
    """1 - Var(y - pred) / Var(y), variances by explicit sums."""
    n = len(y)
    my = sum(y) / n
    vy = sum((yi - my) ** 2 for yi in y) / n
    d = [yi - pi for yi, pi in zip(y, pred)]
    md = sum(d) / n
    vd = sum((di - md) ** 2 for di in d) / n
    return 1. - vd / vy


class StubValueFunc:
    """V(s, t) = a known function of the observation features and time; records its calls."""

    def __init__(self):
        self.calls = []

    @staticmethod
    def value(obsfeat_Df, t):
        return 0.5 * obsfeat_Df[0] - 0.25 * obsfeat_Df[1] + 0.1 * t

    def evaluate(self, obsfeat_N_Df, t_N):
        self.calls.append((np.array(obsfeat_N_Df), np.array(t_N)))
        return np.array([self.value(o, t) for o, t in zip(obsfeat_N_Df, t_N)])


# ----------------------------------------------------------------------------- fixtures

LENGTHS = [1, 3, 5]


@pytest.fixture
def ragged_batch():
    """Rewards, obs features (2 dims) and time of trajectories of lengths 1, 3, 5."""
    rng = np.random.default_rng(42)
    rs = [rng.normal(size=T) for T in LENGTHS]
    feats = [rng.normal(size=(T, 2)) for T in LENGTHS]
    times = [np.arange(T) for T in LENGTHS]
    return rs, feats, times


def _ragged(arrays):
    return RaggedArray([np.asarray(a) for a in arrays])


# ------------------------------------------------------------------------------- discount

def test_discount_matches_loop_1d_and_2d():
    rng = np.random.default_rng(0)
    x = rng.normal(size=7)
    np.testing.assert_allclose(util.discount(x, 0.9), loop_qvals(x, 0.9), rtol=1e-12)
    X = rng.normal(size=(4, 6))
    expected = np.stack([loop_qvals(row, 0.7) for row in X])
    np.testing.assert_allclose(util.discount(X, 0.7), expected, rtol=1e-12)


@pytest.mark.parametrize("gamma", [0., 1.])
def test_discount_edge_gammas(gamma):
    x = np.array([1., 2., 3., 4.])
    expected = x.copy() if gamma == 0. else np.array([10., 9., 7., 4.])
    np.testing.assert_allclose(util.discount(x, gamma), expected)


@pytest.mark.parametrize("shape", [(7, 1000), (50, 200), (3,), (1, 1), (4, 0)])
def test_discount_is_bit_identical_to_scipy_lfilter(shape):
    """The recursion does lfilter's arithmetic: a seeded run's returns and advantages do not
    change with the implementation (the project computed them with lfilter before)."""
    import scipy.signal

    x = np.random.default_rng(1).normal(size=shape) * 100
    for gamma in (0.995, 0.995 * 0.97, 0., 1.):
        expected = scipy.signal.lfilter([1.], [1., -gamma], x[..., ::-1], axis=-1)[..., ::-1]
        assert np.array_equal(util.discount(x, gamma), expected)


def test_discount_zero_padding_contributes_nothing():
    x = np.array([[1., 2., 0., 0.], [3., 4., 5., 6.]])
    y = util.discount(x, 0.5)
    np.testing.assert_allclose(y[0, :2], loop_qvals([1., 2.], 0.5))
    np.testing.assert_allclose(y[0, 2:], 0.)


# ------------------------------------------------------------------------------- qvals

def test_compute_qvals_hand_computed():
    r = _ragged([[1.], [1., 2., 3.]])
    q = compute_qvals(r, 0.5)
    assert isinstance(q, RaggedArray)
    np.testing.assert_array_equal(q.lengths, [1, 3])
    # 1; [1 + .5*2 + .25*3, 2 + .5*3, 3]
    np.testing.assert_allclose(q.stacked, [1., 2.75, 3.5, 3.])


def test_compute_qvals_ragged_matches_loop(ragged_batch):
    rs, _, _ = ragged_batch
    q = compute_qvals(_ragged(rs), DISCOUNT)
    np.testing.assert_array_equal(q.lengths, LENGTHS)
    for i, r_T in enumerate(rs):
        np.testing.assert_allclose(q[i], loop_qvals(r_T, DISCOUNT), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ advantage

def test_compute_advantage_single_trajectory_by_hand():
    # T = 2, gamma .9, lam .8, V = [1, 2], V after the end = 0, r = [1, 1]
    # delta0 = 1 + .9*2 - 1 = 1.8; delta1 = 1 + 0 - 2 = -1
    # A1 = -1; A0 = 1.8 + .72 * -1 = 1.08
    class V:
        def evaluate(self, obsfeat_N_Df, t_N):
            return np.array([1., 2.])

    r = _ragged([[1., 1.]])
    obsfeat = _ragged([np.zeros((2, 1))])
    time = _ragged([[0, 1]])
    adv, q, _, _ = compute_advantage(r, obsfeat, time, V(), DISCOUNT, LAM)
    np.testing.assert_allclose(adv.stacked, [1.08, -1.], rtol=1e-12)
    np.testing.assert_allclose(q.stacked, [1.9, 1.], rtol=1e-12)


def test_compute_advantage_ragged_matches_loop(ragged_batch):
    rs, feats, times = ragged_batch
    vf = StubValueFunc()
    adv, q, vf_r2, tbase_r2 = compute_advantage(_ragged(rs), _ragged(feats), _ragged(times), vf,
                                                DISCOUNT, LAM)
    # the value function is evaluated once on the stacked features and time indices
    assert len(vf.calls) == 1
    np.testing.assert_array_equal(vf.calls[0][0], np.concatenate(feats))
    np.testing.assert_array_equal(vf.calls[0][1], np.concatenate(times))

    assert isinstance(adv, RaggedArray) and isinstance(q, RaggedArray)
    np.testing.assert_array_equal(adv.lengths, LENGTHS)
    all_q, all_v = [], []
    for i, (r_T, f_T, t_T) in enumerate(zip(rs, feats, times)):
        v_T = [StubValueFunc.value(f, t) for f, t in zip(f_T, t_T)]
        np.testing.assert_allclose(adv[i], loop_gae(r_T, v_T, DISCOUNT, LAM), rtol=1e-10,
                                   atol=1e-12)
        q_T = loop_qvals(r_T, DISCOUNT)
        np.testing.assert_allclose(q[i], q_T, rtol=1e-12, atol=1e-12)
        all_q.extend(q_T)
        all_v.extend(v_T)

    # the length-1 trajectory: A = r - V(s_0) (nothing after it)
    np.testing.assert_allclose(adv[0][0], rs[0][0] - StubValueFunc.value(feats[0][0], 0))

    # R^2 of the value function against the Q values
    assert vf_r2 == pytest.approx(loop_r2(all_v, all_q), rel=1e-10, abs=1e-12)

    # time-only baseline: mean return-to-go at each t over the trajectories alive at t
    tbase = {}
    for t in range(max(LENGTHS)):
        alive = [loop_qvals(r_T, DISCOUNT)[t] for r_T in rs if len(r_T) > t]
        tbase[t] = sum(alive) / len(alive)
    pred = [tbase[t] for t_T in times for t in t_T]
    assert tbase_r2 == pytest.approx(loop_r2(pred, all_q), rel=1e-10, abs=1e-12)


def test_compute_advantage_without_value_function(ragged_batch):
    rs, feats, times = ragged_batch
    adv, q, vf_r2, tbase_r2 = compute_advantage(_ragged(rs), _ragged(feats), _ragged(times),
                                                None, DISCOUNT, LAM)
    all_q = []
    for i, r_T in enumerate(rs):
        np.testing.assert_allclose(adv[i], loop_gae(r_T, np.zeros(len(r_T)), DISCOUNT, LAM),
                                   rtol=1e-10, atol=1e-12)
        all_q.extend(loop_qvals(r_T, DISCOUNT))
    np.testing.assert_allclose(q.stacked, all_q, rtol=1e-12, atol=1e-12)
    # V = 0: R^2 = 1 - Var(q)/Var(q) = 0
    assert vf_r2 == pytest.approx(loop_r2(np.zeros(len(all_q)), all_q), abs=1e-12)
    assert vf_r2 == pytest.approx(0., abs=1e-12)
    assert np.isfinite(tbase_r2)


def test_compute_advantage_lam_one_is_q_minus_v(ragged_batch):
    """With lam = 1 GAE telescopes to q_t - V(s_t)."""
    rs, feats, times = ragged_batch
    vf = StubValueFunc()
    adv, q, _, _ = compute_advantage(_ragged(rs), _ragged(feats), _ragged(times), vf,
                                     DISCOUNT, 1.)
    v = vf.evaluate(np.concatenate(feats), np.concatenate(times))
    np.testing.assert_allclose(adv.stacked, q.stacked - v, rtol=1e-10, atol=1e-12)


def test_compute_advantage_lam_zero_is_td_error(ragged_batch):
    rs, feats, times = ragged_batch
    vf = StubValueFunc()
    adv, _, _, _ = compute_advantage(_ragged(rs), _ragged(feats), _ragged(times), vf,
                                     DISCOUNT, 0.)
    for i, (r_T, f_T, t_T) in enumerate(zip(rs, feats, times)):
        v_T = [StubValueFunc.value(f, t) for f, t in zip(f_T, t_T)] + [0.]
        td = [r_T[t] + DISCOUNT * v_T[t + 1] - v_T[t] for t in range(len(r_T))]
        np.testing.assert_allclose(adv[i], td, rtol=1e-10, atol=1e-12)


def test_tbase_r2_is_one_when_all_trajectories_are_identical():
    r = _ragged([[1., 2., 3.], [1., 2., 3.]])
    feats = _ragged([np.zeros((3, 1)), np.zeros((3, 1))])
    time = _ragged([[0, 1, 2], [0, 1, 2]])
    _, _, _, tbase_r2 = compute_advantage(r, feats, time, None, DISCOUNT, LAM)
    assert tbase_r2 == pytest.approx(1.)


# ---------------------------------------------------------------------------- RaggedArray

def test_ragged_array_boundaries_and_views():
    arrays = [np.arange(1) * 1., np.arange(3) + 10., np.arange(5) + 100.]
    ra = RaggedArray(arrays)
    assert len(ra) == 3
    np.testing.assert_array_equal(ra.lengths, [1, 3, 5])
    np.testing.assert_array_equal(ra.boundaries, [0, 1, 4, 9])
    np.testing.assert_array_equal(ra.stacked, np.concatenate(arrays))
    for i, a in enumerate(arrays):
        np.testing.assert_array_equal(ra[i], a)
        np.testing.assert_array_equal(ra.arrays[i], a)


def test_ragged_array_row_index():
    ra = RaggedArray([np.zeros(1), np.zeros(3), np.zeros(5)])
    traj_N, time_N = ra.row_index
    np.testing.assert_array_equal(traj_N, [0, 1, 1, 1, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(time_N, [0, 0, 1, 2, 0, 1, 2, 3, 4])


def test_ragged_array_padded_round_trip_multidim():
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(T, 3)) for T in LENGTHS]
    ra = RaggedArray(arrays)
    p = ra.padded(fill=-7.)
    assert p.shape == (3, 5, 3)
    for i, (a, T) in enumerate(zip(arrays, LENGTHS)):
        np.testing.assert_array_equal(p[i, :T], a)
        assert np.all(p[i, T:] == -7.)
    back = RaggedArray.from_padded(p, ra.lengths)
    np.testing.assert_array_equal(back.lengths, ra.lengths)
    np.testing.assert_array_equal(back.stacked, ra.stacked)
    np.testing.assert_array_equal(back.boundaries, ra.boundaries)


def test_ragged_array_padded_1d_default_fill_and_dtype():
    ra = RaggedArray([np.array([1, 2], dtype=np.int32), np.array([3], dtype=np.int32)])
    p = ra.padded()
    assert p.dtype == np.int32
    np.testing.assert_array_equal(p, [[1, 2], [3, 0]])


def test_ragged_array_from_stacked_checks_lengths():
    RaggedArray(stacked=np.zeros(4), lengths=[1, 3])
    with pytest.raises(ValueError):
        RaggedArray(stacked=np.zeros(4), lengths=[1, 2])


# ------------------------------------------------------------------------------- TrajBatch

def _traj(T, seed, Do=3, Pa=2):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T, Do))
    return Trajectory(obs_T_Do=obs, obsfeat_T_Df=obs * 2., adist_T_Pa=rng.normal(size=(T, Pa)),
                      a_T_Da=rng.integers(0, 2, size=(T, 1)).astype(np.int32),
                      r_T=rng.normal(size=T))


def test_trajbatch_from_trajs_and_returns():
    trajs = [_traj(T, s) for s, T in enumerate(LENGTHS)]
    b = TrajBatch.from_trajs(trajs)
    assert len(b) == 3
    assert b.num_sa == sum(LENGTHS)
    np.testing.assert_array_equal(b.obs.lengths, LENGTHS)
    for field in ("obsfeat", "adist", "a", "r"):
        np.testing.assert_array_equal(getattr(b, field).lengths, LENGTHS)
    np.testing.assert_array_equal(b.time.stacked, [0, 0, 1, 2, 0, 1, 2, 3, 4])
    expected = [sum(float(x) for x in t.r_T) for t in trajs]
    np.testing.assert_allclose(b.returns, expected, rtol=1e-12)
    for t_in, t_out in zip(trajs, b.trajs):
        assert len(t_out) == len(t_in)
        for f in ("obs_T_Do", "obsfeat_T_Df", "adist_T_Pa", "a_T_Da", "r_T"):
            np.testing.assert_array_equal(getattr(t_out, f), getattr(t_in, f))


def test_trajbatch_concat():
    b1 = TrajBatch.from_trajs([_traj(2, 0), _traj(4, 1)])
    b2 = TrajBatch.from_trajs([_traj(3, 2)])
    b = TrajBatch.concat([b1, b2])
    assert len(b) == 3
    np.testing.assert_array_equal(b.obs.lengths, [2, 4, 3])
    np.testing.assert_array_equal(b.time.stacked, [0, 1, 0, 1, 2, 3, 0, 1, 2])
    np.testing.assert_allclose(b.returns, np.concatenate([b1.returns, b2.returns]))
    np.testing.assert_array_equal(b.obs[2], b2.obs[0])
    np.testing.assert_array_equal(b.a.stacked, np.concatenate([b1.a.stacked, b2.a.stacked]))
    np.testing.assert_array_equal(b.adist[1], b1.adist[1])


def test_trajbatch_from_stacked_matches_from_trajs():
    trajs = [_traj(T, s) for s, T in enumerate(LENGTHS)]
    b1 = TrajBatch.from_trajs(trajs)
    b2 = TrajBatch.from_stacked(b1.obs.stacked, b1.obsfeat.stacked, b1.adist.stacked,
                                b1.a.stacked, b1.r.stacked, LENGTHS)
    for f in ("obs", "obsfeat", "adist", "a", "r", "time"):
        np.testing.assert_array_equal(getattr(b2, f).stacked, getattr(b1, f).stacked)
    np.testing.assert_allclose(b2.returns, b1.returns)


def test_trajbatch_returns_with_empty_trajectories():
    # hand-built batches may hold empty trajectories; their return is 0
    r = RaggedArray(stacked=np.array([1., 2., 3.]), lengths=[2, 0, 1])
    z = RaggedArray(stacked=np.zeros((3, 1)), lengths=[2, 0, 1])
    np.testing.assert_array_equal(TrajBatch(z, z, z, z, r).returns, [3., 0., 3.])
    r = RaggedArray(stacked=np.array([1., 2.]), lengths=[2, 0])
    z = RaggedArray(stacked=np.zeros((2, 1)), lengths=[2, 0])
    np.testing.assert_array_equal(TrajBatch(z, z, z, z, r).returns, [3., 0.])
