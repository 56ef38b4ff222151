"""Every compiled graph gives the same numbers in every installed backend (design.md sections 4
and 8).

`policyopt.backend` selects how PyTensor compiles the project's graphs: ``c`` (the default and
the reference here), ``numba`` or ``jax``. For each model type (GaussianPolicy, GibbsPolicy,
ValueFunc, TransitionClassifier continuous and discrete) this file builds the model once, gives
it random parameters and non-trivial standardizer statistics, and compiles every one of its
`lazy_function` graphs under C and under each other backend from the very same symbolic
(inputs, outputs[, updates]) spec, then compares the outputs on the same data. The stateful
graphs (the discriminator's Adam step and the policy's behavioural-cloning Adam step) start from
identical parameters and Adam state in every backend and must leave identical parameters and
moments behind. Short TRPO and GAIL runs of the scripts must write matching logs.

A backend whose package is not importable is skipped with the reason shown. The graphs are
small (a few rows, hidden layers of 8 and 6 units): the cost is compilation, which Numba makes
slow (tens of seconds per graph on a busy 2-core machine with a cold cache), so every graph is
compiled exactly once per backend and the reference C results are cached per module.

Tolerances (measured maxima in the comments; see `TOL`): the backends evaluate the same graph
with the same float64 operations, but the C backend uses glibc's vectorised tanh (4 ULP,
`policyopt.cops.FastTanh`), BLAS dot products whose summation order differs from Numba's and
XLA's, and each backend fuses elementwise chains differently; so results differ in the last
few bits (measured: at most 2e-15 of an output's scale, see `TOL`).
"""
import contextlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from policyopt import ContinuousSpace, FiniteSpace, backend, imitation, nn, rl, thutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO_ROOT, "scripts")

OTHER_BACKENDS = ("numba", "jax")  # each compared with "c", the reference


def require_backend(name):
    """Skip (reason shown) when `name`'s package is not importable."""
    try:
        backend.check_backend_available(name)
    except RuntimeError as e:
        pytest.skip(f"backend {name!r} unavailable: {e}")


# --------------------------------------------------------------------------------- tolerances
# |out - ref| <= rtol * |ref| + atol * max|ref|   (atol is relative to the array's scale, so
# that components of a gradient that nearly cancel are judged against the gradient's size).
# Measured here (2-core x86-64, PyTensor 3.0.7, Numba 0.65, JAX 0.10, CPU): the largest
# |out - ref| / max|ref| over every graph of every model was, numba / jax:
#   forward values (actiondist, log-probs, obj, kl, scores, rewards, losses, activations)
#                                                        3.4e-16 / 5.1e-16
#   first-order gradients                                3.7e-16 / 7.4e-16
#   Hessian- and Gauss-Newton-vector products            8.1e-16 / 9.0e-16
#   two Adam steps (losses, params, t and moments)       6.1e-16 / 2.0e-15
# i.e. last-bit rounding. The bounds keep >= 1e4 of margin for other CPUs (libmvec and BLAS
# kernels differ with the vector width) while any real difference (a wrong or dropped term,
# float32 anywhere: >= 1e-7) still fails.
TOL = {
    "forward": dict(rtol=1e-10, atol=1e-12),
    "grad": dict(rtol=1e-9, atol=1e-11),
    "second_order": dict(rtol=1e-8, atol=1e-10),
    "adam": dict(rtol=1e-9, atol=1e-11),
}


def tol_kind(graph):
    if graph in ("compute_hvp", "compute_gnvp", "compute_gnvp_from_activations"):
        return "second_order"
    if "grad" in graph:
        return "grad"
    if "adam" in graph or "bclone_step" in graph:
        return "adam"
    return "forward"


MEASURED = {}  # (backend, kind, graph) -> max |out - ref| / max|ref| (printed with -s)


def assert_close(out, ref, tol, what, record=None):
    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != {ref.shape}"
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(ref)), what
    scale = float(np.max(np.abs(ref))) if ref.size else 0.
    diff = np.abs(out - ref)
    if record is not None and ref.size:
        MEASURED[record] = max(MEASURED.get(record, 0.), float(diff.max()) / max(scale, 1e-300))
    bound = tol["rtol"] * np.abs(ref) + tol["atol"] * max(scale, 1e-300)
    bad = diff > bound
    assert not bad.any(), (
        f"{what}: {int(bad.sum())}/{ref.size} elements differ beyond rtol={tol['rtol']:g}, "
        f"atol={tol['atol']:g}*max|ref| (max |diff| {diff.max():.3g}, max|ref| {scale:.3g})")


