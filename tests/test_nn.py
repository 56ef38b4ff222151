"""policyopt.nn: flat parameters, HDF5 snapshots, feed-forward nets, standardizers."""
import json

import h5py
import numpy as np
import pytensor.tensor as pt
import pytest

from policyopt import ContinuousSpace, nn, rl, thutil

SPEC = ('[{"type": "fc", "n": 4}, {"type": "nonlin", "func": "tanh"}, '
        '{"type": "fc", "n": 3}, {"type": "nonlin", "func": "relu"}]')


def _net(scope="test_model", spec=SPEC, Di=3):
    x = pt.matrix("x", shape=(None, Di))
    with nn.variable_scope(scope):
        net = nn.FeedforwardNet(x, (Di,), spec)
    return x, net


# ------------------------------------------------------------------------------- Model

def test_get_set_params_round_trip(rng):
    _, net = _net()
    sizes = [3 * 4, 4, 4 * 3, 3]
    assert net.get_num_params() == sum(sizes)
    x_P = rng.normal(size=sum(sizes))
    net.set_params(x_P)
    np.testing.assert_array_equal(net.get_params(), x_P)
    # the flat vector is the trainable variables, flattened C-order, in registration order
    W0, b0, W2, b2 = (v.get_value() for v in net.get_trainable_variables())
    np.testing.assert_array_equal(W0, x_P[:12].reshape(3, 4))
    np.testing.assert_array_equal(b0, x_P[12:16].reshape(1, 4))
    np.testing.assert_array_equal(W2, x_P[16:28].reshape(4, 3))
    np.testing.assert_array_equal(b2, x_P[28:].reshape(1, 3))
    # set_params copies: mutating the caller's array changes nothing
    x_P[:] = 0.
    assert np.abs(net.get_params()).max() > 0


def test_set_params_wrong_size_raises(rng):
    _, net = _net()
    P = net.get_num_params()
    with pytest.raises(ValueError):
        net.set_params(np.zeros(P + 1))
    with pytest.raises(ValueError):
        net.set_params(np.zeros(P - 1))
    with pytest.raises(ValueError):
        net.set_params(np.zeros((1, P)))


def test_try_params_restores_even_on_exception(rng):
    _, net = _net()
    orig = rng.normal(size=net.get_num_params())
    net.set_params(orig)
    tmp = rng.normal(size=net.get_num_params())
    with net.try_params(tmp):
        np.testing.assert_array_equal(net.get_params(), tmp)
    np.testing.assert_array_equal(net.get_params(), orig)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with net.try_params(tmp):
            np.testing.assert_array_equal(net.get_params(), tmp)
            raise Boom()
    np.testing.assert_array_equal(net.get_params(), orig)


# ------------------------------------------------------------------------ HDF5 snapshots

POLICY_SPEC = ('[{"type": "fc", "n": 5}, {"type": "nonlin", "func": "tanh"}, '
               '{"type": "fc", "n": 4}, {"type": "nonlin", "func": "tanh"}]')


def _policy(seed, spec=POLICY_SPEC):
    nn.seed_initializers(seed)
    return rl.GaussianPolicy(spec, ContinuousSpace(3), ContinuousSpace(2))


def _numpy_gaussian_policy(h5, key, obs):
    """Forward pass of a GaussianPolicy snapshot (2 hidden tanh layers), straight from HDF5."""
    g = h5[key + "/GaussianPolicy"]
    norm = g["obsnorm/Standardizer"]
    mean, meansq = norm["mean_1_D"][()], norm["meansq_1_D"][()]
    std = np.sqrt(np.maximum(meansq - mean ** 2, 0.))
    h = (obs - mean) / (std + 1e-6)
    for k in (0, 2):
        layer = g[f"hidden/FeedforwardNet/layer_{k}/AffineLayer"]
        h = np.tanh(h @ layer["W"][()] + layer["b"][()])
    means = h @ g["out/AffineLayer/W"][()] + g["out/AffineLayer/b"][()]
    stdevs = np.exp(g["logstdevs_1_Da"][()]) * np.ones_like(means)
    return np.concatenate([means, stdevs], axis=1)


