"""policyopt.cbuild: parallel module builds and the precompiled header, on empty compile caches
(each case runs in a subprocess with its own compile directory)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from policyopt import backend

requires_c = pytest.mark.skipif(
    os.environ.get(backend.BACKEND_ENV_VAR, "c").strip().lower() not in ("", "c"),
    reason="POLICYOPT_BACKEND selects a non-C backend")

# A graph of several distinct C modules (elementwise composites, a reduction, BLAS products);
# prints its outputs' bit patterns and the build counts as JSON.
GRAPH = """
import json, os
import numpy as np
import pytensor.tensor as pt
from policyopt import cbuild, thutil

x, W = pt.matrix("x"), pt.matrix("W")
h = pt.tanh(pt.dot(x, W) + 0.3)
outs = [pt.softplus(h).sum(axis=0), pt.exp(-h ** 2).mean(), pt.log1p(pt.abs(h)).max(),
        pt.dot(h.T, h)]
f = thutil.function([x, W], outs, name="test_graph")
rng = np.random.default_rng(0)
res = f(rng.normal(size=(50, 7)), rng.normal(size=(7, 5)))
bits = [np.asarray(r, dtype=np.float64).tobytes().hex() for r in res]
print(json.dumps({"bits": bits, "stats": {k: v for k, v in vars(cbuild.stats).items()},
                  "jobs": cbuild.compile_jobs()}))
"""


def _run(code, compiledir, jobs=None, timeout=300):
    env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={compiledir}")
    env.pop(backend.BACKEND_ENV_VAR, None)
    env.pop("POLICYOPT_COMPILE_JOBS", None)
    if jobs is not None:
        env["POLICYOPT_COMPILE_JOBS"] = str(jobs)
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


@requires_c
def test_parallel_builds_are_used_and_results_bit_identical(tmp_path):
    par, err = _run(GRAPH, tmp_path / "parallel", jobs=2)
    seq, _ = _run(GRAPH, tmp_path / "sequential", jobs=1)
    st = par["stats"]
    # every node module was built ahead, and PyTensor took each of them instead of compiling
    assert st["prebuilt"] >= 5
    assert st["reused"] == st["prebuilt"]
    assert st["pch"] is not None and os.path.exists(st["pch"] + ".gch")
    assert "compiling the graphs to C, once" in err and str(tmp_path / "parallel") in err
    # one job: PyTensor compiles everything itself
    assert seq["stats"]["prebuilt"] == 0 and seq["stats"]["reused"] == 0
    # the same libraries' code: identical bits
    assert par["bits"] == seq["bits"]


@requires_c
def test_warm_cache_builds_nothing_and_says_nothing(tmp_path):
    _run(GRAPH, tmp_path / "cache", jobs=2)
    warm, err = _run(GRAPH, tmp_path / "cache", jobs=2)
    assert warm["stats"]["prebuilt"] == 0 and warm["stats"]["compiled"] == 0
    assert "compiling the graphs to C" not in err


@requires_c
def test_a_forked_child_compiles_with_its_own_pool(tmp_path):
    code = """
    import json, os
    import numpy as np
    import pytensor.tensor as pt
    from policyopt import cbuild, thutil

    x = pt.vector("x")
    f = thutil.function([x], pt.exp(x) + 1.0)   # the parent's pool exists now
    pid = os.fork()
    if pid == 0:   # a child compiling a new graph must not wait on the parent's threads
        g = thutil.function([x], pt.cosh(x) * 3.0 - pt.sinh(x))
        ok = np.allclose(g(np.arange(3.)), np.cosh(np.arange(3.)) * 3 - np.sinh(np.arange(3.)))
        os._exit(0 if ok and cbuild.stats.reused > 0 else 3)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"child": os.waitstatus_to_exitcode(status)}))
    """
    out, _ = _run(code, tmp_path / "cache", jobs=2, timeout=240)
    assert out["child"] == 0


def test_compile_jobs_setting(monkeypatch):
    from policyopt import cbuild

    monkeypatch.setenv("POLICYOPT_COMPILE_JOBS", "3")
    assert cbuild.compile_jobs() == 3
    monkeypatch.setenv("POLICYOPT_COMPILE_JOBS", "0")
    assert cbuild.compile_jobs() == 1
    monkeypatch.setenv("POLICYOPT_COMPILE_JOBS", "many")
    with pytest.raises(ValueError, match="POLICYOPT_COMPILE_JOBS"):
        cbuild.compile_jobs()
    monkeypatch.delenv("POLICYOPT_COMPILE_JOBS")
    assert cbuild.compile_jobs() == len(os.sched_getaffinity(0))
