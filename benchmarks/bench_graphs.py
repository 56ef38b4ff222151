"""Compiled TRPO policy graphs vs the same maths hand-written in NumPy.

Builds the project's default Gaussian policy (fc100-tanh-fc100-tanh, Hopper sizes: 11 obs
features, 3 actions) and times, on one batch of `--rows` rows:

  surr_grad           policy.compute_obj_and_grad  (surrogate objective and its flat gradient)
  kl_hvp              policy.compute_gnvp  (one mean-KL Hessian-vector product at x0, the
                                             Gauss-Newton graph TRPO uses)
  kl_hvp_double_grad  policy.compute_hvp   (the same product by the double-gradient trick)

against NumPy implementations of the same maths in the same process (hand-written backprop for
the gradient; forward-mode JVP + Gauss-Newton/Fisher metric + backprop for the HVP). The NumPy
results are first checked against the compiled ones (they must agree to ~1e-8 relative).

Output: one ``name: value`` line per figure. ``*_vs_numpy`` is compiled time / NumPy time
(median over repeats; < 1 means the compiled graph is faster). Target: <= 1.3.

    python benchmarks/bench_graphs.py [--rows 50000] [--repeats 7] [--threads N]
"""
import argparse
import gc
import os
import sys
import time

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
if __name__ == "__main__":
    # --threads must reach OpenBLAS (NumPy's and the one PyTensor links) before they load.
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--threads", type=int, default=None)
    _threads = _pre.parse_known_args()[0].threads
    if _threads is not None and _threads > 0:
        for _var in _THREAD_VARS:
            os.environ[_var] = str(_threads)

import numpy as np  # noqa: E402

from policyopt import ContinuousSpace, blas, nn, rl  # noqa: E402

OBS_DIM, ACT_DIM = 11, 3  # Hopper
PARAM_ORDER = ["layer_0/AffineLayer/W", "layer_0/AffineLayer/b", "layer_2/AffineLayer/W",
               "layer_2/AffineLayer/b", "out/AffineLayer/W", "out/AffineLayer/b",
               "logstdevs_1_Da"]


# ------------------------------------------------------------------------------- NumPy maths

