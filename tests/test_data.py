"""imitation.data: the expert dataset file (design.md section 6), subsampling, and its input
errors."""
import json
import os

import h5py
import numpy as np
import pytest

from imitation.data import check_fits_mdp, load_dataset, subsample, write_dataset
from imitation.envs import NO_TIME_LIMIT
from imitation.errors import UserError
from policyopt import TrajBatch, Trajectory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _batch(lengths, Do=4, discrete=True, Da=2, n_actions=2, seed=0):
    """A TrajBatch whose obs encode (trajectory, time): obs[..., 0] = b, obs[..., 1] = t."""
    rng = np.random.default_rng(seed)
    trajs = []
    for b, T in enumerate(lengths):
        obs = rng.normal(size=(T, Do))
        obs[:, 0] = b
        obs[:, 1] = np.arange(T)
        if discrete:
            a = rng.integers(0, n_actions, size=(T, 1)).astype(np.int32)
            adist = np.log(np.full((T, n_actions), 1. / n_actions))
        else:
            a = rng.normal(size=(T, Da))
            adist = np.concatenate([np.zeros((T, Da)), np.ones((T, Da))], axis=1)
        trajs.append(Trajectory(obs, obs.copy(), adist, a, rng.normal(size=T)))
    return TrajBatch.from_trajs(trajs)


def _write(path, lengths=(5, 8, 3), **kw):
    batch = _batch(lengths, **{k: v for k, v in kw.items() if k != "attrs"})
    attrs = kw.get("attrs", {"env_name": "CartPole-v0", "seed": 3, "return_mean": 1.5,
                             "obs_adapter": None, "extra": {"a": 1}})
    write_dataset(str(path), batch, attrs)
    return batch


