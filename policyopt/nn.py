"""Neural-network building blocks: variable scopes, models with flat parameters, layers,
feed-forward nets from JSON specs, running standardizers, and the training log.

Every shared variable gets a path name from the scopes open when it was created, e.g.
``/GaussianPolicy/hidden/FeedforwardNet/layer_0/AffineLayer/W``; HDF5 snapshots store each
variable under that path, which is the layout of the original authors' checkpoints.
"""
import contextlib
import json

import numpy as np
import pytensor
import pytensor.tensor as pt

from policyopt import thutil, util
from policyopt.thutil import floatX

# -------------------------------------------------------------------------- variable scopes

_init_rng = np.random.default_rng(0)


def seed_initializers(seed):
    """Seed the generator that draws initial weights (models built in a fixed order then get
    identical weights for identical seeds)."""
    global _init_rng
    _init_rng = np.random.default_rng(seed)


_scope_stack = []
_collectors = []  # lists that receive every variable created while they are active


@contextlib.contextmanager
def variable_scope(name):
    """Nest a scope: variables created inside are named ``/outer/.../name/var``."""
    if not name or "/" in name:
        raise ValueError(f"invalid scope name {name!r}")
    _scope_stack.append(name)
    try:
        yield current_scope()
    finally:
        _scope_stack.pop()


def current_scope():
    return "/" + "/".join(_scope_stack)


def get_variable(name, initializer, trainable=True):
    """Create a shared variable ``<current scope>/<name>`` with static shape.

    `initializer` is an array (its value is copied). Every model whose scope is open
    registers the variable; `trainable` says whether it belongs to the flat parameter vector.
    """
    value = np.array(initializer, dtype=floatX)
    path = current_scope().rstrip("/") + "/" + name
    var = pytensor.shared(value, name=path, shape=value.shape)
    var.tag.trainable = bool(trainable)
    for coll in _collectors:
        coll.append(var)
    return var


@contextlib.contextmanager
def _collect(into):
    _collectors.append(into)
    try:
        yield
    finally:
        popped = _collectors.pop()
        assert popped is into


# ------------------------------------------------------------------------------------ Model

class Model:
    """Owner of shared variables created inside its scope.

    Subclasses build inside ``with self.building(scope_name):``. The trainable variables,
    in registration order, form the flat parameter vector x_P.
    """

    varscope = None

    @contextlib.contextmanager
    def building(self, scope_name):
        self._variables = []
        with variable_scope(scope_name) as path:
            self.varscope = path
            with _collect(self._variables):
                yield

    def get_variables(self):
        return list(self._variables)

    def get_trainable_variables(self):
        return [v for v in self._variables if v.tag.trainable]

    def get_num_params(self):
        return sum(v.get_value(borrow=True).size for v in self.get_trainable_variables())

    def get_params(self):
        """The trainable variables' values flattened and concatenated: x_P."""
        vals = [v.get_value(borrow=True).ravel() for v in self.get_trainable_variables()]
        return np.concatenate(vals) if vals else np.zeros(0, dtype=floatX)

    def set_params(self, x_P):
        x_P = np.asarray(x_P, dtype=floatX)
        if x_P.ndim != 1 or x_P.size != self.get_num_params():
            raise ValueError(f"{self.varscope}: expected a flat vector of "
                             f"{self.get_num_params()} params, got shape {x_P.shape}")
        pos = 0
        for v in self.get_trainable_variables():
            shape = v.get_value(borrow=True).shape
            size = int(np.prod(shape))
            v.set_value(x_P[pos:pos + size].reshape(shape).copy(), borrow=True)
            pos += size

    @contextlib.contextmanager
    def try_params(self, x_P):
        """Temporarily set the params to x_P; the old ones come back on exit."""
        orig_P = self.get_params().copy()
        self.set_params(x_P)
        try:
            yield
        finally:
            self.set_params(orig_P)

    def get_state(self):
        """Every variable's value (trainable or not) by path."""
        return {v.name: v.get_value().copy() for v in self._variables}

    def set_state(self, state):
        for v in self._variables:
            v.set_value(np.asarray(state[v.name], dtype=floatX).reshape(
                v.get_value(borrow=True).shape))

    def save_h5(self, h5group, key):
        """Write every variable to ``h5group[key + path]`` (h5py group or file)."""
        for v in self._variables:
            dset = key.rstrip("/") + v.name
            if dset in h5group:
                del h5group[dset]
            h5group.create_dataset(dset, data=v.get_value())

    def load_h5(self, h5group, key):
        """Load every variable from ``h5group[key + path]``; shapes must match."""
        for v in self._variables:
            dset = key.rstrip("/") + v.name
            if dset not in h5group:
                raise KeyError(f"snapshot {key!r} has no variable {v.name!r}")
            val = np.asarray(h5group[dset][()], dtype=floatX)
            cur = v.get_value(borrow=True)
            if val.shape != cur.shape:
                raise ValueError(f"{v.name}: snapshot shape {val.shape} != model shape "
                                 f"{cur.shape}")
            v.set_value(val)


