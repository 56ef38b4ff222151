"""Faster first compiles for the C backend, without changing what is compiled.

PyTensor's C backend builds one C++ module per graph node and runs g++ on them one after
another, each run parsing the Python and NumPy headers again. A first GAIL run on an empty
compile cache builds about 86 modules, and g++ was 60 of its 67 seconds on a 2-core machine
(design.md section 8). Two remedies, installed by `setup()` at the first compile:

* **Parallel builds.** When PyTensor links a compiled function, its nodes are turned into
  modules one by one. Just before that, `_prefetch` generates the source of every node whose
  module is not in the cache and has g++ build them side by side (one build per core, in
  threads that wait on g++). PyTensor's own sequential compile then finds the library already
  built from the same source with the same flags and only copies and loads it.
* **A precompiled header.** The headers every module starts with are precompiled once per
  compile directory and handed to g++ with ``-include``; the module's own ``#include`` lines
  then cost nothing (include guards). g++ silently ignores a precompiled header built with other
  flags and reads the plain header instead, so a module with its own flags compiles as before.

Neither changes a module's source, flags or cache key: the libraries are the ones PyTensor would
have built, so results are bit-identical and a warm cache is used as is.

``POLICYOPT_COMPILE_JOBS=N`` sets the number of parallel builds (default: the usable cores);
``POLICYOPT_COMPILE_JOBS=1`` turns both remedies off.
"""
import atexit
import concurrent.futures
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytensor

JOBS_ENV_VAR = "POLICYOPT_COMPILE_JOBS"

# The lines every PyTensor node module starts with (pytensor.link.c.basic's code generation).
_MODULE_HEADERS = (
    "#include <Python.h>\n"
    '#include "pytensor_mod_helper.h"\n'
    "#include <math.h>\n"
    "#include <numpy/arrayobject.h>\n"
    "#include <numpy/arrayscalars.h>\n"
    "#include <numpy/npy_math.h>\n"
    "#include <vector>\n"
    "#include <algorithm>\n"
)


class BuildStats:
    """Counts for tests and benchmarks: modules built ahead in parallel, and how many of
    PyTensor's compiles found their library built ahead (`reused`) or compiled it themselves."""

    def __init__(self):
        self.prebuilt = 0
        self.reused = 0
        self.compiled = 0
        self.pch = None  # path of the precompiled header in use, if any


stats = BuildStats()

_installed = False
_jobs = 1
_pool = None
_builds = {}  # build key -> Future of (temporary directory, library file name) or None
_builds_lock = threading.Lock()
_announced = False
_current_name = threading.local()
_orig_compile_str = None
_pch_ready = threading.Event()  # set once the header is built, or has failed
_pch_header = None  # the header passed with -include once its precompiled form is ready


