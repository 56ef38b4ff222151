"""Symbolic helpers: flat parameter vectors, densities, divergences, Adam, and compilation.

Every function here builds PyTensor expressions; nothing is evaluated until a graph is
compiled with `function`, which uses the project's backend (C with BLAS by default, see
`policyopt.backend`).
"""
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt

from policyopt import backend, cbuild

floatX = pytensor.config.floatX


# ------------------------------------------------------------------------- compilation

class CompiledFunction:
    """A compiled PyTensor function whose 0-d outputs come back as Python floats."""

    def __init__(self, inputs, outputs, updates=None, givens=None, name=None, backend_name=None):
        self.single = not isinstance(outputs, (list, tuple))
        outs = [outputs] if self.single else list(outputs)
        mode = backend.compile_mode(backend_name)
        with warnings.catch_warnings(), cbuild.compiling(name):
            # JAX tracing drops PyTensor's runtime shape assertions (static shapes make them
            # hold by construction); PyTensor warns once per graph
            warnings.filterwarnings("ignore", message="Skipping Assert")
            self.fn = pytensor.function(list(inputs), outs, updates=updates, givens=givens,
                                        mode=mode, on_unused_input="ignore", name=name)
        self.scalar_out = [o.ndim == 0 for o in outs]
        # JAX hands back jax.Array outputs; the library's numeric code is NumPy, and NumPy
        # reductions on jax.Arrays dispatch to JAX (float32, a device round trip on a GPU)
        self.to_numpy = backend.resolve_backend_name(backend_name) == "jax"

    def __call__(self, *args):
        res = self.fn(*args)
        if self.to_numpy:
            res = [np.asarray(r) for r in res]
        res = [float(r) if s else r for r, s in zip(res, self.scalar_out)]
        return res[0] if self.single else tuple(res)


def function(inputs, outputs, **kwargs):
    """Compile `outputs` as a function of `inputs` with the project backend.

    0-d outputs are returned as Python floats; a list of outputs comes back as a tuple.
    """
    return CompiledFunction(inputs, outputs, **kwargs)


class lazy_function:
    """Method decorator: the method builds (inputs, outputs[, updates]) once; the compiled
    function is created on first call and cached on the instance.

    Models declare all their graphs this way, so a script compiles only what it uses.
    """

    def __init__(self, build, sampling=False):
        self.build = build
        self.sampling = sampling
        self.attr = f"_compiled_{build.__name__}"

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        fn = obj.__dict__.get(self.attr)
        if fn is None:
            spec = self.build(obj)
            inputs, outputs = spec[0], spec[1]
            updates = spec[2] if len(spec) > 2 else None
            fn = function(inputs, outputs, updates=updates, name=self.build.__name__,
                          backend_name=backend.sampling_backend() if self.sampling else None)
            obj.__dict__[self.attr] = fn
        return fn


def sampling_function(build):
    """Like lazy_function, for graphs that run inside the forked sampler processes: compiled
    with `backend.sampling_backend()` (C when the main backend is JAX, whose runtime does not
    survive fork)."""
    return lazy_function(build, sampling=True)


# ------------------------------------------------------------------ flat parameter vectors

def flatcat(arrays):
    """Flatten and concatenate symbolic arrays into one vector (in the given order)."""
    return pt.concatenate([a.flatten() for a in arrays])


def flatgrad(loss, vars_):
    """Gradient of a scalar `loss` w.r.t. `vars_`, flattened and concatenated: g_P."""
    return flatcat(pytensor.grad(loss, list(vars_)))


def unflatten_into_tensors(flat_P, shapes):
    """Split the flat vector `flat_P` into tensors of the given static `shapes`.

    The sizes are Python constants so the graph has static shapes (required by JAX).
    """
    out, pos = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat_P[pos:pos + size].reshape(tuple(shape)))
        pos += size
    return out


def gauss_newton_vector_product(loss, raw, params, v_P):
    """(J^T H J) v with J = d raw / d params and H = d^2 loss / d raw^2, flattened like v_P.

    `loss` must depend on `params` only through `raw` (e.g. a KL of the distribution that the
    network's output `raw` parameterises). This is the loss's Hessian-vector product without
    the terms that carry d loss / d raw, so it equals the exact Hessian-vector product wherever
    that gradient vanishes: for TRPO's KL(old || new) at new = old. J v is a push-forward
    (forward mode), H (J v) a second derivative of the cheap elementwise loss graph, and J^T (.)
    one reverse pass; the exact double gradient instead differentiates the whole reverse pass.
    """
    tangents = unflatten_into_tensors(v_P, vars_shapes(params))
    Jv = pytensor.gradient.pushforward(raw, list(params), tangents)
    g_raw = pytensor.grad(loss, raw)
    HJv = pytensor.grad((g_raw * pytensor.gradient.disconnected_grad(Jv)).sum(), raw)
    return flatgrad((raw * pytensor.gradient.disconnected_grad(HJv)).sum(), params)


def cut_forward(outputs, activations):
    """Rewrite `outputs` so that the forward-pass values `activations` become inputs.

    Returns (placeholders, new outputs). A Hessian-vector product is evaluated ten times per
    conjugate-gradient solve at the same parameters and data; computing the network's
    activations once and feeding them to a graph that only does the derivative passes saves a
    third of every product. The derivative nodes are untouched, so the values are identical.
    """
    from pytensor.graph.replace import graph_replace

    placeholders = [a.type(name=f"{a.name or 'act'}_cached") for a in activations]
    cut = graph_replace(list(outputs), dict(zip(activations, placeholders)), strict=False)
    return placeholders, cut