# ----------------------------------------------------------------------------------- layers

class Layer(Model):
    output = None
    output_shape = None


class AffineLayer(Layer):
    """y = x W + b with W (in, out) Glorot-uniform (limit sqrt(6/(in+out))) unless
    `initializer` is given, and b (1, out) zeros broadcast over the batch."""

    def __init__(self, input_B_Di, input_shape, output_shape, initializer=None, rng=None):
        (Di,), (Do,) = input_shape, output_shape
        with self.building("AffineLayer"):
            if initializer is None:
                rng = rng if rng is not None else _init_rng
                limit = np.sqrt(6. / (Di + Do))
                W_init = rng.uniform(-limit, limit, size=(Di, Do))
            else:
                W_init = np.broadcast_to(np.asarray(initializer, dtype=floatX), (Di, Do))
            self.W_Di_Do = get_variable("W", W_init)
            self.b_1_Do = get_variable("b", np.zeros((1, Do)))
        self.output = pt.dot(input_B_Di, self.W_Di_Do) + self.b_1_Do
        self.output_shape = (Do,)


_NONLINEARITIES = {
    "relu": lambda x: pt.maximum(x, 0.),
    "lrelu": lambda x: pt.maximum(x, 0.01 * x),
    "elu": lambda x: pt.switch(x > 0., x, pt.expm1(pt.minimum(x, 0.))),
    "tanh": pt.tanh,
}


class NonlinearityLayer(Layer):
    """Elementwise relu, lrelu (slope 0.01), elu, or tanh."""

    def __init__(self, input_B_Di, output_shape, func):
        if func not in _NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {func!r}; "
                             f"choose from {', '.join(sorted(_NONLINEARITIES))}")
        with self.building("NonlinearityLayer"):
            pass
        self.output = _NONLINEARITIES[func](input_B_Di)
        self.output_shape = tuple(output_shape)


DEFAULT_HIDDEN_SPEC = ('[{"type": "fc", "n": 100}, {"type": "nonlin", "func": "tanh"}, '
                       '{"type": "fc", "n": 100}, {"type": "nonlin", "func": "tanh"}]')
TINY_HIDDEN_SPEC = ('[{"type": "fc", "n": 64}, {"type": "nonlin", "func": "tanh"}, '
                    '{"type": "fc", "n": 64}, {"type": "nonlin", "func": "tanh"}]')


def parse_hidden_spec(spec):
    """Validate a network spec (JSON string or list) and return it as a list of dicts.

    Raises ValueError with a one-line description of what is wrong.
    """
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"network spec is not valid JSON ({e.msg} at char {e.pos})")
    if not isinstance(spec, list):
        raise ValueError("network spec must be a JSON list of layer objects")
    for i, ls in enumerate(spec):
        if not isinstance(ls, dict) or "type" not in ls:
            raise ValueError(f"network spec entry {i} must be an object with a 'type'")
        if ls["type"] == "fc":
            n = ls.get("n")
            if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
                raise ValueError(f"network spec entry {i}: fc needs a positive integer 'n'")
        elif ls["type"] == "nonlin":
            if ls.get("func") not in _NONLINEARITIES:
                raise ValueError(f"network spec entry {i}: nonlin 'func' must be one of "
                                 f"{', '.join(sorted(_NONLINEARITIES))}")
        else:
            raise ValueError(f"network spec entry {i}: unknown type {ls['type']!r} "
                             "(expected 'fc' or 'nonlin')")
    return spec


