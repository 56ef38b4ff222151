"""policyopt.thutil against independent references: finite differences, SciPy, closed forms,
Monte Carlo, and a hand-written NumPy Adam."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.special
import scipy.stats

from policyopt import ContinuousSpace, FiniteSpace, nn, rl, thutil

SMALL_SPEC = ('[{"type": "fc", "n": 5}, {"type": "nonlin", "func": "tanh"}, '
              '{"type": "fc", "n": 4}, {"type": "nonlin", "func": "lrelu"}]')


def _central_fd(f, x0, eps):
    """Central finite differences of a scalar or vector function f at x0 (one column per
    coordinate of x0)."""
    cols = []
    for i in range(x0.size):
        e = np.zeros_like(x0)
        e[i] = eps
        cols.append((np.asarray(f(x0 + e)) - np.asarray(f(x0 - e))) / (2 * eps))
    return np.array(cols)


# ------------------------------------------------------------------------------- flatgrad

def test_flatgrad_matches_finite_differences(rng):
    x_B_D = pt.matrix("x_B_D", shape=(None, 3))
    with nn.variable_scope("test_flatgrad"):
        net = nn.FeedforwardNet(x_B_D, (3,), SMALL_SPEC)
    params = net.get_trainable_variables()
    assert len(params) == 4  # W, b of layer_0 and layer_2
    loss = pt.sqr(net.output).mean()
    f_loss = thutil.function([x_B_D], loss)
    f_grad = thutil.function([x_B_D], thutil.flatgrad(loss, params))

    # non-zero biases too, so that every parameter gets a generic gradient
    net.set_params(rng.normal(scale=0.7, size=net.get_num_params()))
    x0_P = net.get_params().copy()
    X = rng.normal(size=(6, 3))

    g_P = f_grad(X)
    assert g_P.shape == (x0_P.size,)

    def loss_at(p):
        net.set_params(p)
        return f_loss(X)

    fd_P = _central_fd(loss_at, x0_P, 1e-6)
    net.set_params(x0_P)
    assert np.abs(fd_P).max() > 1e-3  # non-trivial
    np.testing.assert_allclose(g_P, fd_P, rtol=1e-5, atol=1e-9)


def test_flatgrad_order_is_variable_order():
    a = pytensor.shared(np.array([1., 2.]), name="a")
    b = pytensor.shared(np.array([[3.], [4.], [5.]]), name="b")
    loss = (a ** 2).sum() + 10. * (b ** 3).sum()
    f = thutil.function([], thutil.flatgrad(loss, [b, a]))
    np.testing.assert_allclose(f(), [30. * 9, 30. * 16, 30. * 25, 2., 4.], rtol=1e-14)


def test_unflatten_into_tensors(rng):
    flat = pt.vector("flat")
    shapes = [(2, 3), (1, 3), (), (4,)]
    f = thutil.function([flat], thutil.unflatten_into_tensors(flat, shapes))
    x = rng.normal(size=6 + 3 + 1 + 4)
    pieces = f(x)
    ref = [x[:6].reshape(2, 3), x[6:9].reshape(1, 3), x[9], x[10:]]
    assert len(pieces) == 4
    for got, want in zip(pieces, ref):
        assert np.shape(got) == np.shape(want)
        np.testing.assert_array_equal(got, want)
    a = pytensor.shared(np.zeros((2, 5)))
    b = pytensor.shared(np.zeros(3))
    assert thutil.vars_shapes([a, b]) == [(2, 5), (3,)]


# -------------------------------------------------------------- KL Hessian-vector products

def _make_policy(kind):
    spec = '[{"type": "fc", "n": 6}, {"type": "nonlin", "func": "tanh"}]'
    if kind == "gaussian":
        return rl.GaussianPolicy(spec, ContinuousSpace(3), ContinuousSpace(2),
                                 varscope_name="GaussianPolicy")
    return rl.GibbsPolicy(spec, ContinuousSpace(3), FiniteSpace(4), varscope_name="GibbsPolicy")


@pytest.mark.parametrize("kind", ["gaussian", "gibbs"])
def test_kl_hvp_matches_finite_differences_of_kl_gradient(kind, rng):
    policy = _make_policy(kind)
    # Output-layer weights start at 0; random params make the Hessian generic.
    policy.set_params(rng.normal(scale=0.3, size=policy.P))
    x0_P = policy.get_params().copy()
    obs_B_Df = rng.normal(size=(8, 3))
    proposal_B_Pa = policy.compute_actiondist_params(obs_B_Df)

    klgrad = thutil.function([policy.obsfeat_B_Df, policy.proposal_actiondist_B_Pa],
                             thutil.flatgrad(policy.kl, policy.param_vars))
    # KL gradient vanishes at the proposal itself
    np.testing.assert_allclose(klgrad(obs_B_Df, proposal_B_Pa), 0., atol=1e-12)

    eps = 1e-5
    for _ in range(2):
        v_P = rng.normal(size=policy.P)
        policy.set_params(x0_P)
        hv_P = policy.compute_hvp(obs_B_Df, proposal_B_Pa, v_P)
        policy.set_params(x0_P + eps * v_P)
        g_plus = klgrad(obs_B_Df, proposal_B_Pa)
        policy.set_params(x0_P - eps * v_P)
        g_minus = klgrad(obs_B_Df, proposal_B_Pa)
        policy.set_params(x0_P)
        fd_P = (g_plus - g_minus) / (2 * eps)
        assert np.abs(fd_P).max() > 1e-3
        np.testing.assert_allclose(hv_P, fd_P, rtol=1e-5, atol=1e-8)

    # symmetric, and positive semi-definite (KL Hessian at its minimum = Fisher matrix)
    u_P, v_P = rng.normal(size=policy.P), rng.normal(size=policy.P)
    hu = policy.compute_hvp(obs_B_Df, proposal_B_Pa, u_P)
    hv = policy.compute_hvp(obs_B_Df, proposal_B_Pa, v_P)
    np.testing.assert_allclose(u_P @ hv, v_P @ hu, rtol=1e-10)
    assert u_P @ hu >= -1e-12 and v_P @ hv >= -1e-12


# ------------------------------------------------------------------------------ densities

def test_gaussian_log_density_vs_scipy(rng):
    m, s, x = pt.matrices("m", "s", "x")
    f = thutil.function([m, s, x], thutil.gaussian_log_density(m, s, x))
    M = rng.normal(size=(5, 3))
    S = rng.uniform(0.2, 2.0, size=(5, 3))
    X = rng.normal(size=(5, 3)) * 2
    out = f(M, S, X)
    np.testing.assert_allclose(out, scipy.stats.norm.logpdf(X, M, S).sum(axis=1), rtol=1e-12)
    for i in range(5):
        ref = scipy.stats.multivariate_normal(M[i], np.diag(S[i] ** 2)).logpdf(X[i])
        np.testing.assert_allclose(out[i], ref, rtol=1e-12)


def _kl_closed_form_full_cov(m1, S1, m2, S2):
    S2inv = np.linalg.inv(S2)
    d = m2 - m1
    return 0.5 * (np.trace(S2inv @ S1) + d @ S2inv @ d - len(m1)
                  + np.log(np.linalg.det(S2) / np.linalg.det(S1)))


def _gaussian_kl_fn():
    m1, s1, m2, s2 = pt.matrices("m1", "s1", "m2", "s2")
    return thutil.function([m1, s1, m2, s2], thutil.gaussian_kl(m1, s1, m2, s2))


def test_gaussian_kl_closed_form_and_monte_carlo(rng):
    f = _gaussian_kl_fn()
    M1, M2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    S1, S2 = rng.uniform(0.3, 2., size=(4, 3)), rng.uniform(0.3, 2., size=(4, 3))
    out = f(M1, S1, M2, S2)
    assert out.shape == (4,)
    for i in range(4):
        ref = _kl_closed_form_full_cov(M1[i], np.diag(S1[i] ** 2), M2[i], np.diag(S2[i] ** 2))
        np.testing.assert_allclose(out[i], ref, rtol=1e-12)

    # Monte Carlo: KL = E_{x~N1}[log N1(x) - log N2(x)]
    n = 200_000
    X = M1[0] + S1[0] * rng.standard_normal((n, 3))
    diff = (scipy.stats.norm.logpdf(X, M1[0], S1[0]).sum(1)
            - scipy.stats.norm.logpdf(X, M2[0], S2[0]).sum(1))
    se = diff.std() / np.sqrt(n)
    assert abs(diff.mean() - out[0]) < 5 * se


def test_gaussian_kl_identical_is_zero(rng):
    f = _gaussian_kl_fn()
    M = rng.normal(size=(3, 4))
    S = rng.uniform(0.1, 3., size=(3, 4))
    np.testing.assert_allclose(f(M, S, M, S), 0., atol=1e-13)


def test_gaussian_entropy_vs_scipy(rng):
    s = pt.matrix("s")
    f = thutil.function([s], thutil.gaussian_entropy(s))
    S = rng.uniform(0.1, 3., size=(4, 3))
    out = f(S)
    ref = [scipy.stats.multivariate_normal(np.zeros(3), np.diag(r ** 2)).entropy() for r in S]
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_categorical_kl_and_entropy(rng):
    l1, l2 = pt.matrices("l1", "l2")
    f_kl = thutil.function([l1, l2], thutil.categorical_kl(l1, l2))
    f_ent = thutil.function([l1], thutil.categorical_entropy(l1))
    LP1 = scipy.special.log_softmax(rng.normal(size=(5, 4)) * 2, axis=1)
    LP2 = scipy.special.log_softmax(rng.normal(size=(5, 4)) * 2, axis=1)
    P1, P2 = np.exp(LP1), np.exp(LP2)
    ref_kl = np.array([np.sum(p * np.log(p / q)) for p, q in zip(P1, P2)])
    np.testing.assert_allclose(f_kl(LP1, LP2), ref_kl, rtol=1e-12)
    np.testing.assert_allclose(f_kl(LP1, LP1), 0., atol=1e-15)
    np.testing.assert_allclose(f_ent(LP1), scipy.stats.entropy(P1, axis=1), rtol=1e-12)


@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_vs_scipy(keepdims, rng):
    a = pt.matrix("a")
    f0 = thutil.function([a], thutil.logsumexp(a, axis=0, keepdims=keepdims))
    f1 = thutil.function([a], thutil.logsumexp(a, axis=1, keepdims=keepdims))
    A = rng.normal(size=(3, 4)) * 3
    A[0, 0] = 1000.
    A[1, :] = 1000. + np.arange(4)
    A[2, :] = -1000. - np.arange(4)
    for f, ax in ((f0, 0), (f1, 1)):
        out = f(A)
        ref = scipy.special.logsumexp(A, axis=ax, keepdims=keepdims)
        assert out.shape == ref.shape
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, ref, rtol=1e-13)


# --------------------------------------------------------------------- logistic helpers

LOGITS = np.array([-500., -50., -20., -3., -0.7, 0., 0.3, 2., 20., 50., 500.])


def _bern_entropy_ref(l):
    p = scipy.special.expit(l)
    lp, l1mp = scipy.special.log_expit(l), scipy.special.log_expit(-l)
    return -(p * lp + (1 - p) * l1mp)


def test_logsigmoid():
    a = pt.vector("a")
    f = thutil.function([a], thutil.logsigmoid(a))
    out = f(LOGITS)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, scipy.special.log_expit(LOGITS), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(out, -np.logaddexp(0., -LOGITS), rtol=1e-13)


def test_logit_bernoulli_entropy():
    a = pt.vector("a")
    f = thutil.function([a], thutil.logit_bernoulli_entropy(a))
    out = f(LOGITS)
    ref = _bern_entropy_ref(LOGITS)
    assert np.all(np.isfinite(out))
    moderate = np.abs(LOGITS) <= 20
    # the (1-sigmoid(l))*l - logsigmoid(l) form loses ~eps*|l| absolute to cancellation
    np.testing.assert_allclose(out[moderate], ref[moderate], rtol=1e-9, atol=1e-14)
    # extreme logits: the entropy is ~0 (true value < 1e-19); only cancellation error left
    np.testing.assert_allclose(out[~moderate], ref[~moderate], atol=1e-12)
    np.testing.assert_allclose(out[LOGITS == 0.], np.log(2.), rtol=1e-14)


def test_logit_bernoulli_kl(rng):
    a, b = pt.vectors("a", "b")
    f = thutil.function([a, b], thutil.logit_bernoulli_kl(a, b))
    L1 = np.concatenate([rng.normal(size=6) * 3, [50., -50., 500., -500., 3., -3.]])
    L2 = np.concatenate([rng.normal(size=6) * 3, [-2., 4., 1., 0., 50., -50.]])
    out = f(L1, L2)
    p1 = scipy.special.expit(L1)
    ref = (p1 * (scipy.special.log_expit(L1) - scipy.special.log_expit(L2))
           + (1 - p1) * (scipy.special.log_expit(-L1) - scipy.special.log_expit(-L2)))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    assert np.all(out >= -1e-12)
    np.testing.assert_allclose(f(L1, L1), 0., atol=1e-12)


def test_sigmoid_cross_entropy_with_logits():
    l, y = pt.vectors("l", "y")
    f = thutil.function([l, y], thutil.sigmoid_cross_entropy_with_logits(l, y))
    L = np.concatenate([LOGITS, LOGITS, LOGITS])
    Y = np.concatenate([np.ones_like(LOGITS), np.zeros_like(LOGITS),
                        np.full_like(LOGITS, 0.3)])
    out = f(L, Y)
    ref = -(Y * scipy.special.log_expit(L) + (1 - Y) * scipy.special.log_expit(-L))
    assert np.all(np.isfinite(out))
    # softplus(l) - y*l cancels for y=1, l>0: absolute error ~eps*|l| where the loss is ~0
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
    # the confidently wrong cases are ~|logit|, the confidently right ones ~0
    np.testing.assert_allclose(out[:len(LOGITS)][LOGITS == -500.], 500., rtol=1e-14)
    np.testing.assert_allclose(out[len(LOGITS):2 * len(LOGITS)][LOGITS == -500.], 0., atol=1e-200)


# ------------------------------------------------------------------------------------ adam

def test_adam_matches_numpy_reference(rng):
    X = rng.normal(size=(7, 3))
    Y = rng.normal(size=(7, 2))
    W0, b0 = rng.normal(size=(3, 2)), rng.normal(size=(2,))
    W = pytensor.shared(W0.copy(), name="W")
    b = pytensor.shared(b0.copy(), name="b")
    x, y = pt.matrices("x", "y")
    cost = 0.5 * pt.sqr(pt.dot(x, W) + b - y).sum()
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    updates = thutil.adam(cost, [W, b], lr=lr)
    step = thutil.function([x, y], cost, updates=updates)

    state = thutil.adam_state_vars(updates)
    assert len(state) == 1 + 2 * 2
    assert state[0].get_value() == 0.
    assert [v.name for v in state[1:]] == ["W/adam_m", "W/adam_v", "b/adam_m", "b/adam_v"]
    assert all(v is not W and v is not b for v in state)

    p = [W0.copy(), b0.copy()]
    m = [np.zeros_like(q) for q in p]
    v = [np.zeros_like(q) for q in p]
    for t in range(1, 6):
        R = X @ p[0] + p[1] - Y
        ref_cost = 0.5 * np.sum(R ** 2)
        grads = [X.T @ R, R.sum(axis=0)]
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i in range(2):
            m[i] = b1 * m[i] + (1 - b1) * grads[i]
            v[i] = b2 * v[i] + (1 - b2) * grads[i] ** 2
            p[i] = p[i] - alpha * m[i] / (np.sqrt(v[i]) + eps)
        c = step(X, Y)
        assert isinstance(c, float)
        np.testing.assert_allclose(c, ref_cost, rtol=1e-12)
        np.testing.assert_allclose(W.get_value(), p[0], rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(b.get_value(), p[1], rtol=1e-11, atol=1e-14)
    assert state[0].get_value() == 5.
    for var, ref in zip(state[1:], [m[0], v[0], m[1], v[1]]):
        np.testing.assert_allclose(var.get_value(), ref, rtol=1e-11, atol=1e-15)


# -------------------------------------------------------------------------------- function

def test_function_output_types():
    x = pt.vector("x")
    f_scalar = thutil.function([x], x.sum())
    r = f_scalar(np.array([1., 2., 3.5]))
    assert type(r) is float and r == 6.5

    f_vec = thutil.function([x], 2 * x)
    r = f_vec(np.array([1., 2.]))
    assert isinstance(r, np.ndarray) and r.shape == (2,)
    np.testing.assert_array_equal(r, [2., 4.])

    f_list = thutil.function([x], [x.sum(), x * x, x.max()])
    r = f_list(np.array([1., -2.]))
    assert isinstance(r, tuple) and len(r) == 3
    assert type(r[0]) is float and r[0] == -1.
    assert isinstance(r[1], np.ndarray)
    np.testing.assert_array_equal(r[1], [1., 4.])
    assert type(r[2]) is float and r[2] == 1.

    f_one = thutil.function([x], [x.sum()])
    r = f_one(np.array([1., 2.]))
    assert isinstance(r, tuple) and r == (3.,)
