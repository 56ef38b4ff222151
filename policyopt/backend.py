"""How the project's symbolic graphs are compiled: the backend and the BLAS it links.

PyTensor keeps the graph and swaps the compiler. The project compiles every graph through
`compile_mode()`, which honours one setting:

* ``c`` (default): PyTensor's C backend (the CVM linker), the route the original Theano code
  took. PyTensor 3 itself defaults to Numba, so the project asks for C explicitly.
* ``numba``: PyTensor's Numba backend.
* ``jax``: PyTensor's JAX backend (runs on CUDA when JAX sees an NVIDIA GPU).

The setting comes from `set_backend()` (the scripts' ``--backend`` flag) or the
``POLICYOPT_BACKEND`` environment variable.

The C backend is only fast when PyTensor links a real BLAS. A pip-installed PyTensor finds none
on most Linux machines (it looks for a ``libcblas`` or a gfortran runtime that Debian's OpenBLAS
does not ship), and its graphs then run several times slower than NumPy. `configure_blas()` runs
at import, before anything is compiled, and links in this order of preference:

1. whatever the user configured (``PYTENSOR_FLAGS=blas__ldflags=...`` or ``~/.pytensorrc``);
2. a system OpenBLAS or MKL (Debian/Ubuntu: ``libopenblas-dev``; conda/pip MKL in the prefix);
3. the OpenBLAS that SciPy's wheels bundle (LP64, symbols prefixed ``scipy_``), reached by
   renaming the Fortran BLAS symbols PyTensor's C code calls; this needs no system package.

Each candidate is proven by compiling and running a small dgemm program; the verdict is cached
in PyTensor's compile directory so later imports cost a file read. If nothing links, one clear
warning says how to fix it.
"""
import ctypes
import glob
import hashlib
import json
import os
import re
import sys
import textwrap
import warnings

import pytensor

BACKENDS = ("c", "numba", "jax")
BACKEND_ENV_VAR = "POLICYOPT_BACKEND"

_DGEMM_TEST = textwrap.dedent(
    """\
    extern "C" void dgemm_(char*, char*, const int*, const int*, const int*, const double*,
                           const double*, const int*, const double*, const int*,
                           const double*, double*, const int*);
    int main() {
        int n = 2; double one = 1.0, zero = 0.0; char t = 'N';
        double a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[4] = {0, 0, 0, 0};
        dgemm_(&t, &t, &n, &n, &n, &one, a, &n, b, &n, &zero, c, &n);
        /* column-major: [[1,3],[2,4]] @ [[5,7],[6,8]] = [[23,31],[34,46]] */
        return (c[0] == 23 && c[1] == 34 && c[2] == 31 && c[3] == 46) ? 0 : 1;
    }
    """
)


class BlasStatus:
    """What `configure_blas` decided: `ldflags` linked, `source` of the decision."""

    ldflags = ""
    source = "not configured"


blas_status = BlasStatus()


def _user_set_ldflags():
    """True when the user configured blas__ldflags (flags, rc file, or already assigned)."""
    param = pytensor.config._config_var_dict["blas__ldflags"]
    if hasattr(param, "val"):
        return True
    try:
        pytensor.config.fetch_val_for_key("blas__ldflags")
        return True
    except KeyError:
        return False