def test_save_load_h5_round_trip(tmp_path, rng):
    src, dst = _policy(1), _policy(2)
    src.set_params(rng.normal(scale=0.5, size=src.P))
    src.obsnorm.update(rng.normal(loc=2., scale=3., size=(50, 3)))
    assert not np.array_equal(src.get_params(), dst.get_params())

    key = "snapshots/iter0000003"
    fn = tmp_path / "snap.h5"
    with h5py.File(fn, "w") as f:
        src.save_h5(f, key)

    expected = {
        "obsnorm/Standardizer/count": (),
        "obsnorm/Standardizer/mean_1_D": (1, 3),
        "obsnorm/Standardizer/meansq_1_D": (1, 3),
        "hidden/FeedforwardNet/layer_0/AffineLayer/W": (3, 5),
        "hidden/FeedforwardNet/layer_0/AffineLayer/b": (1, 5),
        "hidden/FeedforwardNet/layer_2/AffineLayer/W": (5, 4),
        "hidden/FeedforwardNet/layer_2/AffineLayer/b": (1, 4),
        "out/AffineLayer/W": (4, 2),
        "out/AffineLayer/b": (1, 2),
        "logstdevs_1_Da": (1, 2),
    }
    expected = {f"{key}/GaussianPolicy/{k}": v for k, v in expected.items()}
    with h5py.File(fn, "r") as f:
        found = {}
        f.visititems(lambda name, obj: found.__setitem__(name, obj.shape)
                     if isinstance(obj, h5py.Dataset) else None)
        assert found == expected
        src_state = src.get_state()
        for path in expected:
            var_name = path[len(key):]
            np.testing.assert_array_equal(f[path][()], src_state[var_name])
        assert f[f"{key}/GaussianPolicy/obsnorm/Standardizer/count"][()] == 50.

    with h5py.File(fn, "r") as f:
        dst.load_h5(f, key)
        obs = rng.normal(size=(6, 3))
        ref_adist = _numpy_gaussian_policy(f, key, obs)
    dst_state = dst.get_state()
    assert set(dst_state) == set(src_state)
    for name in src_state:
        np.testing.assert_array_equal(dst_state[name], src_state[name])
    np.testing.assert_allclose(dst.obsnorm.get_count(), 50.)
    np.testing.assert_allclose(dst.compute_actiondist_params(obs), ref_adist, rtol=1e-12,
                               atol=1e-14)


def test_load_h5_missing_key_and_shape_mismatch(tmp_path, rng):
    src = _policy(1)
    fn = tmp_path / "snap.h5"
    with h5py.File(fn, "w") as f:
        src.save_h5(f, "snapshots/iter0000003")
    with h5py.File(fn, "r") as f:
        with pytest.raises(KeyError):
            src.load_h5(f, "snapshots/iter0000004")
        wider = _policy(1, spec='[{"type": "fc", "n": 6}, {"type": "nonlin", "func": "tanh"}, '
                                '{"type": "fc", "n": 4}, {"type": "nonlin", "func": "tanh"}]')
        with pytest.raises(ValueError):
            wider.load_h5(f, "snapshots/iter0000003")


# ----------------------------------------------------------------------- FeedforwardNet

NUMPY_NONLIN = {
    "relu": lambda x: np.maximum(x, 0.),
    "lrelu": lambda x: np.maximum(x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.))),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("func", ["lrelu", "elu", "relu", "tanh"])
def test_feedforward_net_names_and_forward(func, rng):
    spec = json.dumps([{"type": "fc", "n": 5}, {"type": "nonlin", "func": func},
                       {"type": "fc", "n": 3}, {"type": "nonlin", "func": "tanh"}])
    x = pt.matrix("x", shape=(None, 4))
    with nn.variable_scope("ffn_" + func):
        net = nn.FeedforwardNet(x, (4,), spec)
    names = [v.name for v in net.get_variables()]
    base = f"/ffn_{func}/FeedforwardNet"
    assert names == [f"{base}/layer_0/AffineLayer/W", f"{base}/layer_0/AffineLayer/b",
                     f"{base}/layer_2/AffineLayer/W", f"{base}/layer_2/AffineLayer/b"]
    assert [v.name for v in net.get_trainable_variables()] == names
    assert net.output_shape == (3,)
    W0, b0, W2, b2 = (v.get_value() for v in net.get_variables())
    assert W0.shape == (4, 5) and b0.shape == (1, 5) and W2.shape == (5, 3) and b2.shape == (1, 3)
    np.testing.assert_array_equal(b0, 0.)
    np.testing.assert_array_equal(b2, 0.)
    assert np.abs(W0).max() <= np.sqrt(6. / (4 + 5))
    assert np.abs(W2).max() <= np.sqrt(6. / (5 + 3))

    net.set_params(rng.normal(size=net.get_num_params()))
    W0, b0, W2, b2 = (v.get_value() for v in net.get_variables())
    X = rng.normal(scale=2., size=(9, 4))
    ref = np.tanh(NUMPY_NONLIN[func](X @ W0 + b0) @ W2 + b2)
    f = thutil.function([x], net.output)
    np.testing.assert_allclose(f(X), ref, rtol=1e-12, atol=1e-14)
    # both signs actually reach the nonlinearity
    pre = X @ W0 + b0
    assert (pre > 0).any() and (pre < 0).any()


def test_glorot_uniform_limits():
    x = pt.matrix("x", shape=(None, 60))
    with nn.variable_scope("glorot"):
        layer = nn.AffineLayer(x, (60,), (140,))
    W = layer.W_Di_Do.get_value()
    limit = np.sqrt(6. / (60 + 140))
    assert W.shape == (60, 140)
    assert np.abs(W).max() <= limit
    assert np.abs(W).max() > 0.99 * limit
    # uniform(-limit, limit): mean 0, variance limit^2 / 3 (8400 samples)
    assert abs(W.mean()) < 5 * limit / np.sqrt(3 * W.size)
    np.testing.assert_allclose(W.var(), limit ** 2 / 3, rtol=0.05)


