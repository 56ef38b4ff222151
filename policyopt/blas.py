"""Linking PyTensor's C backend to a real BLAS, and the process settings around it.

The C backend is only fast when PyTensor links a real BLAS. A pip-installed PyTensor finds none
on most Linux machines (it looks for a ``libcblas`` or a gfortran runtime that Debian's OpenBLAS
does not ship), and its graphs then run several times slower than NumPy. `configure_blas()` runs
before the first graph is compiled (`setup()`, called by `backend.compile_mode()`), and links
in this order of preference:

1. whatever the user configured (``PYTENSOR_FLAGS=blas__ldflags=...`` or ``~/.pytensorrc``);
2. a system OpenBLAS or MKL (Debian/Ubuntu: ``libopenblas-dev``; conda/pip MKL in the prefix);
3. the OpenBLAS that SciPy's wheels bundle (LP64, symbols prefixed ``scipy_``), reached by
   renaming the Fortran BLAS symbols PyTensor's C code calls; this needs no system package.
   It moves ahead of 2 when it is a newer OpenBLAS than every system one found and no MKL is
   there: the tall, thin products of a 50,000-row batch through 100-unit layers are where
   OpenBLAS releases keep improving (measured on the 2-core machines, Debian 12's 0.3.21
   against SciPy's 0.3.30: a 50,000x100 by 100x100 product 19 -> 12.5 ms, 50,000x14 by
   14x100 4.4 -> 2.2 ms, and a whole GAIL iteration's updates 0.87 -> 0.74 s).

Each candidate is proven by compiling and running a small dgemm program; the verdict is cached
in PyTensor's compile directory so later imports cost a file read. If nothing links, one clear
warning says how to fix it.

`setup()` also runs the BLAS copies inside NumPy's and SciPy's wheels single-threaded and makes
malloc recycle large freed blocks. It runs once per process, at the first compile, so importing
`policyopt` has no side effects (probing a BLAS can compile and run a C program).
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


_OPENBLAS_VERSION_PROBE = (
    "import ctypes, sys\n"
    "lib = ctypes.CDLL(sys.argv[1])\n"
    "f = getattr(lib, 'openblas_get_config', None) or getattr(lib, 'scipy_openblas_get_config')\n"
    "f.restype = ctypes.c_char_p\n"
    "print(f().decode())\n")


def _openblas_version(path):
    """(major, minor, patch) of the OpenBLAS library at `path`, or None (not OpenBLAS, or it
    cannot be asked). Asked in a child process, so that this process never loads (and starts
    the threads of) a library it may not use."""
    import subprocess

    try:
        res = subprocess.run([sys.executable, "-c", _OPENBLAS_VERSION_PROBE, path],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"OpenBLAS (\d+)\.(\d+)\.(\d+)", res.stdout)
    return tuple(int(g) for g in m.groups()) if res.returncode == 0 and m else None


def _order_candidates(system, bundled, version=_openblas_version):
    """Candidates in the order to try: the system libraries, then SciPy's bundled OpenBLAS;
    the bundled one first when it is newer than every system OpenBLAS and there is no MKL."""
    if not bundled or any("mkl" in name for name, _, _ in system):
        return system + bundled
    bundled_v = version(bundled[0][2])
    system_v = [version(path) for name, _, path in system if "openblas" in name]
    if bundled_v is not None and all(v is not None and v < bundled_v for v in system_v):
        return bundled + system
    return system + bundled


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
    # "order 2": the verdict also depends on _order_candidates (bundled OpenBLAS first when newer)
    parts = ["order 2", pytensor.__version__, pytensor.config.cxx, sys.prefix]
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
    system, bundled = _system_candidates(), _scipy_openblas_candidate()
    key = _cache_key(system + bundled)
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
    for name, flags, _ in _order_candidates(system, bundled):
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


HEAP_REUSE_ENV_VAR = "POLICYOPT_HEAP_REUSE"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
HEAP_REUSE_BYTES = 1 << 30


def reuse_freed_heap_memory(nbytes=HEAP_REUSE_BYTES):
    """Make glibc's malloc recycle large freed blocks instead of unmapping them.

    A compiled graph frees its intermediates after every call and allocates them again on the
    next one; at 50,000 rows a 100-unit layer's activations are 40 MB. glibc serves blocks above
    its mmap threshold (at most 32 MB by default) with a fresh mmap, and the kernel zero-fills
    every page of it on first touch, then takes the pages back at free: measured here, that was
    about a quarter of a two-layer forward and backward pass. Raising M_MMAP_THRESHOLD and
    M_TRIM_THRESHOLD to `nbytes` keeps such blocks in the heap, so the next call reuses
    pages that are already mapped. Arithmetic is untouched (results are bitwise the same); the
    cost is that up to `nbytes` of freed memory stays resident. ``POLICYOPT_HEAP_REUSE=0``
    turns it off. Returns True when the setting took effect (glibc only).
    """
    if os.environ.get(HEAP_REUSE_ENV_VAR, "1").strip() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, int(nbytes)) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


_done = False


def setup():
    """Link a BLAS, limit the wheels' BLAS threads, tune malloc: once per process (idempotent);
    `backend.compile_mode()` calls it before anything is compiled."""
    global _done
    if not _done:
        _done = True
        configure_blas()
        limit_numpy_blas_threads()
        reuse_freed_heap_memory()
    return blas_status
