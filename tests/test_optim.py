"""policyopt.optim: the natural-gradient step on problems whose answer is known in closed form."""
import numpy as np
import pytest

from policyopt import optim


def _problem(rng, n=5):
    A = rng.normal(size=(n, n))
    F = A @ A.T + 0.5 * np.eye(n)  # SPD "Fisher" matrix
    g = rng.normal(size=n)
    x0 = rng.normal(size=n)
    return F, g, x0


class Counter:
    def __init__(self, f):
        self.f, self.n = f, 0

    def __call__(self, *a):
        self.n += 1
        return self.f(*a)


def _quad_kl(F, x0, scale=1.):
    return lambda x: scale * 0.5 * (x - x0) @ F @ (x - x0)


@pytest.mark.parametrize("damping", [0., 0.5])
def test_ngstep_reaches_trust_region_boundary_along_natural_gradient(damping, rng):
    F, g, x0 = _problem(rng)
    max_kl = 0.01
    kl = _quad_kl(F, x0)

    def obj_and_kl(x):
        return g @ (x - x0), kl(x)

    hvp = Counter(lambda v: F @ v)
    x, info = optim.ngstep(x0, g, obj_and_kl, hvp, max_kl=max_kl, damping=damping)
    dx = x - x0
    Fd = F + damping * np.eye(5)
    # quadratic model of the damped KL at the boundary
    np.testing.assert_allclose(0.5 * dx @ Fd @ dx, max_kl, rtol=1e-2)
    # direction: (F + damping I)^-1 g
    nat = np.linalg.solve(Fd, g)
    assert dx @ nat / (np.linalg.norm(dx) * np.linalg.norm(nat)) > 0.999
    # closed form of the whole step: sqrt(2 max_kl / g^T Fd^-1 g) Fd^-1 g
    np.testing.assert_allclose(dx, np.sqrt(2 * max_kl / (g @ nat)) * nat, rtol=1e-3, atol=1e-6)
    assert info.accepted and info.bt == 0
    np.testing.assert_allclose(info.kl1, kl(x), rtol=1e-12)
    np.testing.assert_allclose(info.dl, g @ dx, rtol=1e-12)
    np.testing.assert_allclose(info.dx, np.linalg.norm(dx), rtol=1e-12)
    np.testing.assert_allclose(info.gnorm, np.linalg.norm(g), rtol=1e-12)
    assert hvp.n <= 12  # at most 10 CG products plus the curvature product


def test_ngstep_concave_objective(rng):
    """obj = g.(x-x0) - 0.5 (x-x0)^T Q (x-x0): the accepted step improves the objective by at
    least a tenth of the linear prediction and stays inside the KL wall."""
    F, g, x0 = _problem(rng)
    Q = 20. * np.eye(5)
    max_kl = 0.05

    def obj(x):
        d = x - x0
        return g @ d - 0.5 * d @ Q @ d

    kl = _quad_kl(F, x0)
    x, info = optim.ngstep(x0, g, lambda x: (obj(x), kl(x)), lambda v: F @ v, max_kl, 0.)
    assert info.accepted and info.bt >= 1  # the curvature of obj forces backtracking
    nat = np.linalg.solve(F, g)
    full = np.sqrt(2 * max_kl / (g @ nat)) * nat
    frac = 0.5 ** info.bt
    np.testing.assert_allclose(x - x0, frac * full, rtol=1e-3, atol=1e-7)
    assert obj(x) - obj(x0) >= 0.1 * frac * (g @ full) * (1 - 1e-3)
    # every larger step failed the acceptance test
    for k in range(info.bt):
        step = 0.5 ** k * full
        assert obj(x0 + step) - obj(x0) < 0.1 * 0.5 ** k * (g @ full) * (1 + 1e-3)
    assert kl(x) <= 2 * max_kl


def test_ngstep_kl_wall_forces_backtracking(rng):
    F, g, x0 = _problem(rng)
    max_kl = 0.01
    # true KL grows 10x faster than the quadratic model: the full step has KL ~ 10 max_kl
    kl_true = _quad_kl(F, x0, scale=10.)

    def obj_and_kl(x):
        return g @ (x - x0), kl_true(x)

    x, info = optim.ngstep(x0, g, obj_and_kl, lambda v: F @ v, max_kl, 0.)
    assert info.accepted
    assert kl_true(x) <= 2 * max_kl
    assert info.bt > 0
    # 10 * 0.5^(2k) * max_kl <= 2 max_kl first holds at k = 2
    assert info.bt == 2
    np.testing.assert_allclose(kl_true(x), 10 * max_kl / 16, rtol=2e-2)
    np.testing.assert_allclose(info.kl1, kl_true(x), rtol=1e-12)