def select_columns(x_B_K, idx_B, K):
    """x[b, idx[b]] for every row b, written as a masked sum over the K columns (an integer
    gather compiles in every backend this way: JAX's arange of a symbolic batch size fails
    under NumPy 2's integer rules)."""
    onehot_B_K = pt.eq(idx_B[:, None], np.arange(K, dtype="int64")[None, :])
    return pt.switch(onehot_B_K, x_B_K, 0.).sum(axis=1)


def vars_shapes(vars_):
    return [tuple(v.get_value(borrow=True).shape) for v in vars_]


# ------------------------------------------------------------------------------ densities

def gaussian_log_density(means_B_D, stdevs_B_D, x_B_D):
    """log N(x; mean, diag(stdev^2)) summed over the last axis:
    -0.5 * sum(((x-m)/s)^2) - sum(log s) - 0.5 * D * log(2 pi)."""
    D = means_B_D.shape[-1]
    return (-0.5 * pt.sqr((x_B_D - means_B_D) / stdevs_B_D).sum(axis=-1)
            - pt.log(stdevs_B_D).sum(axis=-1) - 0.5 * D * np.log(2 * np.pi))


def gaussian_kl(means1_B_D, stdevs1_B_D, means2_B_D, stdevs2_B_D):
    """KL(N1 || N2) per row for diagonal Gaussians:
    0.5 * (sum (s1/s2)^2 + sum ((m2-m1)/s2)^2 + 2*(sum log s2 - sum log s1) - D)."""
    D = means1_B_D.shape[-1]
    return 0.5 * (pt.sqr(stdevs1_B_D / stdevs2_B_D).sum(axis=-1)
                  + pt.sqr((means2_B_D - means1_B_D) / stdevs2_B_D).sum(axis=-1)
                  + 2. * (pt.log(stdevs2_B_D).sum(axis=-1) - pt.log(stdevs1_B_D).sum(axis=-1))
                  - D)


def gaussian_entropy(stdevs_B_D):
    """Entropy of a diagonal Gaussian per row: sum(log s) + 0.5 * D * log(2 pi e)."""
    D = stdevs_B_D.shape[-1]
    return pt.log(stdevs_B_D).sum(axis=-1) + 0.5 * D * np.log(2 * np.pi * np.e)


def logsumexp(a, axis, keepdims=False):
    """log(sum(exp(a), axis)), stable for large |a|."""
    a_max = pt.max(a, axis=axis, keepdims=True)
    out = pt.log(pt.exp(a - a_max).sum(axis=axis, keepdims=True)) + a_max
    return out if keepdims else pt.squeeze(out, axis=axis)


def categorical_kl(logprobs1_B_A, logprobs2_B_A):
    """KL(p1 || p2) per row from log-probabilities: sum p1 * (log p1 - log p2)."""
    return (pt.exp(logprobs1_B_A) * (logprobs1_B_A - logprobs2_B_A)).sum(axis=-1)


def categorical_entropy(logprobs_B_A):
    """-sum p log p per row."""
    return -(pt.exp(logprobs_B_A) * logprobs_B_A).sum(axis=-1)


def logsigmoid(a):
    """log(sigmoid(a)) = -softplus(-a), finite for any finite a."""
    return -pt.softplus(-a)


def sigmoid_cross_entropy_with_logits(logits, labels):
    """BCE between sigmoid(logits) and labels: -(y log s + (1-y) log(1-s)),
    written as softplus(l) - y*l so that extreme logits stay finite."""
    return pt.softplus(logits) - labels * logits


def logit_bernoulli_entropy(logits):
    """Entropy of Bernoulli(sigmoid(l)): (1 - sigmoid(l)) * l - logsigmoid(l)."""
    return (1. - pt.sigmoid(logits)) * logits - logsigmoid(logits)


def logit_bernoulli_kl(logits1, logits2):
    """KL(Bern(sigmoid(l1)) || Bern(sigmoid(l2))) from logits:
    p1*(log p1 - log p2) + (1-p1)*(log(1-p1) - log(1-p2)), log(1-p) = logsigmoid(-l)."""
    p1 = pt.sigmoid(logits1)
    return (p1 * (logsigmoid(logits1) - logsigmoid(logits2))
            + (1. - p1) * (logsigmoid(-logits1) - logsigmoid(-logits2)))


# ----------------------------------------------------------------------------------- adam

def adam(cost, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
    """Update list for one Adam step on `cost` w.r.t. shared `params`.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  t <- t + 1;
    p <- p - alpha * m / (sqrt(v) + eps),  alpha = lr * sqrt(1 - b2^t) / (1 - b1^t).
    The moments and t are shared variables named after the parameters (so they can be saved).
    """
    params = list(params)
    grads = pytensor.grad(cost, params)
    t_prev = pytensor.shared(np.asarray(0., dtype=floatX), name="adam_t")
    t = t_prev + 1.
    alpha = lr * pt.sqrt(1. - beta2 ** t) / (1. - beta1 ** t)
    updates = [(t_prev, t)]
    for p, g in zip(params, grads):
        value = p.get_value(borrow=True)
        m_prev = pytensor.shared(np.zeros_like(value), name=f"{p.name}/adam_m", shape=value.shape)
        v_prev = pytensor.shared(np.zeros_like(value), name=f"{p.name}/adam_v", shape=value.shape)
        m = beta1 * m_prev + (1. - beta1) * g
        v = beta2 * v_prev + (1. - beta2) * pt.sqr(g)
        updates += [(m_prev, m), (v_prev, v), (p, p - alpha * m / (pt.sqrt(v) + eps))]
    return updates


def adam_state_vars(updates):
    """The shared variables an `adam` update list owns (t and the moments), in order."""
    params = {id(p) for (p, _) in updates[1:][2::3]}
    return [var for (var, _) in updates if id(var) not in params]