class NumpyPolicy:
    """The GaussianPolicy's maths with the policy's current parameters and obs statistics.

    x = (obs - mean) / (stdev + eps);  h1 = tanh(x W0 + b0);  h2 = tanh(h1 W2 + b2);
    means = h2 Wo + bo;  stdevs = exp(logstdevs)  (min_stdev = 0).
    """

    def __init__(self, policy):
        assert policy.min_stdev == 0.
        vars_ = policy.get_trainable_variables()
        names = [v.name for v in vars_]
        assert len(names) == len(PARAM_ORDER) and all(
            n.endswith(s) for n, s in zip(names, PARAM_ORDER)), names
        self.names = names
        vals = [np.array(v.get_value(), dtype=np.float64) for v in vars_]
        self.shapes = [v.shape for v in vals]
        self.W0, self.b0, self.W2, self.b2, self.Wo, self.bo, self.logstd = vals
        self.obs_mean = policy.obsnorm.get_mean()
        self.obs_scale = policy.obsnorm.get_stdev() + policy.obsnorm.eps
        self.P = sum(v.size for v in vals)

    def unflatten(self, v_P):
        out, pos = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            out.append(v_P[pos:pos + size].reshape(shape))
            pos += size
        return out

    @staticmethod
    def _flat(arrays):
        return np.concatenate([a.ravel() for a in arrays])

    def forward(self, obs_B_Df):
        x = (obs_B_Df - self.obs_mean) / self.obs_scale
        h1 = x @ self.W0
        h1 += self.b0
        np.tanh(h1, out=h1)
        h2 = h1 @ self.W2
        h2 += self.b2
        np.tanh(h2, out=h2)
        mu = h2 @ self.Wo
        mu += self.bo
        return x, h1, h2, mu

    def backprop(self, x, h1, h2, dmu_B_Da, dlogstd_1_Da):
        """Vector-Jacobian product: cotangents on (means, logstd) -> flat parameter gradient."""
        dWo = h2.T @ dmu_B_Da
        dbo = dmu_B_Da.sum(axis=0, keepdims=True)
        dz2 = dmu_B_Da @ self.Wo.T               # dL/dh2
        dz2 *= 1. - h2 * h2                      # dL/d(pre-activation 2)
        dW2 = h1.T @ dz2
        db2 = dz2.sum(axis=0, keepdims=True)
        dz1 = dz2 @ self.W2.T
        dz1 *= 1. - h1 * h1
        dW0 = x.T @ dz1
        db0 = dz1.sum(axis=0, keepdims=True)
        return self._flat([dW0, db0, dW2, db2, dWo, dbo, dlogstd_1_Da])

    def surr_and_grad(self, obs_B_Df, a_B_Da, prop_B_Pa, adv_B):
        """obj = mean(exp(logp - logp_prop) * adv) and d obj / d params (flat)."""
        B, Da = a_B_Da.shape
        x, h1, h2, mu = self.forward(obs_B_Df)
        stdev_1_Da = np.exp(self.logstd)
        z = (a_B_Da - mu) / stdev_1_Da
        zsq = z * z
        # logp - logp_prop; the -0.5 D log 2pi constants cancel
        pm, ps = prop_B_Pa[:, :Da], prop_B_Pa[:, Da:]
        zp = (a_B_Da - pm) / ps
        dlogp = (-0.5 * (zsq.sum(axis=1) - (zp * zp).sum(axis=1))
                 - self.logstd.sum() + np.log(ps).sum(axis=1))
        w_B = np.exp(dlogp) * adv_B
        obj = w_B.mean()
        g_B = w_B / B                               # d obj / d logp_B
        # d logp / d mu = (a - mu)/s^2 = z/s;  d logp / d logstd = z^2 - 1
        dmu = z
        dmu *= g_B[:, None]
        dmu /= stdev_1_Da
        dlogstd = (g_B @ zsq - g_B.sum())[None, :]
        return obj, self.backprop(x, h1, h2, dmu, dlogstd)

    def kl_hvp(self, obs_B_Df, v_P):
        """H v for H the Hessian of mean KL(proposal || policy) at x0 (proposal = policy).

        At x0 the KL's gradient w.r.t. the distribution parameters vanishes, so H = J^T M J
        (Gauss-Newton = Fisher), J = d(means_B_Da, logstd_1_Da)/d params and M the KL Hessian
        w.r.t. them: d2/dmean^2 = 1/(B stdev^2) per entry, d2/dlogstd^2 = 2 per dim (2/B per
        row, the logstd shared by all B rows), no cross terms.
        """
        B = obs_B_Df.shape[0]
        vW0, vb0, vW2, vb2, vWo, vbo, vls = self.unflatten(v_P)
        x, h1, h2, mu = self.forward(obs_B_Df)
        # J v by forward mode through the MLP
        t1 = x @ vW0
        t1 += vb0
        t1 *= 1. - h1 * h1                       # tangent of h1
        t2 = t1 @ self.W2
        t2 += h1 @ vW2
        t2 += vb2
        t2 *= 1. - h2 * h2                       # tangent of h2
        tmu = t2 @ self.Wo
        tmu += h2 @ vWo
        tmu += vbo                               # tangent of means; tangent of logstd = vls
        # M (J v)
        tmu *= 1. / (B * np.exp(2. * self.logstd))
        # J^T M J v
        return self.backprop(x, h1, h2, tmu, 2. * vls)


# --------------------------------------------------------------------------------- harness

def make_problem(B, seed):
    rng = np.random.default_rng(seed)
    policy = rl.GaussianPolicy(nn.DEFAULT_HIDDEN_SPEC, ContinuousSpace(OBS_DIM),
                               ContinuousSpace(ACT_DIM))
    policy.set_params(rng.normal(scale=0.1, size=policy.P))
    loc = rng.normal(scale=2., size=OBS_DIM)
    scale = rng.uniform(0.2, 3., size=OBS_DIM)
    policy.update_obsnorm(loc + scale * rng.standard_normal((B, OBS_DIM)))
    obs_B_Df = loc + scale * rng.standard_normal((B, OBS_DIM)) * 1.1
    adist_B_Pa = policy.compute_actiondist_params(obs_B_Df)  # at x0 (used by the HVP)
    a_B_Da = policy._sample_from_actiondist(adist_B_Pa, False, rng)
    # surrogate's proposal: close to, but not equal to, the current policy
    prop_B_Pa = adist_B_Pa.copy()
    prop_B_Pa[:, :ACT_DIM] += rng.normal(scale=0.05, size=(B, ACT_DIM))
    prop_B_Pa[:, ACT_DIM:] *= np.exp(rng.normal(scale=0.1, size=ACT_DIM))
    adv_B = rng.standard_normal(B)
    v_P = rng.standard_normal(policy.P)
    return policy, obs_B_Df, a_B_Da, prop_B_Pa, adist_B_Pa, adv_B, v_P