def _library_dirs():
    dirs = [os.path.join(sys.prefix, "lib"), "/usr/local/lib", "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
    dirs += [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    seen = []
    for d in dirs:
        if os.path.isdir(d) and d not in seen:
            seen.append(d)
    return seen


def _system_candidates():
    """Link flags for system BLAS libraries that have a linkable (unversioned) .so."""
    out = []
    for d in _library_dirs():
        for lib in ("openblas", "mkl_rt", "blis"):
            if os.path.exists(os.path.join(d, f"lib{lib}.so")):
                out.append((f"system {lib} in {d}", [f"-L{d}", f"-l{lib}", f"-Wl,-rpath,{d}"],
                            os.path.join(d, f"lib{lib}.so")))
    return out


def _scipy_openblas_candidate():
    """SciPy's bundled OpenBLAS, with the Fortran BLAS names PyTensor uses mapped to scipy_*."""
    try:
        import scipy
    except ImportError:
        return []
    libdir = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
    libs = sorted(glob.glob(os.path.join(libdir, "libscipy_openblas*.so")))
    libs = [p for p in libs if "64_" not in os.path.basename(p)]  # ILP64 builds need int64
    if not libs:
        return []
    lib = libs[0]
    try:
        handle = ctypes.CDLL(lib)
    except OSError:
        return []
    from pytensor.tensor.blas_headers import blas_header_text

    # With the flag empty the header text is PyTensor's NumPy fallback (and it logs so).
    with pytensor.config.change_flags(blas__ldflags="-lblas"):
        header = blas_header_text()
    names = sorted(set(re.findall(r"\b([sdcz][a-z0-9]+_)\s*\(", header)))
    renames = [f"-D{n}=scipy_{n}" for n in names if hasattr(handle, f"scipy_{n}")]
    # -l<name> (not -l:<file>) so that PyTensor's flag parser recognises the library.
    libname = os.path.basename(lib)[len("lib"):-len(".so")]
    flags = [f"-L{libdir}", f"-l{libname}", f"-Wl,-rpath,{libdir}", *renames]
    return [("SciPy's bundled OpenBLAS", flags, lib)]


def _try_link(flags):
    from pytensor.link.c.cmodule import GCC_compiler

    code = _DGEMM_TEST
    # The -D renames apply to the test program exactly as they will to PyTensor's C code.
    res = GCC_compiler.try_compile_tmp(code, tmp_prefix="policyopt_blas_", flags=list(flags),
                                       try_run=True, output=True)
    return bool(res and res[0] and res[1])


def _cache_path():
    return os.path.join(pytensor.config.compiledir, "policyopt_blas.json")


def _cache_key(candidates):
    parts = [pytensor.__version__, pytensor.config.cxx, sys.prefix]
    for _, flags, path in candidates:
        try:
            parts.append(f"{path}:{os.stat(path).st_mtime_ns}")
        except OSError:
            parts.append(path)
        parts.append(" ".join(flags))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def configure_blas(force=False, use_cache=True):
    """Link PyTensor's C backend to a real BLAS (see the module docstring). Idempotent.

    Returns the `BlasStatus`. Sets ``pytensor.config.blas__ldflags``.
    """
    if blas_status.source != "not configured" and not force:
        return blas_status
    if _user_set_ldflags() and not force:
        blas_status.ldflags = pytensor.config.blas__ldflags
        blas_status.source = "user configuration"
        return blas_status
    if not pytensor.config.cxx:
        blas_status.ldflags, blas_status.source = "", "no C++ compiler"
        pytensor.config.blas__ldflags = ""
        return blas_status

    # Assign before compiling anything: reading the unset flag would run PyTensor's own
    # (slow, warning) detection.
    pytensor.config.blas__ldflags = ""
    candidates = _system_candidates() + _scipy_openblas_candidate()
    key = _cache_key(candidates)
    cache = _cache_path()
    if use_cache:
        try:
            with open(cache) as f:
                cached = json.load(f)
            if cached.get("key") == key:
                _apply(cached["ldflags"], cached["source"])
                return blas_status
        except (OSError, ValueError, KeyError):
            pass

    chosen = ("", "none found")
    for name, flags, _ in candidates:
        if _try_link(flags):
            chosen = (" ".join(flags), name)
            break
    _apply(*chosen)
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"key": key, "ldflags": chosen[0], "source": chosen[1]}, f)
        os.replace(tmp, cache)
    except OSError:
        pass
    return blas_status


_warned_no_blas = False


