"""Demonstrations in and out: Minari datasets made by Minari's own DataCollector, D4RL-style flat
files (scripts/import_dataset.py, scripts/export_dataset.py, imitation/interop.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from imitation.data import load_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
minari = pytest.importorskip("minari")


@pytest.fixture
def minari_store(tmp_path, monkeypatch):
    """A private Minari store, for this process and the scripts it starts."""
    path = tmp_path / "minari_store"
    path.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def run_script(name, *args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def assert_matches_minari(data, ds, discrete):
    episodes = list(ds.iterate_episodes())
    assert data.num_trajs == len(episodes)
    for b, ep in enumerate(episodes):
        T = len(ep.rewards)
        assert data.len_B[b] == T
        np.testing.assert_array_equal(data.obs_B_T_Do[b, :T], ep.observations[:-1])
        np.testing.assert_array_equal(data.extra["obs_final_B_Do"][b], ep.observations[-1])
        acts = np.asarray(ep.actions).reshape(T, -1)
        np.testing.assert_array_equal(data.a_B_T_Da[b, :T], acts)
        np.testing.assert_array_equal(data.r_B_T[b, :T], ep.rewards)
        assert data.extra["terminated_B"][b] == ep.terminations[-1]
        assert data.extra["truncated_B"][b] == (ep.truncations[-1] and not ep.terminations[-1])
    assert data.discrete == discrete


def test_import_a_discrete_minari_dataset(minari_store, collect_minari, tmp_path):
    ds = collect_minari("cartpole/random-v0", "CartPole-v1", episodes=6, seed=1)
    out = tmp_path / "cp.h5"
    p = run_script("import_dataset.py", "cartpole/random-v0", "--out", out)
    assert p.returncode == 0, p.stderr
    assert "6 episodes" in p.stdout and "6 terminated" in p.stdout
    data = load_dataset(str(out))
    assert data.env_name == "CartPole-v1"  # from Minari's env spec
    assert data.attrs["source"] == "minari:cartpole/random-v0"
    assert data.a_B_T_Da.dtype == np.int64 and data.a_B_T_Da.shape[2] == 1
    assert_matches_minari(data, ds, discrete=True)


def test_import_a_continuous_minari_dataset(minari_store, collect_minari, tmp_path):
    ds = collect_minari("pendulum/random-v0", "Pendulum-v1", episodes=3, seed=2,
                        max_episode_steps=40)
    out = tmp_path / "pendulum.h5"
    p = run_script("import_dataset.py", "pendulum/random-v0", "--out", out)
    assert p.returncode == 0, p.stderr
    data = load_dataset(str(out))
    assert data.env_name == "Pendulum-v1"
    assert list(data.len_B) == [40, 40, 40]
    assert data.extra["truncated_B"].all() and not data.extra["terminated_B"].any()
    assert_matches_minari(data, ds, discrete=False)


@pytest.mark.parametrize("dataset", ["cartpole.h5", "hopper.h5"])
def test_export_then_import_gives_back_the_same_arrays(minari_store, tmp_path, dataset):
    src = os.path.join(REPO, "expert_trajs", dataset)
    ident = f"{dataset[:-3]}/exported-v0"
    p = run_script("export_dataset.py", src, "--minari", ident, "--npz", tmp_path / "flat.npz")
    assert p.returncode == 0, p.stderr
    a = load_dataset(src)
    for source in (ident, tmp_path / "flat.npz"):
        out = tmp_path / f"back_{abs(hash(str(source)))}.h5"
        p = run_script("import_dataset.py", source, "--out", out)
        assert p.returncode == 0, p.stderr
        b = load_dataset(str(out))
        for k in ("obs_B_T_Do", "a_B_T_Da", "r_B_T", "len_B"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
            assert getattr(a, k).dtype == getattr(b, k).dtype
        assert b.env_name == a.env_name
        # Hopper falls in some episodes: shorter than the time limit means terminated
        limit = 1000 if dataset == "hopper.h5" else 200
        np.testing.assert_array_equal(b.extra["truncated_B"], a.len_B >= limit)
        np.testing.assert_array_equal(b.extra["terminated_B"], a.len_B < limit)


def test_a_flat_file_splits_at_terminals_and_timeouts(tmp_path):
    rng = np.random.default_rng(0)
    N = 12
    cols = dict(observations=rng.normal(size=(N, 3)), actions=rng.normal(size=(N, 1)),
                rewards=rng.normal(size=N), terminals=np.zeros(N, bool),
                timeouts=np.zeros(N, bool))
    cols["terminals"][3] = True     # episode 0: rows 0-3, terminated
    cols["timeouts"][8] = True      # episode 1: rows 4-8, truncated
    cols["terminals"][11] = True    # episode 2: rows 9-11
    path = tmp_path / "flat.npz"
    np.savez(path, **cols)
    out = tmp_path / "d.h5"
    p = run_script("import_dataset.py", path, "--out", out, "--env_name", "Pendulum-v1")
    assert p.returncode == 0, p.stderr
    d = load_dataset(str(out))
    assert list(d.len_B) == [4, 5, 3]
    np.testing.assert_array_equal(d.obs_B_T_Do[1, :5], cols["observations"][4:9])
    np.testing.assert_array_equal(d.a_B_T_Da[2, :3], cols["actions"][9:])
    assert list(d.extra["terminated_B"]) == [True, False, True]
    assert list(d.extra["truncated_B"]) == [False, True, False]


def _flat(tmp_path, name="bad.npz", n=6, **change):
    rng = np.random.default_rng(1)
    cols = dict(observations=rng.normal(size=(n, 3)), actions=rng.normal(size=(n, 1)),
                rewards=rng.normal(size=n), terminals=np.eye(1, n, n - 1, dtype=bool)[0],
                timeouts=np.zeros(n, bool))
    cols.update(change)
    cols = {k: v for k, v in cols.items() if v is not None}
    path = tmp_path / name
    np.savez(path, **cols)
    return path


@pytest.mark.parametrize("case, message", [
    ("unknown_id", "no Minari dataset 'nowhere/nothing-v0'"),
    ("missing", "missing timeouts"),
    ("lengths", "columns of different lengths"),
    ("never_ends", "never ends"),
    ("nan", "rewards contains NaN"),
    ("spaces", "observations have 3 dims but CartPole-v1 gives 4"),
    ("no_env", "pass --env_name"),
])
def test_bad_input_is_one_line_and_leaves_out_alone(minari_store, tmp_path, case, message):
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    args = {
        "unknown_id": lambda: ["nowhere/nothing-v0"],
        "missing": lambda: [_flat(tmp_path, timeouts=None), "--env_name", "Pendulum-v1"],
        "lengths": lambda: [_flat(tmp_path, rewards=np.zeros(5)), "--env_name", "Pendulum-v1"],
        "never_ends": lambda: [_flat(tmp_path, terminals=np.zeros(6, bool)), "--env_name",
                               "Pendulum-v1"],
        "nan": lambda: [_flat(tmp_path, rewards=np.array([0, 1, np.nan, 0, 0, 0.])),
                        "--env_name", "Pendulum-v1"],
        "spaces": lambda: [_flat(tmp_path), "--env_name", "CartPole-v1"],
        "no_env": lambda: [_flat(tmp_path)],
    }[case]()
    p = run_script("import_dataset.py", *args, "--out", out, "--force")
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert out.read_bytes() == b"precious"


def test_drop_unfinished_keeps_the_finished_episodes(tmp_path):
    term = np.zeros(6, bool)
    term[2] = True  # rows 3-5 never end
    path = _flat(tmp_path, terminals=term)
    out = tmp_path / "d.h5"
    p = run_script("import_dataset.py", path, "--out", out, "--env_name", "Pendulum-v1",
                   "--drop_unfinished")
    assert p.returncode == 0, p.stderr
    assert list(load_dataset(str(out)).len_B) == [3]


@pytest.mark.slow
def test_gail_learns_from_an_imported_minari_dataset(minari_store, tmp_path):
    """The shipped CartPole expert data, through Minari and back, trains GAIL to the expert."""
    src = os.path.join(REPO, "expert_trajs", "cartpole.h5")
    assert run_script("export_dataset.py", src, "--minari", "cartpole/expert-v0").returncode == 0
    data = tmp_path / "imported.h5"
    p = run_script("import_dataset.py", "cartpole/expert-v0", "--out", data)
    assert p.returncode == 0, p.stderr
    log = tmp_path / "gail.h5"
    p = run_script("imitate_mj.py", "--mode", "ga", "--data", data, "--min_total_sa", 5000,
                   "--max_iter", 201, "--seed", 0, "--log", log, "--save_freq", 100,
                   timeout=1800)
    assert p.returncode == 0, p.stderr
    from imitation.training import read_log

    rows = read_log(str(log)).rows
    assert rows["trueret"][-10:].mean() >= 190, rows["trueret"][-10:]