def rel_err(got, ref):
    """max |got - ref| / max |ref| (a scale-aware relative error for vectors)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300))


def blas_threads():
    """Threads of every BLAS loaded in the process (via threadpoolctl when it is installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.environ.get("OPENBLAS_NUM_THREADS", "default")
    info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{os.path.basename(i['filepath'])}={i['num_threads']}" for i in info)


def give_numpy_its_blas_threads(n):
    """The first compile runs NumPy's bundled OpenBLAS single-threaded (see
    policyopt.blas.limit_numpy_blas_threads); the NumPy reference here gets the threads a
    standalone NumPy program would have."""
    blas.setup()  # what the first compile does, so that it cannot undo the setting below
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    for lib in ThreadpoolController().lib_controllers:
        if "numpy.libs" in (lib.filepath or ""):
            lib.set_num_threads(n)


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints `name: value` lines; *_vs_numpy = compiled "
                                        "median time / NumPy median time (target <= 1.3).")
    ap.add_argument("--rows", type=int, default=50000, help="batch size B (default 50000)")
    ap.add_argument("--repeats", type=int, default=7,
                    help="timed repeats; the median is reported (default 7)")
    ap.add_argument("--seed", type=int, default=0, help="data/parameter seed (default 0)")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads for both sides (sets OPENBLAS_NUM_THREADS etc. before "
                         "the libraries load); default: the environment's setting")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.repeats < 1:
        ap.error("--rows and --repeats must be >= 1")

    policy, obs, a, prop, adist, adv, v_P = make_problem(args.rows, args.seed)
    give_numpy_its_blas_threads(args.threads or os.cpu_count())
    npol = NumpyPolicy(policy)
    # the flat parameter order the NumPy code assumes (asserted in NumpyPolicy), for the record
    print("flat parameter order: "
          + ", ".join(f"{n} {s}" for n, s in zip(npol.names, npol.shapes)),
          file=sys.stderr)

    surr_c = policy.compute_obj_and_grad          # compiles on first access
    hvp_c = policy.compute_gnvp
    hvp2_c = policy.compute_hvp

    def run_surr_c():
        return surr_c(obs, a, prop, adv)

    def run_surr_n():
        return npol.surr_and_grad(obs, a, prop, adv)

    def run_hvp_c():
        return hvp_c(obs, adist, v_P)

    def run_hvp2_c():
        return hvp2_c(obs, adist, v_P)

    def run_hvp_n():
        return npol.kl_hvp(obs, v_P)

    # ---- correctness (also the warm-up call of every function)
    obj_c, g_c = run_surr_c()
    obj_n, g_n = run_surr_n()
    np.testing.assert_allclose(obj_n, obj_c, rtol=1e-8)
    np.testing.assert_allclose(g_n, g_c, rtol=1e-8, atol=1e-8 * np.abs(g_c).max())
    hv_c = run_hvp_c()
    hv_n = run_hvp_n()
    np.testing.assert_allclose(hv_n, hv_c, rtol=1e-8, atol=1e-8 * np.abs(hv_c).max())
    np.testing.assert_allclose(run_hvp2_c(), hv_c, rtol=1e-8, atol=1e-8 * np.abs(hv_c).max())
    # sanity: the HVP is really a curvature product (v^T H v > 0 for a PSD Fisher matrix)
    assert float(v_P @ hv_c) > 0.
    surr_err = max(abs(obj_n - obj_c) / abs(obj_c), rel_err(g_n, g_c))
    hvp_err = rel_err(hv_n, hv_c)

    # ---- timing: compiled and NumPy interleaved within each repeat; the order inside each
    # pair alternates (AB, BA, AB, ...) so allocator/cache after-effects hit both sides alike.
    pairs = {"surr_grad": (run_surr_c, run_surr_n), "kl_hvp": (run_hvp_c, run_hvp_n),
             "kl_hvp_double_grad": (run_hvp2_c, run_hvp_n)}
    times = {k: ([], []) for k in pairs}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(args.repeats):
            for key, (fc, fn) in pairs.items():
                if r % 2 == 0:
                    tc = timed(fc)
                    tn = timed(fn)
                else:
                    tn = timed(fn)
                    tc = timed(fc)
                times[key][0].append(tc)
                times[key][1].append(tn)
    finally:
        if gc_was_enabled:
            gc.enable()

    out = []
    for key in pairs:
        tc, tn = (float(np.median(t)) for t in times[key])
        out.append((f"{key}_vs_numpy", f"{tc / tn:.3f}"))
        out.append((f"{key}_compiled_ms", f"{1e3 * tc:.2f}"))
        out.append((f"{key}_numpy_ms", f"{1e3 * tn:.2f}"))
    out.append(("surr_grad_max_rel_err", f"{surr_err:.2e}"))
    out.append(("kl_hvp_max_rel_err", f"{hvp_err:.2e}"))
    out.append(("rows", str(args.rows)))
    out.append(("repeats", str(args.repeats)))
    out.append(("blas", blas.blas_status.source))
    out.append(("blas_threads", blas_threads()))
    out.append(("load_avg_1min", f"{os.getloadavg()[0]:.2f}"))
    for name, value in out:
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