def as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


# ------------------------------------------------------------------------------------- models

SPECS = {  # every nonlinearity appears; each model is small (compile cost, not size, matters)
    "gaussian": [{"type": "fc", "n": 8}, {"type": "nonlin", "func": "tanh"},
                 {"type": "fc", "n": 6}, {"type": "nonlin", "func": "lrelu"}],
    "gibbs": [{"type": "fc", "n": 8}, {"type": "nonlin", "func": "elu"},
              {"type": "fc", "n": 6}, {"type": "nonlin", "func": "tanh"}],
    "valuefunc": [{"type": "fc", "n": 8}, {"type": "nonlin", "func": "relu"},
                  {"type": "fc", "n": 6}, {"type": "nonlin", "func": "tanh"}],
    "clf_continuous": [{"type": "fc", "n": 8}, {"type": "nonlin", "func": "tanh"},
                       {"type": "fc", "n": 6}, {"type": "nonlin", "func": "lrelu"}],
    "clf_discrete": [{"type": "fc", "n": 8}, {"type": "nonlin", "func": "lrelu"},
                     {"type": "fc", "n": 6}, {"type": "nonlin", "func": "tanh"}],
}

POLICY_GRAPHS = ["_compute_actiondist_params", "_compute_action_logprobs", "compute_obj_and_kl",
                 "compute_obj_and_grad", "compute_obj_kl_and_grad", "compute_hvp",
                 "compute_gnvp", "compute_activations", "compute_gnvp_from_activations",
                 "compute_bclone_loss"]
GRAPHS = {
    "gaussian": POLICY_GRAPHS,
    "gibbs": POLICY_GRAPHS,
    "valuefunc": ["_evaluate_raw", "compute_obj_and_kl", "compute_val_obj_and_grad",
                  "compute_hvp", "compute_gnvp", "compute_activations",
                  "compute_gnvp_from_activations"],
    "clf_continuous": ["_compute_scores", "_compute_reward", "_adamstep", "_compute_loss",
                       "_compute_loss_scores_and_rewards"],
    "clf_discrete": ["_compute_scores", "_compute_reward", "_adamstep", "_compute_loss",
                     "_compute_loss_scores_and_rewards"],
}
KINDS = list(GRAPHS)

B = 23  # rows of data (odd, not a multiple of any SIMD width)
Do, Da, K = 3, 2, 3  # obs dims, continuous action dims, discrete actions

def lazy_graphs(model):
    """{name: lazy_function} over the model's class hierarchy."""
    out = {}
    for klass in reversed(type(model).__mro__):
        for name, attr in vars(klass).items():
            if isinstance(attr, thutil.lazy_function):
                out[name] = attr
    return out


def stdz_data(rng, D, n=200):
    """Data whose standardizer statistics are far from (0, 1) and differ per column."""
    return rng.normal(loc=np.linspace(-3., 2., D), scale=np.linspace(0.2, 4., D), size=(n, D))


