"""Nothing lost, nothing silently wrong: one writer per log, exact resumes on the same data only,
environment kwargs that survive every import and export, and one clear line (exit 2) instead of
a traceback for damaged files, broken environments, unwritable outputs and a full disk.

Scripts run as real subprocesses, as a user runs them."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from imitation.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
DATASET = os.path.join(REPO, "expert_trajs", "cartpole.h5")
RL = ["--env_name", "CartPole-v1", "--tiny_policy", "--min_total_sa", "300", "--num_workers", "0"]
GA = ["--mode", "ga", "--tiny_policy", "--min_total_sa", "300", "--num_workers", "0"]


def cmd(name, *args):
    return [sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)]


def run_script(name, *args, cwd=REPO, env=None, preexec_fn=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [TESTS, os.environ.get("PYTHONPATH", "")]), **(env or {}))
    return subprocess.run(cmd(name, *args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=preexec_fn)


def one_error_line(p):
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr
    # progress bars (tqdm, redrawn with \r) and checkout warnings aside
    lines = [ln for ln in re.split(r"[\r\n]", p.stderr) if ln.strip()
             and not ln.startswith("warning:") and not re.search(r"\d+%\|", ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def ok(p):
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------ one writer per output

def test_a_second_run_on_the_same_log_is_refused_at_once(tmp_path):
    log = tmp_path / "run.h5"
    first = subprocess.Popen(cmd("run_rl_mj.py", *RL, "--max_iter", "500", "--log", log),
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run.h5.lock").exists():
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.05)
        for extra in ([], ["--resume"]):
            line = one_error_line(run_script("run_rl_mj.py", *RL, "--max_iter", "3",
                                             "--log", log, *extra))
            assert "is in use by another run" in line and str(first.pid) in line, line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel released the killed run's lock: a new run on the log is not blocked by it
    from imitation import locks

    assert locks.lock_output(str(log))
    locks.release_output(str(log))
    assert not (tmp_path / "run.h5.lock").exists()


def test_a_finished_run_leaves_no_lock_and_stale_temporaries_go_at_resume(tmp_path):
    log = tmp_path / "run.h5"
    ok(run_script("run_rl_mj.py", *RL, "--max_iter", "2", "--log", log))
    assert not (tmp_path / "run.h5.lock").exists()
    stale = tmp_path / f"run.h5.tmp-{dead_pid()}"     # a save SIGKILLed mid-way
    stale.write_bytes(b"half a log")
    ok(run_script("run_rl_mj.py", "--resume", "--log", log, "--max_iter", "3"))
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_resume_refuses_a_dataset_replaced_at_the_same_path(tmp_path):
    data, log = tmp_path / "data.h5", tmp_path / "ga.h5"
    shutil.copy(DATASET, data)
    ok(run_script("imitate_mj.py", *GA, "--data", data, "--max_iter", "2", "--log", log))
    with h5py.File(data, "a") as f:        # other data under the same name
        f["obs_B_T_Do"][0, 0, 0] += 0.5
    before = log.read_bytes()
    line = one_error_line(run_script("imitate_mj.py", "--resume", "--log", log,
                                     "--max_iter", "3"))
    assert "the data file differs from the one" in line and "other data" in line
    assert log.read_bytes() == before


# -------------------------------------------------------------- environment kwargs survive

@pytest.fixture
def minari_store(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    path = tmp_path / "minari_store"
    path.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def env_kwargs_of(path):
    from imitation.data import load_dataset
    from imitation.envs import parse_env_kwargs

    return parse_env_kwargs(load_dataset(str(path)).attrs.get("env_kwargs"))


def test_env_kwargs_survive_minari_and_flat_round_trips(minari_store, collect_minari,
                                                        tmp_path):
    collect_minari("pendulum/g2-v0", "Pendulum-v1", 2, seed=3, g=2.0)
    a = tmp_path / "a.h5"
    p = ok(run_script("import_dataset.py", "pendulum/g2-v0", "--out", a))
    assert "made with {'g': 2.0}" in p.stdout
    assert env_kwargs_of(a) == {"g": 2.0}
    # training builds the environment with them
    from imitation.experiment import ImitationConfig, build_imitation

    with build_imitation(ImitationConfig(mode="bclone", data=str(a), tiny_policy=True,
                                         num_workers=0)) as exp:
        from imitation.envs import parse_env_kwargs

        assert parse_env_kwargs(exp.config.env_kwargs) == {"g": 2.0}
        assert exp.mdp.spec.make_kwargs["g"] == 2.0
    # flat export and back
    npz = tmp_path / "a.npz"
    ok(run_script("export_dataset.py", a, "--npz", npz))
    b = tmp_path / "b.h5"
    ok(run_script("import_dataset.py", npz, "--out", b))
    assert env_kwargs_of(b) == {"g": 2.0}
    # Minari export and back; --env_kwargs merges over the source's
    ok(run_script("export_dataset.py", b, "--minari", "pendulum/again-v0"))
    c = tmp_path / "c.h5"
    ok(run_script("import_dataset.py", "pendulum/again-v0", "--out", c,
                  "--env_kwargs", '{"render_mode": null}'))
    assert env_kwargs_of(c) == {"g": 2.0, "render_mode": None}


def test_a_module_env_dataset_exports_its_environment(minari_store, tmp_path):
    """A dataset of 'user_envs:UserLine-v0' made with kwargs: the Minari export records the
    environment (its entry point names the module), and an import in a fresh process gives
    back the module-prefixed id and the kwargs."""
    from imitation.data import write_arrays

    rng = np.random.default_rng(0)
    B, T = 3, 25
    src = tmp_path / "line.h5"
    write_arrays(str(src), rng.normal(size=(B, T, 2)), rng.uniform(-1, 1, (B, T, 1)),
                 rng.normal(size=(B, T)), np.full(B, T),
                 {"env_name": "user_envs:UserLine-v0", "env_kwargs": {"target": 1.5}})
    ok(run_script("export_dataset.py", src, "--minari", "user/line-v0"))
    out = tmp_path / "back.h5"
    ok(run_script("import_dataset.py", "user/line-v0", "--out", out))
    from imitation.data import load_dataset

    back = load_dataset(str(out))
    assert back.env_name == "user_envs:UserLine-v0"
    assert env_kwargs_of(out) == {"target": 1.5}


def test_eval_policy_merges_env_kwargs_over_the_run_s_and_shows_them(tmp_path):
    log = tmp_path / "pend.h5"
    ok(run_script("run_rl_mj.py", "--env_name", "Pendulum-v1", "--env_kwargs", '{"g": 2.0}',
                  "--tiny_policy", "--min_total_sa", "200", "--num_workers", "0",
                  "--max_iter", "1", "--log", log))
    p = ok(run_script("eval_policy.py", log, "--env_kwargs", '{"render_mode": null}',
                      "--num_trajs", "1", "--num_workers", "0"))
    assert "made with {'g': 2.0, 'render_mode': None}" in p.stdout.splitlines()[0]


def test_a_minari_export_with_an_invalid_id_leaves_the_store_clean(minari_store, tmp_path):
    line = one_error_line(run_script("export_dataset.py", DATASET, "--minari", "not a valid id"))
    assert "not a Minari dataset id" in line
    assert list(minari_store.iterdir()) == []
    ok(run_script("export_dataset.py", DATASET, "--minari", "cartpole/fine-v0"))
    ok(run_script("import_dataset.py", "cartpole/fine-v0", "--out", tmp_path / "back.h5"))


# --------------------------------------------------------------------- flat files, actions

def flat(tmp_path, name="f.npz", n=6, **change):
    rng = np.random.default_rng(1)
    cols = dict(observations=rng.normal(size=(n, 3)), actions=rng.uniform(-1, 1, size=n),
                rewards=rng.normal(size=n), terminals=np.eye(1, n, n - 1, dtype=bool)[0],
                timeouts=np.zeros(n, bool))
    cols.update(change)
    path = tmp_path / name
    np.savez(path, **cols)
    return path


def test_one_dimensional_float_actions_follow_the_environment(tmp_path):
    from imitation.data import load_dataset

    out = tmp_path / "pend.h5"
    ok(run_script("import_dataset.py", flat(tmp_path), "--env_name", "Pendulum-v1",
                  "--out", out))
    d = load_dataset(str(out))
    assert not d.discrete and d.a_B_T_Da.shape[2] == 1
    cp = flat(tmp_path, "cp.npz", observations=np.zeros((6, 4)),
              actions=np.array([0., 1., 1., 0., 1., 0.]))
    ok(run_script("import_dataset.py", cp, "--env_name", "CartPole-v1", "--out",
                  tmp_path / "cp.h5"))
    d = load_dataset(str(tmp_path / "cp.h5"))
    assert d.discrete and d.a_B_T_Da[0, :6, 0].tolist() == [0, 1, 1, 0, 1, 0]
    bad = flat(tmp_path, "bad.npz", observations=np.zeros((6, 4)))
    line = one_error_line(run_script("import_dataset.py", bad, "--env_name", "CartPole-v1",
                                     "--out", tmp_path / "x.h5"))
    assert "has discrete actions but the dataset's actions are float64" in line


@pytest.mark.parametrize("change, message", [
    (dict(rewards=np.array(["a"] * 6)), "column rewards holds <U1 values, not numbers"),
    (dict(rewards=np.zeros((6, 2))), "column rewards has shape (6, 2)"),
    (dict(terminals=np.array(True)), "column terminals has shape ()"),
    (dict(actions=np.zeros(6, dtype=[("x", float), ("y", float)])),
     "column actions holds"),
], ids=["string", "2-d", "scalar", "compound"])
def test_malformed_flat_columns_are_one_line(tmp_path, change, message):
    p = run_script("import_dataset.py", flat(tmp_path, **change), "--env_name", "Pendulum-v1",
                   "--out", tmp_path / "out.h5")
    assert message in one_error_line(p)
    assert not (tmp_path / "out.h5").exists()


def test_import_says_how_training_subsamples(tmp_path):
    out = tmp_path / "pend.h5"
    p = ok(run_script("import_dataset.py", flat(tmp_path), "--env_name", "Pendulum-v1",
                      "--out", out))
    assert "every 20th pair" in p.stdout
    ok(run_script("import_dataset.py", flat(tmp_path), "--env_name", "Pendulum-v1",
                  "--out", tmp_path / "f1.h5", "--data_subsamp_freq", "1"))
    with h5py.File(tmp_path / "f1.h5", "r") as f:
        assert int(f.attrs["data_subsamp_freq"]) == 1


# ----------------------------------------------------------------------- damaged files

def test_a_truncated_minari_dataset_is_one_line(minari_store, collect_minari, tmp_path):
    collect_minari("cartpole/trunc-v0", "CartPole-v1", 3, seed=0)
    main = next(minari_store.rglob("main_data.hdf5"))
    size = main.stat().st_size
    with open(main, "r+b") as f:
        f.truncate(size // 2)
    line = one_error_line(run_script("import_dataset.py", "cartpole/trunc-v0", "--out",
                                     tmp_path / "out.h5"))
    assert "Minari dataset cartpole/trunc-v0 cannot be read" in line


def test_a_corrupt_compressed_chunk_is_one_line(tmp_path):
    data = tmp_path / "data.h5"
    shutil.copy(DATASET, data)
    with h5py.File(data, "r") as f:
        info = f["obs_B_T_Do"].id.get_chunk_info(0)
    with open(data, "r+b") as f:
        f.seek(info.byte_offset + 8)
        f.write(b"\xff" * 64)
    line = one_error_line(run_script("imitate_mj.py", *GA, "--data", data, "--max_iter", "1"))
    assert "data.h5: the file is damaged" in line


# ------------------------------------------------------------------ broken environments

def test_env_kwargs_of_the_wrong_type_fail_before_any_work(tmp_path):
    line = one_error_line(run_script("run_rl_mj.py", "--env_name", "Pendulum-v1",
                                     "--env_kwargs", '{"g": "x"}', "--log", tmp_path / "l.h5"))
    assert "fails at its first step" in line and "TypeError" in line
    assert not list(tmp_path.iterdir())


def test_an_environment_that_returns_nan_is_one_line():
    line = one_error_line(run_script("run_rl_mj.py", "--env_name", "user_envs:NanLine-v0",
                                     "--tiny_policy", "--min_total_sa", "200",
                                     "--num_workers", "0", "--max_iter", "2"))
    assert "NanLine-v0" in line and "NaN" in line


def test_a_module_that_exits_on_import_is_one_line():
    line = one_error_line(run_script("run_rl_mj.py", "--env_name",
                                     "user_envs.exits_on_import:Env-v0"))
    assert "called sys.exit(0)" in line


def test_a_module_env_is_found_in_the_current_directory(tmp_path):
    shutil.copy(os.path.join(TESTS, "user_envs", "__init__.py"), tmp_path / "my_line.py")
    text = (tmp_path / "my_line.py").read_text().replace('"user_envs:', '"my_line:').replace(
        '"UserLine-v0"', '"MyLine-v0"').replace('"NanLine-v0"', '"MyNanLine-v0"')
    (tmp_path / "my_line.py").write_text(text)
    ok(run_script("run_rl_mj.py", "--env_name", "my_line:MyLine-v0", "--tiny_policy",
                  "--min_total_sa", "100", "--num_workers", "0", "--max_iter", "1",
                  cwd=tmp_path))
    line = one_error_line(run_script("run_rl_mj.py", "--env_name", "no_such_mod:X-v0",
                                     cwd=tmp_path))
    assert "no module no_such_mod" in line and "PYTHONPATH" in line


# ------------------------------------------------------------- outputs that cannot be written

def test_unwritable_outputs_are_found_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args, message in (
            (RL + ["--tensorboard", afile / "tb"], "--tensorboard"),
            (RL + ["--tensorboard", afile], "is a file, not a directory"),
            (RL + ["--log", afile / "sub" / "l.h5"], "is a file, not a directory")):
        assert message in one_error_line(run_script("run_rl_mj.py", *args))
    p = run_script("showlog.py", DATASET, "--csv", tmp_path / "missing" / "out.csv")
    assert "does not exist" in one_error_line(p)
    p = run_script("import_dataset.py", flat(tmp_path), "--env_name", "Pendulum-v1",
                   "--out", tmp_path / "missing" / "o.h5")
    assert "does not exist" in one_error_line(p)


def test_a_read_only_output_directory_is_refused(tmp_path, monkeypatch):
    """Root ignores permission bits, so the test makes os.access say what a read-only
    directory says to a user."""
    from imitation import cli

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(
        str(tmp_path)) else real(p, mode))
    with pytest.raises(UserError, match="is not writable"):
        cli.check_writable_output("--log", str(tmp_path / "a" / "log.h5"), create_parents=True)
    with pytest.raises(UserError, match="is not writable"):
        cli.check_writable_output("--tensorboard", str(tmp_path / "tb"), directory=True)


# A full disk, for real: the script runs unchanged (runpy), but its first atomic HDF5 save
# lowers the process's file-size limit first (RLIMIT_FSIZE; SIGXFSZ ignored), so that save's
# write fails in the kernel (EFBIG) as a full disk's would (ENOSPC). Set at the save, not at
# the start: compiling the graphs writes to PyTensor's cache, which must still work.
FULL_DISK_DRIVER = """
import resource, runpy, signal, sys
import imitation.data, policyopt.util
limit, script = int(sys.argv[1]), sys.argv[2]
orig = policyopt.util.write_h5_atomic
def limited(*args, **kwargs):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return orig(*args, **kwargs)
policyopt.util.write_h5_atomic = imitation.data.write_h5_atomic = limited
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def run_with_full_disk(limit, name, *args):
    return subprocess.run([sys.executable, "-c", FULL_DISK_DRIVER, str(limit),
                           os.path.join(REPO, "scripts", name), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_a_full_disk_while_writing_a_dataset_is_one_line(tmp_path):
    policy = os.path.join(REPO, "expert_trajs", "policies", "cartpole.h5")
    args = [policy, "--env_name", "CartPole-v1", "--num_trajs", "3", "--num_workers", "0"]
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    p = run_with_full_disk(1024, "sample_expert.py", *args, "--out", out, "--force")
    assert "cannot write the dataset" in one_error_line(p)
    assert out.read_bytes() == b"precious"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.h5"]


def test_a_full_disk_while_saving_a_log_keeps_the_last_save(tmp_path):
    log = tmp_path / "run.h5"
    ok(run_script("run_rl_mj.py", *RL, "--max_iter", "1", "--log", log))
    before = log.read_bytes()
    p = run_with_full_disk(len(before), "run_rl_mj.py", "--resume", "--log", log,
                           "--max_iter", "3", "--save_freq", "1")
    line = one_error_line(p)
    assert "cannot write the log" in line and "keeps its last save (1 iteration)" in line
    assert log.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.h5"]


# ------------------------------------------------------------------------- small frictions

def test_showlog_into_a_closed_pipe_is_quiet():
    p = subprocess.Popen(cmd("showlog.py", "--columns"), cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()              # `| head -1`
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_closing_best_covers_the_whole_resumed_run(tmp_path):
    log = tmp_path / "run.h5"
    ok(run_script("run_rl_mj.py", *RL, "--max_iter", "3", "--log", log))
    out = ok(run_script("run_rl_mj.py", "--resume", "--log", log, "--max_iter", "5")).stdout
    done = next(ln for ln in out.splitlines() if ln.startswith("done: "))
    assert done.startswith("done: 2 iterations in ") and "(resumed after 3)" in done
    from imitation.training import read_log

    rows = read_log(str(log)).rows
    best = int(np.argmax(rows["ret"]))
    assert f"best {rows['ret'][best]:.2f} (iter {best})" in done


def test_the_learning_curve_shows_the_expert_s_return(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        import showlog
    finally:
        sys.path.pop(0)
    from imitation.data import load_dataset

    d = load_dataset(DATASET)
    assert showlog.expert_return({"data": DATASET, "limit_trajs": 4}) == pytest.approx(
        d.returns_B[:4].mean())
    assert showlog.expert_return({"env_name": "CartPole-v1"}) is None


def test_a_one_run_report_row_has_no_spread():
    import pandas as pd

    from imitation import published as pub

    results = pd.DataFrame([dict(task="hopper", alg="ga", num_trajs=4, run=0,
                                 alg_traj_returns=np.array([3000., 3100.]),
                                 ex_traj_returns=np.array([3500.]))])
    published = pd.DataFrame([dict(task="hopper", alg="ga", num_trajs=4, run=0,
                                   alg_return_mean=3614.2, expert_return_mean=3571.)])
    row = pub.format_table(pub.compare(results, published, {"hopper": 18.})).splitlines()[2]
    assert "3050.0" in row and "±" not in row.split("3050.0")[1][:12]


def test_the_python_api_refuses_an_existing_log_without_resume(tmp_path):
    from imitation.experiment import RLConfig, build_trpo

    log = tmp_path / "run.h5"
    log.write_bytes(b"precious")
    with build_trpo(RLConfig(env_name="CartPole-v1", tiny_policy=True, min_total_sa=200,
                             num_workers=0)) as exp:
        with pytest.raises(UserError, match="already exists; pass resume=True"):
            exp.run(max_iter=1, log=str(log))
    assert log.read_bytes() == b"precious" and not (tmp_path / "run.h5.lock").exists()