def _raw_write(path, **arrays):
    with h5py.File(str(path), "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        f.attrs["env_name"] = "CartPole-v0"


def _good_arrays(B=3, T=6, Do=4):
    return dict(obs_B_T_Do=np.zeros((B, T, Do)), a_B_T_Da=np.zeros((B, T, 1), dtype=np.int64),
                r_B_T=np.ones((B, T)), len_B=np.full(B, T, dtype=np.int32))


def _assert_one_line(excinfo, *fragments):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, msg


# ------------------------------------------------------------------------ write / load

def test_round_trip_discrete(tmp_path):
    path = tmp_path / "d.h5"
    batch = _write(path, lengths=(5, 8, 3))
    data = load_dataset(str(path))
    assert data.num_trajs == 3
    assert data.obs_B_T_Do.shape == (3, 8, 4)
    assert data.a_B_T_Da.shape == (3, 8, 1)
    assert np.issubdtype(data.a_B_T_Da.dtype, np.integer) and data.discrete
    assert data.r_B_T.shape == (3, 8)
    np.testing.assert_array_equal(data.len_B, [5, 8, 3])
    with h5py.File(str(path), "r") as f:
        assert f["len_B"].dtype == np.int32
        assert np.issubdtype(f["a_B_T_Da"].dtype, np.integer)
        assert np.issubdtype(f["obs_B_T_Do"].dtype, np.floating)
    for b, T in enumerate((5, 8, 3)):
        np.testing.assert_array_equal(data.obs_B_T_Do[b, :T], batch.obs[b])
        np.testing.assert_array_equal(data.a_B_T_Da[b, :T], batch.a[b])
        np.testing.assert_array_equal(data.r_B_T[b, :T], batch.r[b])
        # right-padded with zeros
        assert np.all(data.obs_B_T_Do[b, T:] == 0) and np.all(data.a_B_T_Da[b, T:] == 0)
        assert np.all(data.r_B_T[b, T:] == 0)
    np.testing.assert_allclose(data.returns_B, batch.returns)
    assert data.env_name == "CartPole-v0"
    assert data.attrs["seed"] == 3 and data.attrs["return_mean"] == 1.5
    assert "obs_adapter" not in data.attrs and data.obs_adapter is None  # None attrs skipped
    assert json.loads(data.attrs["extra"]) == {"a": 1}  # non-scalar attrs stored as JSON
    assert isinstance(data.env_name, str)
    # the libraries that wrote it, read back from the installed packages' metadata
    from importlib import metadata

    versions = json.loads(data.attrs["versions"])
    assert versions["numpy"] == metadata.version("numpy") == np.__version__
    assert versions["mujoco"] == metadata.version("mujoco")
    assert set(versions) == {"python", "numpy", "scipy", "pytensor", "gymnasium", "mujoco"}


def test_round_trip_continuous(tmp_path):
    path = tmp_path / "c.h5"
    batch = _write(path, lengths=(4, 2), discrete=False, Da=3, Do=5,
                   attrs={"env_name": "Hopper-v5"})
    data = load_dataset(str(path))
    assert data.obs_B_T_Do.shape == (2, 4, 5) and data.a_B_T_Da.shape == (2, 4, 3)
    assert not data.discrete and np.issubdtype(data.a_B_T_Da.dtype, np.floating)
    np.testing.assert_array_equal(data.a_B_T_Da[1, :2], batch.a[1])
    assert data.env_name == "Hopper-v5"


def test_write_dataset_does_not_leave_partial_files(tmp_path):
    path = tmp_path / "d.h5"
    _write(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]


# ---------------------------------------------------------------------------- subsample

def _kept_bt(obs_N):
    return obs_N[:, 0].astype(int), obs_N[:, 1].astype(int)


@pytest.mark.parametrize("freq", [1, 3, 7])
def test_subsample_every_freq_from_per_trajectory_offset(tmp_path, freq):
    lengths = (20, 13, 2, 30, 9)
    path = tmp_path / "d.h5"
    _write(path, lengths=lengths)
    data = load_dataset(str(path))
    obs, a, t = subsample(data, 4, freq, seed=5)
    b_N, t_N = _kept_bt(obs)
    np.testing.assert_array_equal(t, t_N)  # the time index of every kept pair
    assert t.dtype == np.float64
    assert set(b_N) == {0, 1, 2, 3}  # the first limit_trajs trajectories, every one kept
    np.testing.assert_array_equal(b_N, np.sort(b_N))  # stacked in trajectory order
    for b in range(4):
        tb = t_N[b_N == b]
        assert len(tb) >= 1
        assert tb.min() < freq and tb.max() < lengths[b]
        offset = tb.min()
        assert 0 <= offset < freq
        np.testing.assert_array_equal(tb, np.arange(offset, lengths[b], freq))
        np.testing.assert_array_equal(a[b_N == b], data.a_B_T_Da[b, tb])
    if freq == 1:
        assert len(t) == sum(lengths[:4])


def test_subsample_deterministic_for_a_seed(tmp_path):
    path = tmp_path / "d.h5"
    _write(path, lengths=(50,) * 8)
    data = load_dataset(str(path))
    o1, a1, t1 = subsample(data, 8, 10, seed=1)
    o2, a2, t2 = subsample(data, 8, 10, seed=1)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(t1, t2)
    offsets = [subsample(data, 8, 10, seed=s)[2][:1] for s in range(6)]
    assert len({float(x[0]) for x in offsets}) > 1  # the seed matters


def test_subsample_offsets_are_the_originals(tmp_path):
    """The original drew offsets from RandomState(0): 4 trajectories every 20 steps start at
    12, 15, 0, 3 (design.md section 7), and a longer prefix keeps those first four."""
    path = tmp_path / "d.h5"
    _write(path, lengths=(100,) * 25)
    data = load_dataset(str(path))
    for n in (4, 25):
        obs, _, t = subsample(data, n, 20)
        b_N = obs[:, 0].astype(int)
        firsts = [t[b_N == b].min() for b in range(4)]
        assert firsts == [12, 15, 0, 3]


def test_imitate_uses_the_same_expert_pairs_for_every_seed(tmp_path):
    """--seed changes the training randomness, not the expert pairs. Behavioural cloning sets
    the policy's standardizer from the subsampled pairs and never updates it, so its statistics
    are the same for seeds 0 and 3 while the initial weights differ."""
    import subprocess
    import sys

    saved = []
    for seed in (0, 3):
        log = tmp_path / f"s{seed}.h5"
        res = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "imitate_mj.py"),
                              "--mode", "bclone", "--data",
                              os.path.join(REPO, "expert_trajs", "cartpole.h5"), "--limit_trajs",
                              "4", "--data_subsamp_freq", "20", "--max_iter", "1",
                              "--bclone_eval_ntrajs", "1", "--tiny_policy", "--num_workers", "0",
                              "--seed", str(seed), "--log", str(log)],
                             capture_output=True, text=True, cwd=REPO)
        assert res.returncode == 0, res.stderr
        with h5py.File(log, "r") as f:
            snap = f["snapshots"][sorted(f["snapshots"])[-1]]["GibbsPolicy"]
            saved.append((dict(_datasets_under(snap, "obsnorm")),
                          dict(_datasets_under(snap, "hidden"))))
    (norm0, w0), (norm3, w3) = saved
    assert len(norm0) == 3 and norm0.keys() == norm3.keys()
    assert norm0["obsnorm/Standardizer/count"] == 4 * 200 // 20  # 4 full-length trajectories
    for k in norm0:
        np.testing.assert_array_equal(norm0[k], norm3[k])
    assert not np.allclose(w0["hidden/FeedforwardNet/layer_0/AffineLayer/W"],
                           w3["hidden/FeedforwardNet/layer_0/AffineLayer/W"])