class Case:
    """One model, its data sets ({symbolic input: value}), compiled graphs and C results.

    Data sets: "random" (proposal / old values unrelated to the model) and "x0" (proposal =
    the model's own action distribution / old values = its own values: where TRPO evaluates
    the Hessian-vector products)."""

    def __init__(self, kind, model, values, state_vars=()):
        self.kind, self.model = kind, model
        self.data = {"random": values}
        self.state_vars = list(state_vars)  # non-parameter shared variables a graph updates
        self.specs, self.compiled, self.results = {}, {}, {}
        self.snapshot = self.shared_values()

    def shared_vars(self):
        return self.model.get_variables() + self.state_vars

    def shared_values(self):
        return [v.get_value().copy() for v in self.shared_vars()]

    def restore(self):
        for v, val in zip(self.shared_vars(), self.snapshot):
            v.set_value(val.copy())

    def spec(self, graph):
        """The graph's (inputs, outputs, updates), built once and shared by all backends."""
        if graph not in self.specs:
            s = lazy_graphs(self.model)[graph].build(self.model)
            self.specs[graph] = (list(s[0]), s[1], s[2] if len(s) > 2 else None)
        return self.specs[graph]

    def dataset(self, name):
        if name not in self.data:
            assert name == "x0"
            m, values = self.model, dict(self.data["random"])
            if isinstance(m, rl.ValueFunc):
                values[m.old_val_B] = self.result("_evaluate_raw", "c")[0]
            else:
                values[m.proposal_actiondist_B_Pa] = \
                    self.result("_compute_actiondist_params", "c")[0]
            self.data[name] = values
        return self.data[name]

    def inputs(self, graph, dataset):
        values, ins, args = self.dataset(dataset), self.spec(graph)[0], []
        cached = [v for v in ins if (v.name or "").endswith("_cached")]
        if cached:  # cut_forward placeholders: the network's activations, computed by C
            acts = self.result("compute_activations", "c")
            assert len(cached) == len(acts)
        for v in ins:
            if v in cached:
                args.append(acts[cached.index(v)])
            else:
                assert v in values, f"{self.kind}.{graph}: no test data for input {v.name}"
                args.append(values[v])
        return args

    def function(self, graph, backend_name):
        """`graph` compiled under `backend_name`, once per (graph, backend)."""
        key = (graph, backend_name)
        if key not in self.compiled:
            ins, outs, updates = self.spec(graph)
            self.compiled[key] = thutil.function(ins, outs, updates=updates,
                                                 backend_name=backend_name,
                                                 name=f"{graph}_{backend_name}")
        return self.compiled[key]

    def result(self, graph, backend_name, dataset="random"):
        """A list of output arrays (for a graph with updates: the outputs of two calls from
        the initial parameters and Adam state, then the value of every shared variable)."""
        key = (graph, backend_name, dataset)
        if key in self.results:
            return self.results[key]
        fn, args = self.function(graph, backend_name), self.inputs(graph, dataset)
        if self.spec(graph)[2] is None:
            out = [np.asarray(o) for o in as_list(fn(*args))]
        else:
            self.restore()  # identical parameters and Adam state in every backend
            try:
                out = [np.asarray(o) for _ in range(2) for o in as_list(fn(*args))]
                out += self.shared_values()
            finally:
                self.restore()
        if backend_name == "c":  # only the references are kept
            self.results[key] = out
        return out


def make_policy_case(kind, rng):
    if kind == "gaussian":
        pol = rl.GaussianPolicy(json.dumps(SPECS[kind]), ContinuousSpace(Do), ContinuousSpace(Da),
                                min_stdev=0.01)
        a = rng.normal(size=(B, Da))
        proposal = np.concatenate([rng.normal(size=(B, Da)),
                                   np.exp(0.3 * rng.normal(size=(B, Da)))], axis=1)
    else:
        pol = rl.GibbsPolicy(json.dumps(SPECS[kind]), ContinuousSpace(Do), FiniteSpace(K))
        a = rng.integers(0, K, size=(B, 1)).astype(np.int64)  # integer indexing, int64
        scores = rng.normal(size=(B, K))
        proposal = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    pol.set_params(rng.normal(scale=0.5, size=pol.P))
    pol.obsnorm.update(stdz_data(rng, Do))
    values = {pol.obsfeat_B_Df: stdz_data(rng, Do, B), pol.a_B_Da: a,
              pol.proposal_actiondist_B_Pa: proposal, pol.advantage_B: rng.normal(size=B),
              pol.v_P: rng.normal(size=pol.P)}
    return Case(kind, pol, values)


def make_valuefunc_case(rng):
    vf = rl.ValueFunc(json.dumps(SPECS["valuefunc"]), ContinuousSpace(Do), enable_obsnorm=True,
                      enable_vnorm=True, max_kl=0.01, damping=0.1, time_scale=1. / 200)
    vf.set_params(rng.normal(scale=0.5, size=vf.P))
    vf.obsnorm.update(stdz_data(rng, Do))
    vf.vnorm.update(stdz_data(rng, 1))
    values = {vf.obsfeat_B_Df: stdz_data(rng, Do, B),
              vf.t_B: rng.integers(0, 200, size=B).astype(np.float64),
              vf.target_val_B: rng.normal(size=B), vf.old_val_B: rng.normal(size=B),
              vf.v_P: rng.normal(size=vf.P)}
    return Case("valuefunc", vf, values)


