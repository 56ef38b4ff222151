"""The compile backend: C VM linker, a real BLAS behind the matrix products (policyopt.blas),
the FastTanh kernel."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import policyopt
from policyopt import backend, blas, cops, thutil

BLAS_OPS = {"Dot22", "Gemm", "Dot22Scalar", "CGemv", "Gemv"}

requires_c = pytest.mark.skipif(
    os.environ.get(backend.BACKEND_ENV_VAR, "c").strip().lower() not in ("", "c"),
    reason="POLICYOPT_BACKEND selects a non-C backend")


def _module_file(node):
    """Path of the compiled shared library PyTensor's module cache holds for one node."""
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.c.basic import CLinker
    from pytensor.link.c.cmodule import get_module_cache

    cl = CLinker().accept(FunctionGraph(node.inputs, node.outputs))
    key = cl.cmodule_key()
    return get_module_cache(pytensor.config.compiledir).entry_from_key[key]


def _run_python(code, compiledir, timeout=240):
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = f"compiledir={compiledir}"
    env.pop(backend.BACKEND_ENV_VAR, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@requires_c
def test_compiled_graphs_use_c_vm_and_blas(rng):
    assert backend.get_backend() == "c"
    A, B = pt.matrix("A"), pt.matrix("B")
    v = pt.vector("v")
    f = thutil.function([A, B, v], [pt.dot(A, B), pt.dot(A, v)])
    # the compile linked the BLAS (policyopt.blas.setup, at the first compile)
    assert pytensor.config.blas__ldflags.strip() != ""
    assert blas.blas_status.source not in ("none found", "not configured", "no C++ compiler")
    assert blas.blas_status.ldflags == pytensor.config.blas__ldflags
    X, Y, z = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=3)
    out_mm, out_mv = f(X, Y, z)
    np.testing.assert_allclose(out_mm, X @ Y, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(out_mv, X @ z, rtol=1e-13, atol=1e-14)

    nodes = f.fn.maker.fgraph.toposort()
    op_names = {type(n.op).__name__ for n in nodes}
    assert op_names & BLAS_OPS, op_names
    assert "CGemv" in op_names or "Gemv" in op_names, op_names

    linker = f.fn.maker.linker
    assert "VM" in type(linker).__name__
    assert getattr(linker, "use_cloop", False)  # the C loop (CVM), not the Python VM
    assert type(f.fn.vm).__name__ == "CVM"
    assert len(f.fn.vm.thunks) == len(nodes)
    for node, thunk in zip(f.fn.vm.nodes, f.fn.vm.thunks):
        if type(node.op).__name__ in BLAS_OPS:
            assert hasattr(thunk, "cthunk"), f"{node.op} runs a Python thunk"

    # the shared library of the matrix-product op is linked to a BLAS
    if shutil.which("ldd") is None:
        pytest.skip("ldd not available")
    blas_node = next(n for n in nodes if type(n.op).__name__ in {"Dot22", "Gemm", "Dot22Scalar"})
    so = _module_file(blas_node)
    assert os.path.exists(so)
    ldd = subprocess.run(["ldd", so], capture_output=True, text=True).stdout
    blas_lines = [l for l in ldd.splitlines() if any(k in l for k in ("blas", "mkl", "blis"))]
    assert blas_lines, ldd
    assert all("not found" not in l for l in blas_lines), ldd


@requires_c
def test_cold_cache_import_links_blas(tmp_path):
    res = _run_python("""
        import json
        import numpy as np
        import pytensor, pytensor.tensor as pt
        import policyopt
        from policyopt import blas, thutil
        ok = False
        A = pt.matrix("A")
        f = thutil.function([A], pt.dot(A, A.T))
        x = np.arange(12.).reshape(3, 4)
        ok = bool(np.allclose(f(x), x @ x.T))
        ops = [type(n.op).__name__ for n in f.fn.maker.fgraph.toposort()]
        print(json.dumps({"ldflags": pytensor.config.blas__ldflags,
                          "source": blas.blas_status.source, "ok": ok, "ops": ops}))
    """, tmp_path / "compiledir")
    assert res.returncode == 0, res.stderr
    info = _last_json(res.stdout)
    assert info["ldflags"].strip(), info
    assert info["source"] != "none found"
    assert info["ok"]
    assert set(info["ops"]) & BLAS_OPS, info["ops"]
    assert "could not link to a BLAS" not in res.stderr, res.stderr
    assert "NumPy C-API based implementation for BLAS" not in res.stderr, res.stderr
    assert "no BLAS library could be linked" not in res.stderr, res.stderr
    # the verdict was cached in the fresh compile directory
    assert (tmp_path / "compiledir" / "policyopt_blas.json").exists()


def test_blas_candidate_order_prefers_newer_bundled_openblas():
    sys_ob = ("system openblas in /usr/lib", ["-lopenblas"], "/usr/lib/libopenblas.so")
    sys_mkl = ("system mkl_rt in /opt", ["-lmkl_rt"], "/opt/libmkl_rt.so")
    bundled = ("SciPy's bundled OpenBLAS", ["-lscipy_openblas"], "/x/libscipy_openblas.so")
    versions = {sys_ob[2]: (0, 3, 21), bundled[2]: (0, 3, 30)}
    order = blas._order_candidates
    assert order([sys_ob], [bundled], versions.get) == [bundled, sys_ob]
    versions[sys_ob[2]] = (0, 3, 30)  # same release: the system library stays first
    assert order([sys_ob], [bundled], versions.get) == [sys_ob, bundled]
    versions[sys_ob[2]] = None  # unknown system version: keep the documented order
    assert order([sys_ob], [bundled], versions.get) == [sys_ob, bundled]
    versions[sys_ob[2]] = (0, 3, 21)
    assert order([sys_mkl, sys_ob], [bundled], versions.get) == [sys_mkl, sys_ob, bundled]
    assert order([sys_ob], [], versions.get) == [sys_ob]


def test_openblas_version_of_scipys_bundled_library():
    cands = blas._scipy_openblas_candidate()
    if not cands:
        pytest.skip("SciPy bundles no LP64 OpenBLAS")
    v = blas._openblas_version(cands[0][2])
    assert v is not None and len(v) == 3 and v >= (0, 3, 0), v
    assert blas._openblas_version(__file__) is None  # not a library at all


@requires_c
def test_scipy_bundled_openblas_route(tmp_path):
    res = _run_python("""
        import json, shutil, subprocess
        import numpy as np
        import pytensor, pytensor.tensor as pt
        from policyopt import blas, thutil
        cands = blas._scipy_openblas_candidate()
        if not cands:
            print(json.dumps({"skip": "SciPy bundles no LP64 OpenBLAS"}))
            raise SystemExit(0)
        name, flags, lib = cands[0]
        if not blas._try_link(flags):
            print(json.dumps({"linked": False, "lib": lib}))
            raise SystemExit(0)
        pytensor.config.blas__ldflags = " ".join(flags)
        A, B = pt.matrices("A", "B")
        v = pt.vector("v")
        f = thutil.function([A, B, v], [pt.dot(A, B), pt.dot(A, v)])
        rng = np.random.default_rng(1)
        X, Y, z = rng.normal(size=(5, 7)), rng.normal(size=(7, 3)), rng.normal(size=7)
        mm, mv = f(X, Y, z)
        nodes = f.fn.maker.fgraph.toposort()
        ldd = ""
        if shutil.which("ldd"):
            from pytensor.graph.fg import FunctionGraph
            from pytensor.link.c.basic import CLinker
            from pytensor.link.c.cmodule import get_module_cache
            node = next(n for n in nodes if type(n.op).__name__ == "Dot22")
            key = CLinker().accept(FunctionGraph(node.inputs, node.outputs)).cmodule_key()
            so = get_module_cache(pytensor.config.compiledir).entry_from_key[key]
            ldd = subprocess.run(["ldd", so], capture_output=True, text=True).stdout
        print(json.dumps({
            "linked": True, "lib": lib,
            "mm_err": float(np.abs(mm - X @ Y).max()), "mv_err": float(np.abs(mv - X @ z).max()),
            "ops": [type(n.op).__name__ for n in nodes], "ldd": ldd}))
    """, tmp_path / "compiledir")
    assert res.returncode == 0, res.stderr
    info = _last_json(res.stdout)
    if "skip" in info:
        pytest.skip(info["skip"])
    assert info["linked"], f"the SciPy OpenBLAS candidate {info['lib']} failed the dgemm test"
    assert "Dot22" in info["ops"], info["ops"]
    assert info["mm_err"] < 1e-13 and info["mv_err"] < 1e-13, info
    if info["ldd"]:
        assert os.path.basename(info["lib"]) in info["ldd"], info["ldd"]
    assert "NumPy C-API based implementation for BLAS" not in res.stderr, res.stderr


@requires_c
def test_fast_tanh_rewrite_and_gradient(rng):
    x = pt.matrix("x")
    f = thutil.function([x], pt.tanh(x))
    ops = [n.op for n in f.fn.maker.fgraph.toposort()]
    assert any(isinstance(op, cops.FastTanh) for op in ops), ops
    assert not any(type(op).__name__ == "Elemwise" and "Tanh" in type(op.scalar_op).__name__
                   for op in ops), ops

    X = rng.normal(scale=3., size=(37, 11))
    X[0, :6] = [0., -0., 1e-12, -1e-12, 25., -25.]
    X[1, :4] = [710., -710., 19.0, -19.0]
    np.testing.assert_allclose(f(X), np.tanh(X), rtol=0, atol=1e-14)
    # non-contiguous inputs: a transposed view and a strided slice
    np.testing.assert_allclose(f(X.T), np.tanh(X.T), rtol=0, atol=1e-14)
    np.testing.assert_allclose(f(X[::2, ::3]), np.tanh(X[::2, ::3]), rtol=0, atol=1e-14)
    # repeated calls with a different shape reuse/reallocate the output correctly
    np.testing.assert_allclose(f(X[:3]), np.tanh(X[:3]), rtol=0, atol=1e-14)
    np.testing.assert_allclose(f(X), np.tanh(X), rtol=0, atol=1e-14)

    g = thutil.function([x], pytensor.grad(pt.tanh(x).sum(), x))
    np.testing.assert_allclose(g(X), 1. - np.tanh(X) ** 2, rtol=0, atol=1e-14)

    # float32 goes through the same kernel (tanhf)
    x32 = pt.fmatrix("x32")
    f32 = thutil.function([x32], pt.tanh(x32))
    assert any(isinstance(n.op, cops.FastTanh) for n in f32.fn.maker.fgraph.toposort())
    X32 = X.astype(np.float32)
    out32 = f32(X32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, np.tanh(X32.astype(np.float64)), rtol=0, atol=1e-6)


@requires_c
def test_fast_bias_tanh_folds_the_bias_add(rng):
    x, W = pt.matrix("x"), pt.matrix("W")
    b = pytensor.shared(rng.normal(size=(1, 7)), shape=(1, 7), name="b")
    h = pt.tanh(pt.dot(x, W) + b)
    loss = (h * np.arange(7.)).sum()
    f = thutil.function([x, W], [h] + pytensor.grad(loss, [W, b]))
    ops = [type(n.op).__name__ for n in f.fn.maker.fgraph.toposort()]
    assert "FastBiasTanh" in ops and "FastTanh" not in ops, ops
    X, WW = rng.normal(scale=2., size=(40, 5)), rng.normal(size=(5, 7))
    h_ref = np.tanh(X @ WW + b.get_value())
    dz = np.arange(7.) * (1. - h_ref ** 2)
    for Xin in (X, np.asfortranarray(X), X[::-1]):  # contiguous, Fortran order, negative stride
        hv, gW, gb = f(Xin, WW)
        href = np.tanh(Xin @ WW + b.get_value())
        np.testing.assert_allclose(hv, href, rtol=0, atol=1e-14)
    hv, gW, gb = f(X, WW)
    np.testing.assert_allclose(gW, X.T @ dz, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, dz.sum(0, keepdims=True), rtol=1e-12, atol=1e-12)
    # the same graph without the C kernels (Numba backend) agrees
    # x + b also read elsewhere: the add stays, and only the tanh is swapped
    s_ = pt.dot(x, W) + b
    g = thutil.function([x, W], [pt.tanh(s_), s_ * 2.])
    ops = [type(n.op).__name__ for n in g.fn.maker.fgraph.toposort()]
    assert "FastBiasTanh" not in ops and "FastTanh" in ops, ops
    t, s2 = g(X, WW)
    np.testing.assert_allclose(t, h_ref, rtol=0, atol=1e-14)
    # a full matrix (not a bias row) added: not folded
    y = pt.matrix("y")
    k = thutil.function([x, y], pt.tanh(x + y))
    assert "FastBiasTanh" not in [type(n.op).__name__ for n in k.fn.maker.fgraph.toposort()]
    Y = rng.normal(size=X.shape)
    np.testing.assert_allclose(k(X, Y), np.tanh(X + Y), rtol=0, atol=1e-14)
    pytest.importorskip("numba")
    f_ref = thutil.function([x, W], [h] + pytensor.grad(loss, [W, b]), backend_name="numba")
    for got, ref in zip(f(X, WW), f_ref(X, WW)):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)


