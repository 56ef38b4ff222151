"""Neural-network building blocks: variable scopes, models with flat parameters, layers,
feed-forward nets from JSON specs, running standardizers.

Every shared variable gets a path name from the scopes open when it was created, e.g.
``/GaussianPolicy/hidden/FeedforwardNet/layer_0/AffineLayer/W``; HDF5 snapshots store each
variable under that path, which is the layout of the original authors' checkpoints.
"""
import contextlib
import json

import numpy as np
import pytensor
import pytensor.tensor as pt

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