def make_classifier_case(kind, rng):
    discrete = kind == "clf_discrete"
    act_space = FiniteSpace(K) if discrete else ContinuousSpace(Da)
    # continuous: with the time input; discrete: the favor_zero_expert_reward reward graph
    clf = imitation.TransitionClassifier(json.dumps(SPECS[kind]), ContinuousSpace(Do), act_space,
                                         include_time=not discrete, time_scale=0.01,
                                         favor_zero_expert_reward=discrete)
    clf.set_params(rng.normal(scale=0.8, size=clf.get_num_params()))
    clf.inputnorm.update(stdz_data(rng, Do if discrete else Do + Da))
    a = (rng.integers(0, K, size=(B, 1)).astype(np.int64) if discrete
         else rng.normal(size=(B, Da)))
    n_pi = 15  # policy rows (label 0) then expert rows (label 1), weights 1/B_pi and 1/B_ex
    values = {clf.obsfeat_B_Df: stdz_data(rng, Do, B), clf.a_B_Da: a,
              clf.t_B: rng.integers(0, 100, size=B).astype(np.float64),
              clf.labels_B: np.r_[np.zeros(n_pi), np.ones(B - n_pi)],
              clf.weights_B: np.r_[np.full(n_pi, 1. / n_pi), np.full(B - n_pi, 1. / (B - n_pi))]}
    return Case(kind, clf, values, state_vars=clf.adam_state_vars())


@pytest.fixture(scope="module")
def cases():
    nn.seed_initializers(0)
    rng = np.random.default_rng(1234)
    out = {k: make_policy_case(k, rng) for k in ("gaussian", "gibbs")}
    out["valuefunc"] = make_valuefunc_case(rng)
    out.update({k: make_classifier_case(k, rng) for k in ("clf_continuous", "clf_discrete")})
    yield out
    # measured differences, for choosing TOL (visible with pytest -s)
    for key in sorted(MEASURED):
        print("max |diff|/max|ref|", *key, f"{MEASURED[key]:.2e}")


def graph_params():
    out = []
    for b in OTHER_BACKENDS:
        for kind in KINDS:
            for g in GRAPHS[kind]:
                out.append(pytest.param(b, kind, g, id=f"{b}-{kind}-{g}"))
    return out


# ------------------------------------------------------------------------ graphs match C

def test_every_lazy_graph_is_covered(cases):
    """The lists above name every compiled graph of each model (a new graph must be added)."""
    for kind, case in cases.items():
        found = set(lazy_graphs(case.model))
        assert found == set(GRAPHS[kind]), (
            f"{kind}: graphs not covered by this file {sorted(found - set(GRAPHS[kind]))}, "
            f"listed but gone {sorted(set(GRAPHS[kind]) - found)}: update GRAPHS")


@pytest.mark.slow
@pytest.mark.parametrize("backend_name,kind,graph", graph_params())
def test_graph_matches_c(backend_name, kind, graph, cases):
    require_backend(backend_name)
    case = cases[kind]
    ref = case.result(graph, "c")
    out = case.result(graph, backend_name)
    assert len(out) == len(ref)
    for i, (o, r) in enumerate(zip(out, ref)):
        assert_close(o, r, TOL[tol_kind(graph)], f"{backend_name} {kind}.{graph} output {i}",
                     record=(backend_name, kind, graph))


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", OTHER_BACKENDS)
@pytest.mark.parametrize("kind", ["gaussian", "gibbs", "valuefunc"])
def test_hvp_equals_gnvp_at_x0(backend_name, kind, cases):
    """At new = old (where TRPO evaluates them) the double-gradient HVP and the Gauss-Newton
    product are the same matrix-vector product, in every backend (the functions compiled for
    test_graph_matches_c are reused)."""
    require_backend(backend_name)
    case = cases[kind]
    res = {}
    for g in ("compute_hvp", "compute_gnvp", "compute_gnvp_from_activations"):
        res[g] = case.result(g, backend_name, "x0")[0]
        assert_close(res[g], case.result(g, "c", "x0")[0], TOL["second_order"],
                     f"{backend_name} {kind}.{g} at x0")
    assert np.abs(res["compute_hvp"]).max() > 1e-3  # a non-trivial product
    # HVP = J^T H J v + sum_k (dL/draw_k) d2raw_k v; the second term vanishes only up to
    # rounding at x0 (dL/draw ~ 1e-16), so the two products agree to ~1e-14 of their size.
    assert_close(res["compute_gnvp"], res["compute_hvp"], TOL["second_order"],
                 f"{backend_name} {kind}: GNVP vs HVP at x0")
    assert_close(res["compute_gnvp_from_activations"], res["compute_gnvp"],
                 dict(rtol=0., atol=1e-13), f"{backend_name} {kind}: cut GNVP vs GNVP")