class FeedforwardNet(Layer):
    """A stack of fc/nonlin layers from a JSON spec; scopes are numbered over ALL entries
    (layer_0 fc, layer_1 nonlin, layer_2 fc, ...)."""

    def __init__(self, input_B_Di, input_shape, layerspec_json, rng=None):
        spec = parse_hidden_spec(layerspec_json)
        with self.building("FeedforwardNet"):
            x, shape = input_B_Di, tuple(input_shape)
            self.layers = []
            for i, ls in enumerate(spec):
                with variable_scope(f"layer_{i}"):
                    if ls["type"] == "fc":
                        layer = AffineLayer(x, shape, (ls["n"],), rng=rng)
                    else:
                        layer = NonlinearityLayer(x, shape, ls["func"])
                self.layers.append(layer)
                x, shape = layer.output, layer.output_shape
        self.output, self.output_shape = x, shape


# ------------------------------------------------------------------------------ Standardizer

class Standardizer(Model):
    """Running mean and mean-square of the data seen so far.

    update: count-weighted running average. stdev = sqrt(relu(meansq - mean^2));
    standardize(x) = (x - mean) / (stdev + eps). Before any data the statistics are
    (mean 0, meansq 1), i.e. standardize is the identity; the first update replaces them.
    """

    def __init__(self, dim, eps=1e-6):
        self.dim, self.eps = dim, eps
        with self.building("Standardizer"):
            self._count = get_variable("count", np.array(0.), trainable=False)
            self._mean_1_D = get_variable("mean_1_D", np.zeros((1, dim)), trainable=False)
            self._meansq_1_D = get_variable("meansq_1_D", np.ones((1, dim)), trainable=False)
        self._stdev_1_D = pt.sqrt(pt.maximum(self._meansq_1_D - pt.sqr(self._mean_1_D), 0.))

    def get_count(self):
        return float(self._count.get_value())

    def get_mean(self):
        return self._mean_1_D.get_value()

    def get_stdev(self):
        m, msq = self._mean_1_D.get_value(), self._meansq_1_D.get_value()
        return np.sqrt(np.maximum(msq - np.square(m), 0.))

    def update(self, x_N_D):
        x_N_D = np.asarray(x_N_D, dtype=floatX)
        if x_N_D.ndim != 2 or x_N_D.shape[1] != self.dim:
            raise ValueError(f"Standardizer({self.dim}).update got shape {x_N_D.shape}")
        n = x_N_D.shape[0]
        if n == 0:
            return
        old = self.get_count()
        new = old + n
        w_old, w_new = old / new, n / new
        with np.errstate(over="ignore", invalid="ignore"):
            # overflowing data yields inf/NaN statistics, which the training loop's divergence
            # check reports in one line; NumPy's warnings would only add noise before it
            self._mean_1_D.set_value(w_old * self._mean_1_D.get_value()
                                     + w_new * x_N_D.mean(axis=0, keepdims=True))
            self._meansq_1_D.set_value(w_old * self._meansq_1_D.get_value()
                                       + w_new * np.square(x_N_D).mean(axis=0, keepdims=True))
        self._count.set_value(np.array(new, dtype=floatX))

    def standardize_expr(self, x_B_D):
        return (x_B_D - self._mean_1_D) / (self._stdev_1_D + self.eps)

    def unstandardize_expr(self, y_B_D):
        return y_B_D * (self._stdev_1_D + self.eps) + self._mean_1_D

    def standardize(self, x_B_D):
        return (np.asarray(x_B_D) - self.get_mean()) / (self.get_stdev() + self.eps)

    def unstandardize(self, y_B_D):
        return np.asarray(y_B_D) * (self.get_stdev() + self.eps) + self.get_mean()


class NoOpStandardizer(Model):
    """Pass-through with the Standardizer interface (obs normalization disabled)."""

    def __init__(self, dim, eps=1e-6):
        self.dim = dim
        with self.building("NoOpStandardizer"):
            pass

    def update(self, x_N_D):
        pass

    def standardize_expr(self, x_B_D):
        return x_B_D

    def unstandardize_expr(self, y_B_D):
        return y_B_D

    def standardize(self, x_B_D):
        return np.asarray(x_B_D)

    def unstandardize(self, y_B_D):
        return np.asarray(y_B_D)


# ------------------------------------------------------------------------------- TrainingLog

def _fmt(v):
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    return f"{v:.5g}" if abs(v) < 1e6 else f"{v:.4e}"


