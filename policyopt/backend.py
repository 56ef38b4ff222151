"""How the project's symbolic graphs are compiled: the backend and the BLAS it links.

PyTensor keeps the graph and swaps the compiler. The project compiles every graph through
`compile_mode()`, which honours one setting:

* ``c`` (default): PyTensor's C backend (the CVM linker), the route the original Theano code
  took. PyTensor 3 itself defaults to Numba, so the project asks for C explicitly.
* ``numba``: PyTensor's Numba backend.
* ``jax``: PyTensor's JAX backend (runs on CUDA when JAX sees an NVIDIA GPU).

The setting comes from `set_backend()` (the scripts' ``--backend`` flag) or the
``POLICYOPT_BACKEND`` environment variable.

The C backend is only fast when PyTensor links a real BLAS: `policyopt.blas` links one, and
`compile_mode()` runs its setup before the first graph is compiled (importing the package has no
side effects).
"""
import os

import pytensor

BACKENDS = ("c", "numba", "jax")
BACKEND_ENV_VAR = "POLICYOPT_BACKEND"

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

        from policyopt import blas, cbuild

        blas.setup()  # before the first compile: the C backend's BLAS flags must be set
        if name in ("c", "jax"):  # (JAX's sampling graphs are compiled to C)
            cbuild.setup()
        check_backend_available(name)
        mode = Mode(linker=_LINKERS[name], optimizer="fast_run")
        if name == "c":
            from policyopt import cops

            mode = mode.including(cops.FAST_TANH_TAG)
        _MODES[name] = mode
    return _MODES[name]