def test_affine_layer_constant_initializer():
    x = pt.matrix("x", shape=(None, 3))
    with nn.variable_scope("zero_init"):
        layer = nn.AffineLayer(x, (3,), (2,), initializer=0.)
    np.testing.assert_array_equal(layer.W_Di_Do.get_value(), np.zeros((3, 2)))


BAD_SPECS = {
    "not_json": "not json",
    "truncated_json": '[{"type": "fc", "n": 3}',
    "object_not_list": '{"type": "fc", "n": 3}',
    "string_not_list": '"fc"',
    "unknown_type": '[{"type": "conv", "n": 3}]',
    "missing_type": '[{"n": 3}]',
    "entry_not_object": '[3]',
    "unknown_func": '[{"type": "nonlin", "func": "sigmoid"}]',
    "missing_func": '[{"type": "nonlin"}]',
    "n_zero": '[{"type": "fc", "n": 0}]',
    "n_negative": '[{"type": "fc", "n": -2}]',
    "n_float": '[{"type": "fc", "n": 2.5}]',
    "n_string": '[{"type": "fc", "n": "4"}]',
    "n_missing": '[{"type": "fc"}]',
    "n_bool": '[{"type": "fc", "n": true}]',
}


@pytest.mark.parametrize("spec", list(BAD_SPECS.values()), ids=list(BAD_SPECS))
def test_parse_hidden_spec_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        nn.parse_hidden_spec(spec)


def test_parse_hidden_spec_accepts_defaults():
    for spec, n in ((nn.DEFAULT_HIDDEN_SPEC, 100), (nn.TINY_HIDDEN_SPEC, 64)):
        parsed = nn.parse_hidden_spec(spec)
        assert parsed == [{"type": "fc", "n": n}, {"type": "nonlin", "func": "tanh"},
                          {"type": "fc", "n": n}, {"type": "nonlin", "func": "tanh"}]
    assert nn.parse_hidden_spec("[]") == []


def test_seed_initializers_reproducible():
    def weights():
        return np.concatenate([v.get_value().ravel() for v in _net("seeded")[1].get_variables()])

    nn.seed_initializers(123)
    a = weights()
    nn.seed_initializers(123)
    b = weights()
    nn.seed_initializers(124)
    c = weights()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ------------------------------------------------------------------------- Standardizer

def test_standardizer_running_statistics(rng):
    with nn.variable_scope("std_test"):
        st = nn.Standardizer(4)
    names = [v.name for v in st.get_variables()]
    assert names == ["/std_test/Standardizer/count", "/std_test/Standardizer/mean_1_D",
                     "/std_test/Standardizer/meansq_1_D"]
    assert st.get_trainable_variables() == [] and st.get_num_params() == 0

    x = pt.matrix("x", shape=(None, 4))
    f = thutil.function([x], st.standardize_expr(x))
    X = rng.normal(size=(5, 4)) * 3 + 1
    # before any data: the identity (up to the eps in the denominator)
    np.testing.assert_allclose(st.standardize(X), X, rtol=2e-6)
    np.testing.assert_allclose(f(X), X, rtol=2e-6)

    scale = np.array([0.5, 1., 2., 4.])
    loc = np.array([-1., 0., 3., 10.])
    batches = [rng.normal(size=(n, 4)) * scale + loc for n in (3, 10, 1, 7, 25)]
    for b in batches:
        st.update(b)
    st.update(np.zeros((0, 4)))  # empty batch: no change
    allx = np.concatenate(batches)
    assert st.get_count() == allx.shape[0]
    np.testing.assert_allclose(st.get_mean(), allx.mean(axis=0, keepdims=True), rtol=1e-10)
    np.testing.assert_allclose(st.get_stdev(), allx.std(axis=0, keepdims=True), rtol=1e-10)

    ref = (X - allx.mean(axis=0)) / (allx.std(axis=0) + 1e-6)
    np.testing.assert_allclose(st.standardize(X), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f(X), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(st.unstandardize(ref), X, rtol=1e-9, atol=1e-12)

    with pytest.raises(ValueError):
        st.update(np.zeros((3, 5)))


def test_noop_standardizer_passes_through(rng):
    with nn.variable_scope("noop_test"):
        st = nn.NoOpStandardizer(3)
    assert st.get_variables() == []
    X = rng.normal(size=(4, 3))
    st.update(X * 100)
    np.testing.assert_array_equal(st.standardize(X), X)
    np.testing.assert_array_equal(st.unstandardize(X), X)
    x = pt.matrix("x", shape=(None, 3))
    np.testing.assert_array_equal(thutil.function([x], st.standardize_expr(x) * 1.)(X), X)
