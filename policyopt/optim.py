"""The natural-gradient step shared by TRPO and the value function.

maximize obj(x) subject to KL(x0, x) <= max_kl, with KL's Hessian H at x0 known only through
Hessian-vector products:

1. solve (H + damping I) s = g by conjugate gradient (SciPy, at most 10 iterations);
2. scale s to the trust-region boundary of the damped quadratic model:
   fullstep = s / sqrt(0.5 s^T (H + damping I) s / max_kl + 1e-8);
3. backtrack along fullstep (halving, at most 10 tries) on the true objective, treating
   KL > 2 max_kl as objective -inf (a hard wall), until the improvement is positive and at
   least 0.1 x the linear prediction g . step.

`make_ngstep_func` binds this step to a model's compiled graphs; TRPO's policy step and the
value function's fit both go through it, as in the original.
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg


class DivergedError(RuntimeError):
    """Training produced non-finite parameters that no step rejection can undo."""


@dataclass
class NGStepInfo:
    """What one natural-gradient step did (logged as dl, kl, gnorm, bt, dx)."""

    obj0: float
    obj1: float
    kl1: float
    gnorm: float
    dx: float
    bt: int  # backtracking steps taken (max_backtracks + 1 when no step was accepted)
    accepted: bool
    reason: str = ""
    nonfinite: int = 0  # candidate steps rejected because they were NaN/inf

    @property
    def dl(self):
        return self.obj1 - self.obj0


def conjugate_gradient(Avp_func, b_P, max_iter=10, residual_tol=1e-10):
    """Approximately solve A x = b for symmetric positive-definite A given by A v products.

    Uses scipy.sparse.linalg.cg from x = 0 (one product per iteration)."""
    n = b_P.shape[0]
    A = scipy.sparse.linalg.LinearOperator((n, n), matvec=lambda v: Avp_func(np.ravel(v)),
                                           dtype=np.float64)
    bnorm = float(np.linalg.norm(b_P))
    atol = np.sqrt(residual_tol) if bnorm > 0 else 0.
    x_P, _ = scipy.sparse.linalg.cg(A, b_P, rtol=0., atol=atol, maxiter=max_iter)
    return x_P


def linesearch(f, x0_P, fullstep_P, expected_improve_rate, obj0, max_backtracks=10,
               accept_ratio=0.1, shrink=0.5):
    """Backtracking line search for a maximization. `f(x)` returns the objective (-inf allowed
    for rejected points); candidates with NaN/inf parameters or objective are rejected.
    Returns (accepted, x, obj, n_backtracks, n_nonfinite)."""
    nonfinite = 0
    for k in range(max_backtracks):
        frac = shrink ** k
        x_P = x0_P + frac * fullstep_P
        if not np.all(np.isfinite(x_P)):
            nonfinite += 1
            continue
        obj = f(x_P)
        if np.isnan(obj):
            nonfinite += 1
            continue
        actual = obj - obj0
        expected = expected_improve_rate * frac
        if np.isfinite(obj) and actual > 0 and actual >= accept_ratio * expected:
            return True, x_P, obj, k, nonfinite
    return False, x0_P, obj0, max_backtracks, nonfinite


def ngstep(x0_P, objgrad0_P, obj_and_kl_func, hvpx0_func, max_kl, damping, max_cg_iter=10,
           max_backtracks=10, obj_and_kl0=None):
    """One trust-region natural-gradient step (see the module docstring).

    obj_and_kl_func(x) -> (obj, kl): objective to maximize and KL(x0, x);
    hvpx0_func(v) -> H v with H the Hessian of the KL at x0; `obj_and_kl0`: (obj, kl) at x0
    when the caller already has them (computed with the gradient), else they are evaluated.
    Returns (x_P, NGStepInfo); x_P is x0_P when no step was taken.
    """
    x0_P = np.asarray(x0_P, dtype=np.float64)
    g_P = np.asarray(objgrad0_P, dtype=np.float64)
    obj0, kl0 = obj_and_kl0 if obj_and_kl0 is not None else obj_and_kl_func(x0_P)
    assert abs(kl0) <= 1e-8 * max(1., abs(max_kl)), f"KL at x0 must be 0, got {kl0}"
    gnorm = float(np.linalg.norm(g_P))
    if not np.all(np.isfinite(g_P)):
        return x0_P, NGStepInfo(obj0, obj0, 0., gnorm, 0., 0, False, "non-finite gradient")
    if np.abs(g_P).max(initial=0.) < 1e-6:
        return x0_P, NGStepInfo(obj0, obj0, 0., gnorm, 0., 0, False, "zero gradient")

    def damped_hvp(v_P):
        return hvpx0_func(v_P) + damping * v_P

    s_P = conjugate_gradient(damped_hvp, g_P, max_iter=max_cg_iter)
    shs = 0.5 * s_P.dot(damped_hvp(s_P))
    if not (np.isfinite(shs) and shs > 0):
        return x0_P, NGStepInfo(obj0, obj0, 0., gnorm, 0., 0, False, "non-positive curvature")
    fullstep_P = s_P / np.sqrt(shs / max_kl + 1e-8)
    expected_improve_rate = g_P.dot(fullstep_P)

    kls = {}

    def walled_obj(x_P):
        obj, kl = obj_and_kl_func(x_P)
        kls[x_P.tobytes()] = kl
        if np.isnan(kl):
            return np.nan
        return -np.inf if not np.isfinite(kl) or kl > 2. * max_kl else obj

    accepted, x_P, obj1, bt, nonfinite = linesearch(walled_obj, x0_P, fullstep_P,
                                                    expected_improve_rate, obj0,
                                                    max_backtracks=max_backtracks)
    if not accepted:
        return x0_P, NGStepInfo(obj0, obj0, 0., gnorm, 0., bt + 1, False,
                                "line search found no acceptable step", nonfinite)
    return x_P, NGStepInfo(obj0, obj1, float(kls[x_P.tobytes()]), gnorm,
                           float(np.linalg.norm(x_P - x0_P)), bt, True, "", nonfinite)


HVP_MODES = ("gauss_newton", "double_grad")


def check_hvp_mode(mode):
    """'gauss_newton' (default; equal to the exact product at x0, where the steps evaluate it)
    or 'double_grad' (the gradient of klgrad . v, exact anywhere, ~1.6x the cost)."""
    if mode not in HVP_MODES:
        raise ValueError(f"hvp_mode must be one of {HVP_MODES}, got {mode!r}")
    return mode


def make_ngstep_func(model, max_kl, damping, hvp_mode="gauss_newton"):
    """The natural-gradient step on a model's flat parameters (the policy under TRPO, the
    value function in its fit). The model provides these compiled graphs:

      compute_obj_and_kl(*inputs) -> (obj, kl)     objective and KL(x0, x) on the whole batch
      compute_activations(*fwd_inputs)             the network's activations at x0
      compute_gnvp_from_activations(*activations, *kl_inputs, v_P) -> Gauss-Newton product
      compute_hvp(*fwd_inputs, *kl_inputs, v_P)   -> exact (double-gradient) product

    Returns step(inputs, obj_and_kl0, grad_P, fwd_sub, kl_sub) -> NGStepInfo: `obj_and_kl0`
    and `grad_P` at the current parameters x0 (the caller computes them in one pass),
    `fwd_sub` and `kl_sub` the rows of the batch the Hessian-vector products use. The step
    leaves the model at the accepted parameters (x0 when none was accepted).
    """
    check_hvp_mode(hvp_mode)

    def step(inputs, obj_and_kl0, grad_P, fwd_sub, kl_sub):
        params0_P = model.get_params()

        def obj_and_kl(x_P):
            model.set_params(x_P)
            return model.compute_obj_and_kl(*inputs)

        if hvp_mode == "gauss_newton":
            # the activations at x0 on the subsample, once for the whole CG solve
            acts = model.compute_activations(*fwd_sub)

            def hvp(v_P):
                return model.compute_gnvp_from_activations(*acts, *kl_sub, v_P)
        else:
            def hvp(v_P):
                model.set_params(params0_P)
                return model.compute_hvp(*fwd_sub, *kl_sub, v_P)

        x_P, info = ngstep(params0_P, grad_P, obj_and_kl, hvp, max_kl, damping,
                           obj_and_kl0=obj_and_kl0)
        model.set_params(x_P)
        return info

    return step