@contextlib.contextmanager
def active_backend(name):
    before = backend.get_backend()
    backend.set_backend(name)
    try:
        yield
    finally:
        backend.set_backend(before)


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", OTHER_BACKENDS)
@pytest.mark.parametrize("kind", ["gaussian", "gibbs"])
def test_bclone_adam_step_matches_c(backend_name, kind, cases):
    """Policy.bclone_step_function (Adam via shared-variable updates): two steps from the same
    parameters and fresh Adam state give the same losses, parameters and moments as C."""
    require_backend(backend_name)
    case = cases[kind]
    pol, lr = case.model, 0.01
    obs, a = case.data["random"][pol.obsfeat_B_Df], case.data["random"][pol.a_B_Da]

    def two_steps(name):
        pol.__dict__.pop(("_bclone_step", lr), None)  # compile afresh (fresh Adam state)
        with active_backend(name):
            step = pol.bclone_step_function(lr)
        case.restore()
        try:
            losses = [step(obs, a), step(obs, a)]
            state = pol.bclone_adam_state_vars()
            assert len(state) == 1 + 2 * len(pol.param_vars)
            assert float(state[0].get_value()) == 2.  # the step counter t
            return losses, [p.get_value().copy() for p in pol.param_vars + state]
        finally:
            case.restore()
            pol.__dict__.pop(("_bclone_step", lr), None)

    ref_losses, ref_vals = two_steps("c")
    losses, vals = two_steps(backend_name)
    assert ref_losses[1] < ref_losses[0]  # the steps did something
    assert_close(losses, ref_losses, TOL["forward"], f"{backend_name} {kind} bclone losses")
    initial = dict(zip(case.shared_vars(), case.snapshot))
    for p, v in zip(pol.param_vars, ref_vals):  # every parameter moved
        assert np.any(v != initial[p]), p.name
    for i, (v, r) in enumerate(zip(vals, ref_vals)):
        assert_close(v, r, TOL["adam"], f"{backend_name} {kind} bclone shared var {i}",
                     record=(backend_name, kind, "bclone_step"))


@pytest.mark.parametrize("backend_name", ["c", "numba", "jax"])
def test_compiled_outputs_are_numpy(backend_name):
    """The library's numeric code is NumPy: every backend hands back NumPy arrays (0-d outputs
    as Python floats)."""
    import pytensor.tensor as pt

    require_backend(backend_name)
    x = pt.vector("x")
    f = thutil.function([x], [x * 2., x > 0, x.sum()], backend_name=backend_name)
    data = np.linspace(-1., 1., 1021) + 1e-3
    out = f(data)
    assert isinstance(out[2], float)
    for o in out[:2]:
        assert type(o) is np.ndarray, type(o)
    # what TransitionClassifier.fit does with its scores
    assert np.mean(out[0] < 0) == np.mean(data < 0) == 510 / 1021


# ------------------------------------------------------------------------ backend selection

def test_sampling_backend_follows_active_backend():
    """Forked sampler graphs use C under JAX (its runtime does not survive fork), else the
    active backend."""
    before = backend.get_backend()
    try:
        backend.set_backend("c")
        assert backend.sampling_backend() == "c"
        for name in OTHER_BACKENDS:
            try:
                backend.check_backend_available(name)
            except RuntimeError:
                continue
            backend.set_backend(name)
            assert backend.get_backend() == name
            assert backend.sampling_backend() == ("c" if name == "jax" else name)
    finally:
        backend.set_backend(before)
    assert backend.get_backend() == before


def test_sampling_function_compiles_with_c_under_jax():
    """Under --backend jax a policy's per-step forward pass (a sampling_function) is compiled by
    C and its learning graphs (lazy_function) by JAX."""
    require_backend("jax")
    nn.seed_initializers(0)
    pol = rl.GibbsPolicy(json.dumps([{"type": "fc", "n": 4}, {"type": "nonlin", "func": "tanh"}]),
                         ContinuousSpace(2), FiniteSpace(2))
    obs = np.array([[0.1, -0.2], [0.3, 0.4]])
    with active_backend("jax"):
        sample_fn, learn_fn = pol._compute_actiondist_params, pol._compute_action_logprobs
        assert backend.compile_mode().linker.__class__.__name__ == "JAXLinker"
    assert type(sample_fn.fn.maker.linker).__name__ == "VMLinker"
    assert type(learn_fn.fn.maker.linker).__name__ == "JAXLinker"
    np.testing.assert_allclose(learn_fn(obs, np.array([[0], [1]])),
                               select_rows(sample_fn(obs), [0, 1]), rtol=1e-12)