def test_ngstep_no_acceptable_step_leaves_x_unchanged(rng):
    F, g, x0 = _problem(rng)
    kl = _quad_kl(F, x0)
    calls = Counter(lambda x: (-(g @ (x - x0)), kl(x)))  # objective decreases along the step
    x0_copy = x0.copy()
    x, info = optim.ngstep(x0, g, calls, lambda v: F @ v, 0.01, 0.)
    np.testing.assert_array_equal(x, x0_copy)
    np.testing.assert_array_equal(x0, x0_copy)
    assert not info.accepted
    assert info.bt == 11  # max_backtracks + 1
    assert info.dl == 0. and info.dx == 0.
    assert calls.n == 1 + 10  # KL check at x0, then 10 tries


def test_ngstep_zero_gradient_returns_x0(rng):
    F, _, x0 = _problem(rng)
    g = np.full(5, 1e-7)
    hvp = Counter(lambda v: F @ v)
    x, info = optim.ngstep(x0, g, lambda x: (0., _quad_kl(F, x0)(x)), hvp, 0.01, 0.1)
    np.testing.assert_array_equal(x, x0)
    assert not info.accepted and info.dx == 0.
    assert hvp.n == 0


def test_ngstep_asserts_zero_kl_at_x0(rng):
    F, g, x0 = _problem(rng)
    with pytest.raises(AssertionError):
        optim.ngstep(x0, g, lambda x: (0., 0.5 + _quad_kl(F, x0)(x)), lambda v: F @ v,
                     0.01, 0.)


def test_conjugate_gradient_solves_spd_system(rng):
    n = 6
    A = rng.normal(size=(n, n))
    M = A @ A.T + np.eye(n)
    b = rng.normal(size=n)
    prod = Counter(lambda v: M @ v)
    x = optim.conjugate_gradient(prod, b, max_iter=10)
    np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(M @ x - b) <= 1e-5 * 1.01
    assert prod.n <= 11


def test_conjugate_gradient_first_iteration_is_steepest_descent(rng):
    n = 5
    A = rng.normal(size=(n, n))
    M = A @ A.T + np.eye(n)
    b = rng.normal(size=n)
    x1 = optim.conjugate_gradient(lambda v: M @ v, b, max_iter=1)
    # from x = 0 the residual is b; exact line search along it
    np.testing.assert_allclose(x1, (b @ b) / (b @ M @ b) * b, rtol=1e-12)


class _QuadraticModel:
    """A stand-in model with the graph entry points make_ngstep_func uses: a linear objective
    g . x on rows of data and the "KL" 0.5 (x - x0)^T A (x - x0), A from the batch's rows."""

    def __init__(self, x0, g, A):
        self.x, self.g, self.A = x0.copy(), g, A
        self.calls = {"gn": 0, "hvp": 0}

    def get_params(self):
        return self.x.copy()

    def set_params(self, x):
        self.x = x.copy()

    def compute_obj_and_kl(self, x0, scale):
        d = self.x - x0
        return scale * self.g @ self.x, 0.5 * d @ self.A @ d

    def compute_activations(self, rows):
        return (rows.T @ rows / len(rows),)

    def compute_gnvp_from_activations(self, A, extra, v):
        self.calls["gn"] += 1
        return A @ v * extra

    def compute_hvp(self, rows, extra, v):
        self.calls["hvp"] += 1
        return rows.T @ rows / len(rows) @ v * extra


@pytest.mark.parametrize("mode", ["gauss_newton", "double_grad"])
def test_make_ngstep_func_takes_the_natural_step_on_a_model(rng, mode):
    """One driver serves the policy and the value function: bound to a model, it steps along
    A^-1 g to the trust-region boundary, leaves the model there, and uses the products of the
    chosen Hessian-vector mode on the given rows only."""
    n = 4
    rows = rng.normal(size=(50, n))
    A = rows.T @ rows / len(rows)
    g, x0 = rng.normal(size=n), rng.normal(size=n)
    model = _QuadraticModel(x0, g, A)
    step = optim.make_ngstep_func(model, max_kl=0.01, damping=0., hvp_mode=mode)
    info = step((x0, 1.), (g @ x0, 0.), g, (rows,), (1.,))
    natural = np.linalg.solve(A, g)
    expected = x0 + np.sqrt(2 * 0.01 / (g @ natural)) * natural
    np.testing.assert_allclose(model.x, expected, rtol=1e-6)
    assert info.accepted and info.kl1 == pytest.approx(0.01, rel=1e-4)
    used = "gn" if mode == "gauss_newton" else "hvp"
    assert model.calls[used] > 0 and model.calls[{"gn": "hvp", "hvp": "gn"}[used]] == 0
    with pytest.raises(ValueError, match="hvp_mode"):
        optim.make_ngstep_func(model, 0.01, 0., hvp_mode="exact")