def _apply(ldflags, source):
    global _warned_no_blas
    pytensor.config.blas__ldflags = ldflags
    blas_status.ldflags, blas_status.source = ldflags, source
    if not ldflags and not _warned_no_blas:
        _warned_no_blas = True
        warnings.warn(
            "policyopt: no BLAS library could be linked; compiled graphs will run several times "
            "slower than NumPy. Fix: `apt-get install libopenblas-dev` (Debian/Ubuntu; "
            "`dnf install openblas-devel` on Fedora), or `pip install scipy` from a wheel, or set "
            "PYTENSOR_FLAGS=blas__ldflags='-L/path -lopenblas'.",
            RuntimeWarning, stacklevel=3)


def limit_numpy_blas_threads():
    """Run the OpenBLAS copies inside NumPy's and SciPy's wheels single-threaded.

    A process here holds up to three OpenBLAS thread pools (NumPy's, SciPy's, and the one
    PyTensor links), and each pool's idle threads spin for a while after every call. On a
    2-core machine the pools then starve each other: a conjugate-gradient step's 10k-element
    dot products took milliseconds instead of microseconds. NumPy and SciPy only see small
    vectors on the hot paths (CG, line search, bookkeeping); the big matrix products run inside
    the compiled graphs, whose BLAS keeps its threads. Returns {library path: threads}.
    """
    try:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS so that it can be limited)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return {}
    pytensor_lib = blas_status.source == "SciPy's bundled OpenBLAS"
    out = {}
    for lib in ThreadpoolController().lib_controllers:
        path = lib.filepath or ""
        if "numpy.libs" in path or ("scipy.libs" in path and not pytensor_lib):
            lib.set_num_threads(1)
        out[path] = lib.num_threads
    return out


# --------------------------------------------------------------------------- compile backend

_backend = None


def get_backend():
    """The active backend name: set_backend(), else $POLICYOPT_BACKEND, else 'c'."""
    global _backend
    if _backend is None:
        name = os.environ.get(BACKEND_ENV_VAR, "c").strip().lower() or "c"
        if name not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV_VAR}={name!r} is not one of {', '.join(BACKENDS)}")
        _backend = name
    return _backend


def sampling_backend():
    """The backend for graphs evaluated inside forked sampler processes (the policy's
    per-step forward pass). JAX's runtime threads do not survive fork() (a forked child that
    calls into JAX deadlocks), and a GPU round trip per environment step would cost more than
    the step, so under 'jax' these few small graphs use the C backend; otherwise the active
    backend."""
    name = get_backend()
    return "c" if name == "jax" else name


def set_backend(name):
    """Select the backend for every graph compiled from now on ('c', 'numba' or 'jax')."""
    global _backend
    name = resolve_backend_name(name.strip().lower())
    check_backend_available(name)
    _backend = name
    _MODES.clear()


def check_backend_available(name):
    """Raise RuntimeError with the fix when the backend's compiler/package is missing."""
    if name == "c" and not pytensor.config.cxx:
        raise RuntimeError("the C backend needs a C++ compiler (g++): install it "
                           "(apt-get install g++) or choose --backend numba")
    if name == "numba":
        try:
            import numba  # noqa: F401
        except ImportError:
            raise RuntimeError("the numba backend needs the numba package: pip install numba")
    if name == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise RuntimeError("the jax backend needs JAX: pip install jax (or jax[cuda12] "
                               "for NVIDIA GPUs)")


_MODES = {}
_LINKERS = {"c": "cvm", "numba": "numba", "jax": "jax"}


def resolve_backend_name(backend=None):
    """`backend`, checked against BACKENDS (ValueError naming the choices), or the active one."""
    if backend is None:
        return get_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def compile_mode(backend=None):
    """The PyTensor Mode that compiles graphs for `backend` (default: the active one)."""
    name = resolve_backend_name(backend)
    if name not in _MODES:
        from pytensor.compile.mode import Mode

        check_backend_available(name)
        mode = Mode(linker=_LINKERS[name], optimizer="fast_run")
        if name == "c":
            from policyopt import cops

            mode = mode.including(cops.FAST_TANH_TAG)
        _MODES[name] = mode
    return _MODES[name]