def select_rows(x, idx):
    return x[np.arange(len(idx)), idx]


def run_python(code, env_extra=None, timeout=180):
    env = dict(os.environ)
    env.pop(backend.BACKEND_ENV_VAR, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def test_environment_variable_selects_backend():
    require_backend("numba")
    res = run_python("""
        from policyopt import backend
        print(backend.get_backend(), type(backend.compile_mode().linker).__name__)
        """, {backend.BACKEND_ENV_VAR: "numba"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-2:] == ["numba", "NumbaLinker"]


def test_environment_variable_rejects_unknown_backend():
    res = run_python("""
        from policyopt import backend
        try:
            backend.get_backend()
        except ValueError as e:
            print("ValueError:", e)
        """, {backend.BACKEND_ENV_VAR: "bogus"})
    assert res.returncode == 0, res.stderr
    msg = res.stdout.strip().splitlines()[-1]
    assert msg.startswith("ValueError:") and "bogus" in msg, msg
    assert all(name in msg for name in backend.BACKENDS), msg


def script_command(name, *args, env_extra=None, prelude=""):
    """argv and environment that run scripts/<name>.py (after `prelude`, e.g. hiding a
    package), without any $POLICYOPT_BACKEND of the calling environment."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(backend.BACKEND_ENV_VAR, None)
    env.update(env_extra or {})
    path = os.path.join(SCRIPTS, name + ".py")
    code = "\n".join(["import runpy, sys", prelude, f"sys.argv = {[path, *map(str, args)]!r}",
                      f"runpy.run_path({path!r}, run_name='__main__')"])
    return [sys.executable, "-c", code], env


def run_script(name, *args, env_extra=None, timeout=300, prelude=""):
    cmd, env = script_command(name, *args, env_extra=env_extra, prelude=prelude)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                          env=env)


def test_script_rejects_unknown_backend(tmp_path):
    res = run_script("run_rl_mj", "--env_name", "CartPole-v1", "--backend", "bogus")
    assert res.returncode == 2
    assert "--backend: invalid choice: 'bogus'" in res.stderr, res.stderr
    # the environment variable is checked as well (one line, exit 2, the allowed names)
    res = run_script("run_rl_mj", "--env_name", "CartPole-v1", "--max_iter", 1,
                     env_extra={backend.BACKEND_ENV_VAR: "bogus"})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == \
        "error: unknown backend 'bogus'; choose one of c, numba, jax", res.stderr


@pytest.mark.parametrize("name,fix", [("numba", "pip install numba"), ("jax", "pip install jax")])
def test_missing_backend_package_is_reported_at_compile_time(name, fix):
    """With the package not importable (simulated: sys.modules[name] = None) selecting or
    compiling for the backend raises RuntimeError naming the fix, before any graph runs."""
    res = run_python(f"""
        import sys
        sys.modules[{name!r}] = None
        import pytensor.tensor as pt
        from policyopt import backend, thutil
        x = pt.vector("x")
        for what, call in [("check", lambda: backend.check_backend_available({name!r})),
                           ("set", lambda: backend.set_backend({name!r})),
                           ("mode", lambda: backend.compile_mode({name!r})),
                           ("function", lambda: thutil.function([x], x + 1,
                                                                backend_name={name!r}))]:
            try:
                call()
                print(what, "no error")
            except RuntimeError as e:
                print(what, "RuntimeError:", e)
        print("active", backend.get_backend())
        """)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 5, res.stdout
    for line in lines[:4]:
        assert "RuntimeError:" in line and fix in line, line
    assert lines[4] == "active c"  # a failed set_backend leaves the backend alone
    # the scripts turn it into one line on stderr and exit status 2
    res = run_script("run_rl_mj", "--env_name", "CartPole-v1", "--max_iter", 1,
                     "--backend", name, prelude=f"sys.modules[{name!r}] = None")
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and fix in last, res.stderr


def test_compile_mode_rejects_unknown_backend():
    for bad in ("bogus", "C"):
        with pytest.raises(ValueError, match="c, numba, jax"):
            backend.compile_mode(bad)
        with pytest.raises(ValueError, match="c, numba, jax"):
            thutil.function([], [], backend_name=bad)


# ------------------------------------------------------------------ end-to-end runs match

# Timing columns (tsamp, tadv, tstep, treward, tvf, ttotal) start with "t"; these do not.
NOT_TIMING = {"trueret", "tbase_r2"}


def is_timing(column):
    return column.startswith("t") and column not in NOT_TIMING


def read_log(path):
    import tables

    with tables.open_file(str(path), "r") as f:
        return f.root.log.read()


def assert_logs_match(log, ref, what, rtol):
    names = list(ref.dtype.names)
    assert list(log.dtype.names) == names, what
    assert len(log) == len(ref) > 0, what
    compared = [n for n in names if not is_timing(n)]
    assert "iter" in compared and len(compared) >= 10, compared
    for n in compared:
        np.testing.assert_allclose(log[n], ref[n], rtol=rtol, atol=1e-12,
                                   err_msg=f"{what}: column {n!r}")
    rel = max(float(np.max(np.abs(log[n] - ref[n]) / np.maximum(np.abs(ref[n]), 1e-300)))
              for n in compared)
    print(f"{what}: {len(compared)} columns x {len(ref)} rows, max relative difference "
          f"{rel:.2e}")  # visible with pytest -s


def run_with_backends(script, args, tmp_path, timeout=900):
    """The run under C and every other installed backend, all at once (most of a run is
    single-threaded graph compilation, so on a shared machine they overlap well);
    {backend: log table}."""
    procs = {}
    try:
        for name in ("c",) + OTHER_BACKENDS:
            try:
                backend.check_backend_available(name)
            except RuntimeError:
                continue
            log = tmp_path / f"{script}_{name}.h5"
            cmd, env = script_command(script, *args, "--log", log, "--backend", name)
            out = open(tmp_path / f"{script}_{name}.out", "w+")
            procs[name] = (subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=REPO_ROOT, env=env), out, log)
        logs = {}
        for name, (proc, out, log) in procs.items():
            rc = proc.wait(timeout=timeout)
            out.seek(0)
            assert rc == 0, f"{script} --backend {name} exited {rc}:\n{out.read()[-3000:]}"
            logs[name] = read_log(log)
        return logs
    finally:
        for proc, out, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()


# The runs sample the same trajectories (same seed; the forked samplers' graphs agree to the
# last bit or two, and a categorical draw lands within 1e-15 of a threshold with probability
# ~0), so the logs agree to rounding, identical in every printed digit. Measured largest
# relative differences (non-timing columns, both iterations): TRPO 8e-13 (numba) / 3e-12
# (jax); GAIL 5.7e-9 (numba) / 8.9e-9 (jax), in dx, kl, vf_kl and vf_gnorm: the 10-step
# conjugate-gradient solves amplify the graphs' last-bit differences by the condition number
# of the damped Fisher matrix, larger in GAIL's first iteration, whose discriminator rewards
# are all equal. rtol=1e-6 keeps a margin of 25 over that and 100 over rounding, while a real
# backend difference changes the sampled trajectories and every statistic by >= 1e-3.
LOG_RTOL = 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("env_name", ["CartPole-v1", "Pendulum-v1"])  # Gibbs and Gaussian
def test_short_trpo_run_logs_match_across_backends(tmp_path, env_name):
    logs = run_with_backends("run_rl_mj", ["--env_name", env_name, "--tiny_policy",
                                           "--min_total_sa", 1000, "--max_iter", 2,
                                           "--num_workers", 1, "--seed", 0], tmp_path)
    if len(logs) < 2:
        pytest.skip("no backend besides C is installed")
    for name, log in logs.items():
        assert_logs_match(log, logs["c"], f"TRPO log --backend {name} vs c", LOG_RTOL)


@pytest.mark.slow
def test_short_gail_run_logs_match_across_backends(tmp_path, cartpole_expert_data):
    logs = run_with_backends("imitate_mj", ["--mode", "ga", "--data", cartpole_expert_data,
                                            "--max_iter", 2, "--min_total_sa", 1000,
                                            "--num_workers", 1, "--tiny_policy", "--seed", 0],
                             tmp_path)
    if len(logs) < 2:
        pytest.skip("no backend besides C is installed")
    for name, log in logs.items():
        assert_logs_match(log, logs["c"], f"GAIL log --backend {name} vs c", LOG_RTOL)