def _appended_versions(attrs, current):
    """The `versions` attribute (JSON list) with `current` (library versions) appended unless
    it equals the last entry."""
    history = json.loads(attrs.versions) if "versions" in attrs._v_attrnames else []
    if not history or history[-1] != current:
        history.append(current)
    return json.dumps(history, sort_keys=True)


class TrainingLog:
    """One row of named fields per iteration, printed as an aligned table (header every
    `header_every` rows) and stored in the HDF5 file `filename` as the PyTables table `log`.

    Policy snapshots live in the same file under ``snapshots/iter%07d/<scope path>``; the run's
    arguments are JSON in the root attribute `args`; the root attribute `versions` is a JSON list
    of the library versions (util.library_versions) of every process that wrote the file, one
    entry per change, so a resumed run shows an upgrade. Rows are buffered and written together with
    each snapshot (`save`) through an atomic replace, so a run killed at any moment leaves a file
    that opens and holds every iteration up to its last completed save.
    """

    def __init__(self, filename=None, attrs=None, header_every=20, out=None):
        self.filename = filename
        self.attrs = dict(attrs or {})
        self.versions = util.library_versions()  # once: they cannot change within a process
        self.header_every = header_every
        self.out = out
        self.pending = []
        self.columns = None
        self.num_printed = 0
        if filename:
            import os

            import tables

            if os.path.exists(filename):
                with tables.open_file(filename, "r") as f:
                    if "/log" in f:
                        self.columns = list(f.root.log.colnames)

    def write(self, kvs, print_=True):
        """Record one row: `kvs` is a list of (name, value) in column order."""
        kvs = [(k, v) for k, v in kvs]
        if self.columns is None:
            self.columns = [k for k, _ in kvs]
        names = [k for k, _ in kvs]
        if names != self.columns:
            raise ValueError(f"log row fields {names} differ from the table's {self.columns}")
        self.pending.append(kvs)
        if print_:
            self._print(kvs)

    def _print(self, kvs):
        import sys

        out = self.out or sys.stdout
        widths = [max(len(k), 9) for k, _ in kvs]
        if self.num_printed % self.header_every == 0:
            print("  ".join(k.rjust(w) for (k, _), w in zip(kvs, widths)), file=out)
            print("  ".join("-" * w for w in widths), file=out)
        print("  ".join(_fmt(v).rjust(w) for (_, v), w in zip(kvs, widths)), file=out,
              flush=True)
        self.num_printed += 1

    def save(self, snapshot_iter=None, models=(), extra=None, finished=False):
        """Append the buffered rows, and when `snapshot_iter` is given write every model in
        `models` under ``snapshots/iter%07d``; `extra(h5file)` may write more (e.g. resume
        state); `finished` marks the run complete (root attribute `finished`). All in one
        atomic replace of the file."""
        if not self.filename:
            self.pending = []
            return
        import os

        import h5py
        import tables

        with util.atomic_write(self.filename, copy_existing=True) as tmp:
            with tables.open_file(tmp, "a") as f:
                if self.pending:
                    if "/log" not in f:
                        desc = {}
                        for pos, (k, v) in enumerate(self.pending[0]):
                            is_int = isinstance(v, (bool, int, np.integer, np.bool_))
                            desc[k] = (tables.Int64Col if is_int else tables.Float64Col)(pos=pos)
                        f.create_table("/", "log", desc, "training log")
                    table = f.root.log
                    rec = np.zeros(len(self.pending), dtype=table.dtype)
                    for i, kvs in enumerate(self.pending):
                        for k, v in kvs:
                            rec[k][i] = v
                    table.append(rec)
                    table.flush()
                f.root._v_attrs.args = json.dumps(self.attrs, sort_keys=True, indent=1,
                                                  default=str)
                f.root._v_attrs.finished = int(finished)
                f.root._v_attrs.versions = _appended_versions(f.root._v_attrs, self.versions)
            with h5py.File(tmp, "a") as f:
                if snapshot_iter is not None:
                    key = "snapshots/iter%07d" % snapshot_iter
                    if key in f:
                        del f[key]
                    for m in models:
                        m.save_h5(f, key)
                if extra is not None:
                    extra(f)
        self.pending = []
        assert os.path.exists(self.filename)

    def rows_written(self):
        """Number of rows already in the file."""
        import os

        import tables

        if not self.filename or not os.path.exists(self.filename):
            return 0
        with tables.open_file(self.filename, "r") as f:
            return f.root.log.nrows if "/log" in f else 0