def compile_jobs():
    """Parallel g++ builds: $POLICYOPT_COMPILE_JOBS, else the cores this process may use."""
    value = os.environ.get(JOBS_ENV_VAR, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{JOBS_ENV_VAR}={value!r} is not a number of jobs")
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def compiling(name):
    """Name the function being compiled, for the progress display."""
    previous = getattr(_current_name, "value", None)
    _current_name.value = name
    try:
        yield
    finally:
        _current_name.value = previous


def setup():
    """Install the parallel builds and the precompiled header (once per process; a no-op with
    POLICYOPT_COMPILE_JOBS=1 or without a C++ compiler)."""
    global _installed, _jobs, _orig_compile_str
    if _installed:
        return
    _installed = True
    _jobs = compile_jobs()
    if _jobs <= 1 or not pytensor.config.cxx:
        _pch_ready.set()
        return
    from pytensor.link.c.cmodule import GCC_compiler
    from pytensor.link.vm import VMLinker

    _orig_compile_str = GCC_compiler.compile_str
    GCC_compiler.compile_str = staticmethod(_compile_str)
    orig_make_all = VMLinker.make_all

    def make_all(self, *args, **kwargs):
        if self.c_thunks is not False:
            _prefetch(self.schedule(self.fgraph))
        return orig_make_all(self, *args, **kwargs)

    VMLinker.make_all = make_all
    _start_pch()


# ------------------------------------------------------------------------- parallel builds

def _build_key(src_code, include_dirs, lib_dirs, libs, preargs):
    h = hashlib.sha256(src_code.encode())
    h.update(repr((list(include_dirs or []), list(lib_dirs or []), list(libs or []),
                   list(preargs or []))).encode())
    return h.hexdigest()


def _node_build(node):
    """(build key, compile_str keyword arguments) of the module PyTensor would build for
    `node`, or None when the node has no C code or its module is already cached."""
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.c.basic import CLinker, get_module_cache
    from pytensor.link.c.cmodule import get_module_hash
    from pytensor.link.c.op import COp

    if not isinstance(node.op, COp):
        return None
    try:
        # What COp.make_thunk and make_c_thunk do, up to the compile (the VM passes no
        # no_recycling). Any failure here is PyTensor's to report, at its own compile.
        node.op.prepare_node(node, storage_map=None, compute_map=None, impl="c")
        cl = CLinker().accept(FunctionGraph(node.inputs, node.outputs), no_recycling=[])
        key = cl.cmodule_key()
        cache = get_module_cache()
        if key in cache.entry_from_key:
            return None
        mod = cl.get_dynamic_module()
        src_code = mod.code()  # (sets mod.code_hash, the module's name)
        # a module of the same source under another key (other static shapes) is reused
        if get_module_hash(src_code, key) in cache.module_hash_to_key_data:
            return None
        kwargs = dict(module_name=mod.code_hash, src_code=src_code,
                      include_dirs=cl.header_dirs(), lib_dirs=cl.lib_dirs(),
                      libs=cl.libraries(), preargs=cl.compile_args())
    except Exception:
        return None
    return _build_key(kwargs["src_code"], kwargs["include_dirs"], kwargs["lib_dirs"],
                      kwargs["libs"], kwargs["preargs"]), kwargs


def _build(kwargs):
    """g++ on one module in a temporary directory (a pool thread); None if it fails (PyTensor
    then compiles it itself and reports the error)."""
    tmp = tempfile.mkdtemp(prefix="policyopt_build_")
    try:
        _compile_str(location=tmp, py_module=False, **kwargs)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    names = [f for f in os.listdir(tmp) if f.startswith(kwargs["module_name"] + ".")]
    if not names:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    return tmp, names[0]


def _announce():
    global _announced
    if not _announced:
        _announced = True
        print(f"policyopt: compiling the graphs to C, once: the modules are cached in "
              f"{pytensor.config.compiledir}", file=sys.stderr, flush=True)


def _prefetch(order):
    """Build the uncached modules of a function's nodes in parallel, and wait for them."""
    global _pool
    todo = []
    for node in order:
        found = _node_build(node)
        if found is None:
            continue
        bkey, kwargs = found
        with _builds_lock:
            if bkey in _builds:
                continue
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(_jobs,
                                                              thread_name_prefix="policyopt-cc")
            _builds[bkey] = _pool.submit(_build, kwargs)
            todo.append(_builds[bkey])
    if not todo:
        return
    _announce()
    from tqdm import tqdm

    name = getattr(_current_name, "value", None) or "graph"
    with tqdm(total=len(todo), desc=f"  {name}", unit="module", file=sys.stderr,
              disable=None, leave=False) as bar:
        for fut in concurrent.futures.as_completed(todo):
            if fut.result() is not None:
                stats.prebuilt += 1
            bar.update(1)


def _take_prebuilt(src_code, include_dirs, lib_dirs, libs, preargs):
    """The (directory, file) of a library built ahead from exactly these inputs, or None."""
    bkey = _build_key(src_code, include_dirs, lib_dirs, libs, preargs)
    with _builds_lock:
        fut = _builds.pop(bkey, None)
    return fut.result() if fut is not None else None


def _compile_str(module_name, src_code, location=None, include_dirs=None, lib_dirs=None,
                 libs=None, preargs=None, py_module=True, hide_symbols=True):
    """GCC_compiler.compile_str, taking a library built ahead when there is one, and adding the
    precompiled header to a node module's flags."""
    from pytensor.link.c.cmodule import dlimport, get_lib_extension

    if py_module:  # PyTensor's own compile (under its cache lock)
        built = _take_prebuilt(src_code, include_dirs, lib_dirs, libs, preargs)
        if built is not None:
            tmp, fname = built
            try:
                target = os.path.join(location, f"{module_name}.{get_lib_extension()}")
                with open(os.path.join(location, "mod.cpp"), "w") as f:
                    f.write(src_code if src_code.endswith("\n") else src_code + "\n")
                shutil.copyfile(os.path.join(tmp, fname), target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            stats.reused += 1
            return dlimport(target)
        stats.compiled += 1
    args = dict(module_name=module_name, src_code=src_code, location=location,
                include_dirs=include_dirs, lib_dirs=lib_dirs, libs=libs,
                py_module=py_module, hide_symbols=hide_symbols)
    if not src_code.startswith("#include <Python.h>"):  # not a node module
        return _orig_compile_str(preargs=preargs, **args)
    # No debug information (-g0 overrides compile_str's -g): g++ generates the same code with
    # or without it (GCC's -fcompare-debug guarantee), and writing it is 15% of a build.
    preargs = [*(preargs or []), "-g0"]
    _pch_ready.wait(timeout=120)
    header = _pch_header
    if header is not None:
        try:
            return _orig_compile_str(preargs=[*preargs, "-include", header], **args)
        except Exception:
            pass  # a module the header does not suit: compile it without
    return _orig_compile_str(preargs=preargs, **args)


# ----------------------------------------------------------------------- precompiled header

def _pch_flags():
    """The flags of an ordinary node module (an elementwise addition's)."""
    import pytensor.tensor as pt
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.c.basic import CLinker
    from pytensor.link.c.cmodule import std_include_dirs

    x = pt.dvector()
    cl = CLinker().accept(FunctionGraph([x], [x + x]), no_recycling=[])
    # compile_str appends PyTensor's standard include directories to the node's
    return cl.compile_args(), [*cl.header_dirs(), *std_include_dirs()]


def _pch_dir():
    """compiledir/policyopt_pch/<hash of compiler, flags, Python, NumPy, PyTensor>: g++ does
    not notice a changed header, so a new version of any of them gets a new header."""
    import numpy as np

    preargs, include_dirs = _pch_flags()
    try:
        cxx = subprocess.run([pytensor.config.cxx, "--version"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None, preargs, include_dirs
    h = hashlib.sha256(repr((cxx, preargs, include_dirs, sys.version, np.__version__,
                             pytensor.__version__, _MODULE_HEADERS)).encode())
    return (os.path.join(pytensor.config.compiledir, "policyopt_pch", h.hexdigest()[:16]),
            preargs, include_dirs)


def _make_pch(directory, preargs, include_dirs):
    try:
        _build_pch(directory, preargs, include_dirs)
    finally:
        _pch_ready.set()


def _build_pch(directory, preargs, include_dirs):
    global _pch_header
    if directory is None:
        return
    header = os.path.join(directory, "pytensor_module_headers.h")
    if not os.path.exists(header + ".gch"):
        os.makedirs(directory, exist_ok=True)
        tmp_header = f"{header}.{os.getpid()}.h"
        with open(tmp_header, "w") as f:
            f.write(_MODULE_HEADERS)
        # the flags of the module builds (see _compile_str), as a C++ header
        cmd = [pytensor.config.cxx, "-g0", *preargs, *[f"-I{d}" for d in include_dirs],
               "-fvisibility=hidden", "-x", "c++-header", "-o", tmp_header + ".gch",
               tmp_header]
        try:
            ok = subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if not ok:
            for p in (tmp_header, tmp_header + ".gch"):
                with contextlib.suppress(OSError):
                    os.remove(p)
            return
        # the header and its precompiled form appear atomically (another process may race)
        os.replace(tmp_header + ".gch", header + ".gch")
        os.replace(tmp_header, header)
    if os.path.exists(header):
        _pch_header = header
        stats.pch = header


def _start_pch():
    """Build (or find) the precompiled header in a thread, while the first graph is optimized;
    module builds wait for it."""
    try:
        # the flags come from PyTensor's code generation, here in the main thread; the
        # thread only runs g++
        args = _pch_dir()
    except Exception:
        _pch_ready.set()
        return
    threading.Thread(target=_make_pch, args=args, name="policyopt-pch", daemon=True).start()


def _forget_pool_in_child():
    """A forked child (a sampler worker) has none of the pool's threads: it starts its own."""
    global _pool, _builds_lock
    _pool = None
    _builds.clear()
    _builds_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


@atexit.register
def _remove_unused_builds():
    with _builds_lock:
        futures = list(_builds.values())
        _builds.clear()
    for fut in futures:
        if fut.done() and fut.result() is not None:
            shutil.rmtree(fut.result()[0], ignore_errors=True)