_HEAP_PROBE = """
import json, os
import numpy as np
import policyopt.blas

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

took = policyopt.blas.reuse_freed_heap_memory()
before = rss()
a = np.ones(8 << 20)  # 64 MiB, every page touched
del a
kept = rss() - before
b = np.ones(8 << 20)  # the same size again
grew = rss() - before - kept
print(json.dumps({"took": took, "kept_mb": kept / 2 ** 20, "grew_mb": grew / 2 ** 20}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_freed_large_blocks_stay_for_reuse(setting):
    """With the default setting a freed 64 MiB array stays mapped and the next one reuses it;
    POLICYOPT_HEAP_REUSE=0 leaves glibc's defaults (the block goes back to the kernel)."""
    env = dict(os.environ, **{blas.HEAP_REUSE_ENV_VAR: setting})
    res = subprocess.run([sys.executable, "-c", _HEAP_PROBE], env=env, capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    out = _last_json(res.stdout)
    if setting == "1":
        assert out["took"] is True, out
        assert out["kept_mb"] > 48 and out["grew_mb"] < 8, out
    else:
        assert out["took"] is False and out["kept_mb"] < 16, out


def test_set_backend_rejects_unknown_name():
    before = backend.get_backend()
    with pytest.raises(ValueError):
        backend.set_backend("nope")
    assert backend.get_backend() == before


def test_backend_from_environment(monkeypatch):
    monkeypatch.setattr(backend, "_backend", None)
    monkeypatch.setenv(backend.BACKEND_ENV_VAR, " C ")
    assert backend.get_backend() == "c"
    monkeypatch.setattr(backend, "_backend", None)
    monkeypatch.setenv(backend.BACKEND_ENV_VAR, "bogus")
    with pytest.raises(ValueError):
        backend.get_backend()
    monkeypatch.setattr(backend, "_backend", None)
    monkeypatch.delenv(backend.BACKEND_ENV_VAR)
    assert backend.get_backend() == "c"


def test_package_import_configured_blas():
    # importing policyopt configured BLAS exactly once, before anything was compiled
    assert policyopt.blas.blas_status.source != "not configured"


def test_scipy_openblas_flags_raise_no_pytensor_library_warning(caplog):
    import logging

    from pytensor.tensor import blas as pt_blas

    cands = blas._scipy_openblas_candidate()
    if not cands:
        pytest.skip("SciPy bundles no LP64 OpenBLAS")
    flags = " ".join(cands[0][1])
    logger = logging.getLogger("pytensor.tensor.blas")
    handler = logging.Handler()
    records = []
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        # unwrap functools.cache: parse afresh, exactly as PyTensor does when compiling a Dot22
        pt_blas._ldflags.__wrapped__(ldflags_str=flags, libs=False, flags=False, libs_dir=True,
                                     include_dir=False)
    finally:
        logger.removeHandler(handler)
    msgs = [r.getMessage() for r in records]
    assert not any("did not find a dynamic library" in m for m in msgs), msgs


@requires_c
def test_fast_tanh_module_leaves_process_fp_mode_alone():
    x = pt.matrix("x")
    f = thutil.function([x], pt.tanh(x))
    assert any(isinstance(n.op, cops.FastTanh) for n in f.fn.maker.fgraph.toposort())
    f(np.zeros((1, 1)))
    # IEEE gradual underflow: 1e-300 * 1e-10 is the subnormal 1e-310, not 0
    assert np.float64(1e-300) * np.float64(1e-10) > 0.
    assert np.array([1e-310]) * 1.0 > 0.