def _datasets_under(group, word):
    found = []
    group.visititems(lambda name, obj: found.append((name, obj[()]))
                     if isinstance(obj, h5py.Dataset) and word in name else None)
    return found


def test_subsample_all_trajectories_by_default(tmp_path):
    path = tmp_path / "d.h5"
    _write(path, lengths=(5, 6, 7))
    data = load_dataset(str(path))
    obs, _, _ = subsample(data, None, 1)
    assert len(obs) == 18


# ------------------------------------------------------------------------------ errors

def test_missing_file(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset(str(tmp_path / "nope.h5"))
    _assert_one_line(e, "nope.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("this is not HDF5\n" * 10)
    with pytest.raises(UserError) as e:
        load_dataset(str(path))
    _assert_one_line(e, "text.h5")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset(str(tmp_path))
    _assert_one_line(e)


def test_hdf5_without_datasets(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(str(path), "w") as f:
        f.create_dataset("something_else", data=np.zeros(3))
    with pytest.raises(UserError) as e:
        load_dataset(str(path))
    _assert_one_line(e, "obs_B_T_Do")


def test_hdf5_missing_one_dataset(tmp_path):
    path = tmp_path / "partial.h5"
    arrays = _good_arrays()
    del arrays["len_B"]
    _raw_write(path, **arrays)
    with pytest.raises(UserError) as e:
        load_dataset(str(path))
    _assert_one_line(e, "len_B")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_observations(tmp_path, bad):
    path = tmp_path / "nan.h5"
    arrays = _good_arrays()
    arrays["obs_B_T_Do"][1, 2, 3] = bad
    _raw_write(path, **arrays)
    with pytest.raises(UserError) as e:
        load_dataset(str(path))
    _assert_one_line(e, "obs_B_T_Do")


def test_inconsistent_shapes(tmp_path):
    path = tmp_path / "shapes.h5"
    arrays = _good_arrays()
    arrays["r_B_T"] = np.ones((3, 5))
    _raw_write(path, **arrays)
    with pytest.raises(UserError) as e:
        load_dataset(str(path))
    _assert_one_line(e)


def test_bad_lengths(tmp_path):
    path = tmp_path / "lens.h5"
    arrays = _good_arrays()
    arrays["len_B"] = np.array([6, 7, 2], dtype=np.int32)  # 7 > T
    _raw_write(path, **arrays)
    with pytest.raises(UserError) as e:
        load_dataset(str(path))
    _assert_one_line(e, "len_B")


@pytest.mark.parametrize("limit", [4, 100, 0, -1])
def test_limit_trajs_out_of_range(tmp_path, limit):
    path = tmp_path / "d.h5"
    _write(path, lengths=(5, 6, 7))
    data = load_dataset(str(path))
    with pytest.raises(UserError) as e:
        subsample(data, limit, 1)
    _assert_one_line(e, "limit_trajs")


@pytest.mark.parametrize("freq", [0, -3])
def test_subsamp_freq_not_positive(tmp_path, freq):
    path = tmp_path / "d.h5"
    _write(path, lengths=(5, 6, 7))
    data = load_dataset(str(path))
    with pytest.raises(UserError) as e:
        subsample(data, 2, freq)
    _assert_one_line(e, "data_subsamp_freq")


# --------------------------------------------------------------------- check_fits_mdp

@pytest.fixture(scope="module")
def cartpole_mdp():
    from imitation.envs import GymMDP

    mdp = GymMDP("CartPole-v0", num_workers=0)
    yield mdp
    mdp.close()


@pytest.fixture(scope="module")
def pendulum_mdp():
    from imitation.envs import GymMDP

    mdp = GymMDP("Pendulum-v1", num_workers=0)
    yield mdp
    mdp.close()


def test_check_fits_mdp_accepts_matching_data(tmp_path, cartpole_mdp, pendulum_mdp):
    path = tmp_path / "ok.h5"
    _write(path, Do=4, discrete=True, n_actions=2)
    check_fits_mdp(load_dataset(str(path)), cartpole_mdp)
    path = tmp_path / "okc.h5"
    _write(path, Do=3, discrete=False, Da=1)
    check_fits_mdp(load_dataset(str(path)), pendulum_mdp)


def test_check_fits_mdp_obs_dim_mismatch(tmp_path, cartpole_mdp):
    path = tmp_path / "d.h5"
    _write(path, Do=5)
    with pytest.raises(UserError) as e:
        check_fits_mdp(load_dataset(str(path)), cartpole_mdp)
    _assert_one_line(e, "5")


def test_check_fits_mdp_continuous_actions_for_discrete_env(tmp_path, cartpole_mdp):
    path = tmp_path / "d.h5"
    _write(path, Do=4, discrete=False, Da=2)
    with pytest.raises(UserError) as e:
        check_fits_mdp(load_dataset(str(path)), cartpole_mdp)
    _assert_one_line(e)


def test_check_fits_mdp_action_out_of_range(tmp_path, cartpole_mdp):
    path = tmp_path / "d.h5"
    _write(path, Do=4, discrete=True, n_actions=3, lengths=(40, 40))
    data = load_dataset(str(path))
    assert data.a_B_T_Da.max() == 2
    with pytest.raises(UserError) as e:
        check_fits_mdp(data, cartpole_mdp)
    _assert_one_line(e)


def test_check_fits_mdp_action_dim_mismatch_continuous(tmp_path, pendulum_mdp):
    path = tmp_path / "d.h5"
    _write(path, Do=3, discrete=False, Da=2)
    with pytest.raises(UserError) as e:
        check_fits_mdp(load_dataset(str(path)), pendulum_mdp)
    _assert_one_line(e, "2")
    path = tmp_path / "d2.h5"
    _write(path, Do=3, discrete=True)
    with pytest.raises(UserError) as e:
        check_fits_mdp(load_dataset(str(path)), pendulum_mdp)
    _assert_one_line(e)


# ------------------------------------------------- sample_expert.py --full_length_only

class _ScriptedMDP:
    """Stands in for GymMDP: sim_mp hands out trajectories of the scripted lengths in order,
    at least the requested number per call (like the real sampler)."""

    def __init__(self, lengths, horizon):
        self.lengths, self.max_len = list(lengths), horizon
        self.spec = type("Spec", (), {"env_name": "Scripted-v0"})()

    def horizon(self, cfg_max_traj_len=None):
        return self.max_len

    def sim_mp(self, policy, obsfeat_fn, cfg, rng, deterministic=False, progress=None):
        n = cfg.min_num_trajs
        taken, self.lengths = self.lengths[:n], self.lengths[n:]
        return _batch(taken, seed=len(self.lengths))


def _full_length(lengths, num_trajs, horizon=5):
    from imitation.experts import _sample_trajs

    return _sample_trajs(_ScriptedMDP(lengths, horizon), None, num_trajs, None, False, True,
                            None, None)


def test_full_length_only_keeps_full_trajectories_in_sampled_order():
    # Lengths 5 are full (horizon 5); a second round is needed after two of four fell short.
    batch, dropped = _full_length([5, 2, 5, 3, 5, 5, 1], 4)
    np.testing.assert_array_equal(batch.obs.lengths, [5, 5, 5, 5])
    assert dropped == 2
    # obs[..., 1] is the time index: every kept trajectory starts at t = 0 and runs to 4.
    np.testing.assert_array_equal(batch.obs.stacked[:, 1], np.tile(np.arange(5), 4))


def test_full_length_only_gives_up_when_the_expert_rarely_reaches_the_limit():
    with pytest.raises(UserError, match="only 1 of 20 trajectories reached the time limit"):
        _full_length([5] + [2] * 100, 2)


def test_full_length_only_needs_a_time_limit():
    with pytest.raises(UserError, match="no time limit"):
        _full_length([5], 1, horizon=NO_TIME_LIMIT)


def test_full_length_only_on_the_original_hopper_expert(tmp_path, hopper_expert_data):
    """On Hopper-v5 the original expert falls in some episodes (one of the first four with
    seed 0); the filtered dataset keeps the same seed's full-length trajectories, unchanged
    and in order, and samples on to replace the fallen ones."""
    from conftest import _expert_file

    from imitation.experts import sample_dataset

    policy = _expert_file("modern", "log_Hopper-v0_3.h5") + "/snapshots/iter0000500"
    out = str(tmp_path / "hopper_full.h5")
    sample_dataset(
        policy, out, 4, env_name="Hopper-v5", seed=0, num_workers=0, full_length_only=True,
        verbose=False)
    with h5py.File(hopper_expert_data, "r") as f:
        len_all, obs_all = f["len_B"][:], f["obs_B_T_Do"][:]
    with h5py.File(out, "r") as f:
        len_full, obs_full = f["len_B"][:], f["obs_B_T_Do"][:]
        dropped, rets = int(f.attrs["dropped_trajs"]), f["r_B_T"][:].sum(1)
        assert int(f.attrs["full_length_only"]) == 1
        np.testing.assert_allclose(f.attrs["return_mean"], rets.mean())
    assert np.all(len_full == 1000)
    assert dropped == np.sum(len_all < 1000) >= 1
    kept_before = obs_all[len_all == 1000]
    np.testing.assert_array_equal(obs_full[:len(kept_before)], kept_before)
