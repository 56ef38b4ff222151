"""scripts/showlog.py (learning curves from training logs), scripts/vis_mj.py (a policy's
rollout rendered offscreen to MP4/GIF) and scripts/reward_terms.py (a return split into the
environment's reward terms)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")
EXPERTS = os.path.normpath(os.path.join(REPO, "..", "shared", "expert_policies"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_script(name, *args, timeout=120, env=None):
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, name + ".py"), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def run_cli(name, argv, env=None):
    """scripts/<name>.py argv in a subprocess -> (exit status, stdout, stderr)."""
    res = subprocess.run([sys.executable, os.path.join(REPO, "scripts", name + ".py"),
                          *map(str, argv)], capture_output=True, text=True, cwd=REPO,
                         timeout=600, env=env)
    return res.returncode, res.stdout, res.stderr


def expert(*parts):
    path = os.path.join(EXPERTS, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not found (../shared/expert_policies beside the repository root)")
    return path


# ---------------------------------------------------------------------------------- showlog

def write_log(path, fields_fn, n):
    from imitation.training import TrainingLog

    log = TrainingLog(str(path), attrs={"env_name": "CartPole-v1"})
    for i in range(n):
        log.write(fields_fn(i), print_=False)
    log.save(finished=True)
    return str(path)


@pytest.fixture
def two_logs(tmp_path):
    """An imitation-style log (trueret, racc...) and an RL-style log (ret, no r* columns)."""
    im = write_log(tmp_path / "ga.h5", lambda i: [
        ("iter", i), ("trueret", 10. * i), ("iret", 1. + i), ("avglen", 20 + i), ("ent", 0.7),
        ("nsa", 100), ("vf_r2", 0.5), ("dx", 0.1), ("dl", 0.01), ("kl", 0.009), ("gnorm", 1.),
        ("bt", 0), ("rloss", 0.6), ("racc", 0.5 + 0.01 * i), ("raccpi", 0.4), ("raccex", 0.6),
        ("tsamp", 0.1)], 12)
    rl = write_log(tmp_path / "trpo.h5", lambda i: [
        ("iter", i), ("ret", 5. * i * i), ("avglen", 30), ("nsa", 100), ("ent", 0.6 - 0.01 * i),
        ("kl", 0.01), ("tsamp", 0.1)], 8)
    return im, rl


def test_showlog_csv_is_the_table_exactly(two_logs, tmp_path):
    """The CSV, read back by pandas, equals the table PyTables reads from the log, bit for bit."""
    import pandas as pd
    import tables

    im, _ = two_logs
    out = tmp_path / "ga.csv"
    code, stdout, err = run_cli("showlog", [im, "--csv", out])
    assert code == 0, err
    assert "12 rows" in stdout
    got = pd.read_csv(out, float_precision="round_trip")
    with tables.open_file(im) as f:
        table = f.root.log.read()
    assert list(got.columns) == list(table.dtype.names)
    for c in table.dtype.names:
        np.testing.assert_array_equal(got[c].to_numpy(), table[c])


@pytest.mark.parametrize("argv, message", [
    (["two"], "one log's table"),
    (["one", "--csv_name", "x.txt"], "must end in .csv"),
])
def test_showlog_csv_bad_input(two_logs, tmp_path, argv, message):
    im, rl = two_logs
    logs = [im, rl] if argv[0] == "two" else [im]
    name = argv[2] if len(argv) > 2 else "x.csv"
    code, _, err = run_cli("showlog", [*logs, "--csv", tmp_path / name])
    assert code == 2 and message in err


def assert_png(path):
    import matplotlib.image

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # something is drawn


def test_showlog_two_logs(two_logs, tmp_path):
    im, rl = two_logs
    out = tmp_path / "curves.png"
    code, stdout, err = run_cli("showlog", [im, rl, "--out", out, "--smooth", "3"])
    assert code == 0, err
    assert_png(out)
    lines = stdout.splitlines()
    assert lines[0].startswith("ga.h5: 12 iterations")
    assert "last return 110.00 (iter 11), best 110.00 (iter 11)" in lines[0]
    assert lines[1].startswith("trpo.h5: 8 iterations")  # RL log: `ret` is the return
    assert "last return 245.00" in lines[1]
    # all four default panels: return, discriminator accuracy (only ga has it), kl, ent
    assert "4 panels" in lines[-1]
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_showlog_fields_labels_subprocess(two_logs, tmp_path):
    im, rl = two_logs
    out = tmp_path / "sub.png"
    res = run_script("showlog", im, rl, "--out", out, "--fields", "trueret", "avglen",
                     "--labels", "GAIL", "TRPO")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("GAIL: 12 iterations") and "\nTRPO: 8 iterations" in res.stdout
    assert "2 panels: trueret, avglen" in res.stdout
    assert_png(out)


@pytest.mark.parametrize("case", ["missing", "not_hdf5", "no_log_table", "unknown_field",
                                  "out_is_input", "labels_count"])
def test_showlog_bad_input(case, two_logs, tmp_path):
    import h5py

    im, rl = two_logs
    out = str(tmp_path / "x.png")
    argv = {"missing": [tmp_path / "nope.h5", "--out", out],
            "not_hdf5": [tmp_path / "text.h5", "--out", out],
            "no_log_table": [tmp_path / "empty.h5", "--out", out],
            "unknown_field": [im, rl, "--out", out, "--fields", "kl", "nosuchfield"],
            "out_is_input": [im, "--out", tmp_path / "same.png"],
            "labels_count": [im, rl, "--out", out, "--labels", "one"]}[case]
    (tmp_path / "text.h5").write_text("not an HDF5 file\n")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("other", data=[1, 2])
    if case == "out_is_input":  # a log that happens to be named like an image
        os.link(im, tmp_path / "same.png")
    before = open(im, "rb").read()
    code, stdout, err = run_cli("showlog", argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    expected = {"missing": "no such file", "not_hdf5": "not a readable HDF5 file",
                "no_log_table": "no `log` table", "unknown_field": "nosuchfield",
                "out_is_input": "one of the input logs", "labels_count": "--labels"}[case]
    assert expected in err
    assert not os.path.exists(out)
    assert open(im, "rb").read() == before


# ----------------------------------------------------------------------------------- vis_mj

@pytest.fixture(scope="session")
def offscreen_gl():
    """The MUJOCO_GL backend vis_mj will use (probed in a subprocess); skip if none works."""
    from imitation import video as vis
    if os.environ.get("MUJOCO_GL"):
        candidates = [os.environ["MUJOCO_GL"]]
    else:
        candidates = list(vis.GL_BACKENDS)
    failures = []
    for backend in candidates:
        ok, why = vis.probe_mujoco_gl(backend)
        if ok:
            return backend
        failures.append(f"{backend}: {why}")
    pytest.skip("no offscreen OpenGL backend for MuJoCo (" + "; ".join(failures) + "); "
                "install libegl1 + libegl-mesa0 + libgl1-mesa-dri, or libosmesa6")


@pytest.fixture(scope="session")
def ffmpeg():
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        pytest.skip("imageio-ffmpeg is not installed (pip install imageio[ffmpeg], or "
                    "pip install -e .[video]): MP4 output untested")


def gif_frames(path):
    """(frames as RGB arrays, total duration in ms) of a GIF, read with Pillow."""
    from PIL import Image, ImageSequence

    frames, total_ms = [], 0
    with Image.open(path) as im:
        for fr in ImageSequence.Iterator(im):
            frames.append(np.asarray(fr.convert("RGB")))
            total_ms += fr.info.get("duration", 0)
    return frames, total_ms


def check_vis_output(res, steps):
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[-2].startswith("return: ") and f"({steps} steps" in lines[-2]
    assert lines[-1].startswith(f"frames: {steps + 1} at ")
    return lines


def assert_not_blank(frames):
    # every frame shows a scene (not one flat colour), and the scene moves
    assert all(f.std() > 5 for f in frames)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.05


def test_vis_cartpole_gif(tmp_path):
    cartpole = expert("classic", "CartPole-v0.h5")
    if importlib.util.find_spec("pygame") is None:
        pytest.skip("pygame is not installed (classic-control rendering): pip install pygame")
    out = tmp_path / "cartpole.gif"
    res = run_script("vis_mj", cartpole, "--out", out, "--steps", 30, "--fps", 20)
    lines = check_vis_output(res, 30)
    assert "rendering with pygame" in lines[0]
    frames, total_ms = gif_frames(out)
    assert frames[0].shape == (400, 600, 3)
    # Pillow stores identical consecutive frames once, with their durations added up: the
    # GIF's timeline still has 31 frames of 50 ms
    assert total_ms == 31 * 50
    merged = 31 - len(frames)
    assert (f"the GIF holds {len(frames)}" in lines[-1]) == (merged > 0)
    assert_not_blank(frames)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


HOPPER_ARGS = ("--env_name", "Hopper-v5", "--steps", 30, "--width", 96, "--height", 64,
               "--seed", 1)


def test_vis_hopper_gif(tmp_path, offscreen_gl):
    hopper = expert("modern", "log_Hopper-v0_3.h5") + "/snapshots/iter0000500"
    out = tmp_path / "hopper.gif"
    res = run_script("vis_mj", hopper, "--out", out, *HOPPER_ARGS)  # vis_mj picks MUJOCO_GL
    lines = check_vis_output(res, 30)
    assert f"MUJOCO_GL={offscreen_gl}" in lines[0]
    frames, _ = gif_frames(out)
    assert len(frames) == 31
    assert frames[0].shape == (64, 96, 3)
    assert_not_blank(frames)


def test_vis_hopper_mp4(tmp_path, offscreen_gl, ffmpeg):
    import imageio

    hopper = expert("modern", "log_Hopper-v0_3.h5") + "/snapshots/iter0000500"
    out = tmp_path / "hopper.mp4"
    res = run_script("vis_mj", hopper, "--out", out, *HOPPER_ARGS, "--deterministic",
                     env={"MUJOCO_GL": offscreen_gl})  # known to work: no second probe
    check_vis_output(res, 30)
    with open(out, "rb") as f:
        assert f.read(12)[4:8] == b"ftyp"  # an MP4 container
    reader = imageio.v2.get_reader(str(out), format="FFMPEG")
    try:
        frames = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    assert len(frames) == 31
    assert frames[0].shape == (64, 96, 3)
    assert_not_blank(frames)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@pytest.mark.parametrize("case", ["bad_ext", "no_ffmpeg", "missing_policy", "no_dir"])
def test_vis_bad_input(case, tmp_path, tmp_path_factory):
    # every check here comes before the policy is read: it need not exist
    policy = str(tmp_path / "policy.h5")
    argv = {"bad_ext": [policy, "--out", tmp_path / "x.avi"],
            "no_ffmpeg": [policy, "--out", tmp_path / "x.mp4"],
            "missing_policy": [tmp_path / "nope.h5", "--out", tmp_path / "x.gif"],
            "no_dir": [policy, "--out", tmp_path / "nodir" / "x.gif"]}[case]
    env = None
    if case == "no_ffmpeg":   # a module that fails to import shadows imageio_ffmpeg
        shadow = tmp_path_factory.mktemp("no_ffmpeg")
        (shadow / "imageio_ffmpeg.py").write_text("raise ImportError('imageio_ffmpeg')\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(shadow), os.environ.get("PYTHONPATH")])))
    code, _, err = run_cli("vis_mj", argv, env=env)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    expected = {"bad_ext": ".mp4 or .gif", "no_ffmpeg": "pip install imageio[ffmpeg]",
                "missing_policy": "no such file", "no_dir": "does not exist"}[case]
    assert expected in err
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ reward_terms.py

HC_POLICY = os.path.join(REPO, "expert_trajs", "policies", "halfcheetah.h5")


def _hc_spec(T):
    from imitation.envs import resolve_env

    return resolve_env("HalfCheetah-v5", max_traj_len=T)


def _hc_policy():
    from imitation.snapshots import load_policy_for_env

    return load_policy_for_env(HC_POLICY, "HalfCheetah-v5")[0]


def test_reward_terms_match_a_hand_rollout():
    """Mean actions are deterministic, so a rollout written here must give the same return,
    and HalfCheetah's documented control cost -0.1 * sum_t sum_j a_tj^2 from its actions."""
    import gymnasium as gym

    from imitation import diagnostics as mod
    T, seed = 40, 7
    policy = _hc_policy()
    terms = mod.episode_terms(_hc_spec(T), policy, num_trajs=2, seed=seed, deterministic=True)
    for k in range(2):
        env = gym.make("HalfCheetah-v5", max_episode_steps=T)
        obs, _ = env.reset(seed=seed + k)
        ret, ctrl = 0., 0.
        for _ in range(T):
            a = policy.compute_actiondist_params(obs[None])[0, :6]
            ctrl -= 0.1 * np.sum(np.square(a, dtype=np.float64))
            obs, r, *_ = env.step(a)
            ret += r
        env.close()
        assert terms["length"][k] == T
        assert terms["return"][k] == pytest.approx(ret, rel=1e-6)
        assert terms["reward_ctrl"][k] == pytest.approx(ctrl, rel=1e-5)
        assert terms["reward_forward"][k] + terms["reward_ctrl"][k] == \
            pytest.approx(ret, rel=1e-6)
    assert set(terms) == {"return", "length", "reward_forward", "reward_ctrl", "abs_mean",
                          "stdev", "outside"}


def test_reward_terms_clipping_changes_only_the_control_cost():
    """MuJoCo clamps HalfCheetah's actuators to [-1, 1], so clipping the sampled actions leaves
    the motion (forward reward) the same and lowers only the control cost, to at most
    0.1 * 6 per step. A policy with stdev e = 2.7 puts most components outside the bounds."""
    from imitation import diagnostics as mod
    T = 30
    policy = _hc_policy()
    policy.logstdevs_1_Da.set_value(np.ones_like(policy.logstdevs_1_Da.get_value()))
    raw = mod.episode_terms(_hc_spec(T), policy, 2, seed=3)
    clipped = mod.episode_terms(_hc_spec(T), policy, 2, seed=3, clip_actions=True)
    np.testing.assert_allclose(clipped["reward_forward"], raw["reward_forward"], rtol=1e-9)
    np.testing.assert_array_equal(clipped["outside"], raw["outside"])
    assert np.all(raw["outside"] > 0.5)
    assert np.all(clipped["reward_ctrl"] >= -0.1 * 6 * T - 1e-9)
    assert np.all(clipped["reward_ctrl"] > raw["reward_ctrl"])
    assert np.all(raw["stdev"] == pytest.approx(np.e, rel=1e-5))


def test_reward_terms_unclamped_actuators():
    """With MuJoCo's clamping off, clipping the actions by hand must give back the clamped
    simulator's motion exactly (forward reward; same states, so the same sampled actions),
    while the unclipped wide actions then push harder and move the cheetah differently."""
    from imitation import diagnostics as mod
    T = 30
    policy = _hc_policy()
    policy.logstdevs_1_Da.set_value(np.ones_like(policy.logstdevs_1_Da.get_value()))
    clamped = mod.episode_terms(_hc_spec(T), policy, 2, seed=3)
    free_clipped = mod.episode_terms(_hc_spec(T), policy, 2, seed=3, clip_actions=True,
                                     unclamped_actuators=True)
    free = mod.episode_terms(_hc_spec(T), policy, 2, seed=3, unclamped_actuators=True)
    np.testing.assert_allclose(free_clipped["reward_forward"], clamped["reward_forward"],
                               rtol=1e-12)
    assert np.all(np.abs(free["reward_forward"] - clamped["reward_forward"]) > 1.)
    assert np.all(free["outside"] > 0.5)


def test_reward_terms_cli_discrete(capsys):
    """A discrete-action policy: no reward_* terms, no action line; the table still prints."""
    code, out, err = run_cli("reward_terms", [os.path.join(REPO, "expert_trajs", "policies",
                                                  "cartpole.h5"), "--num_trajs", 2,
                                     "--max_traj_len", 60])
    assert code == 0, err
    lines = out.splitlines()
    assert "2 episodes, sampled actions" in lines[0]
    assert lines[2].split() == ["return", "60.0", "0.0"]
    assert lines[3].split() == ["length", "60.0", "0.0"]
    assert "actions:" not in out


def test_showlog_puts_behavioural_cloning_on_adam_steps(tmp_path):
    """A behavioural-cloning log counts Adam steps, not iterations: its summary says so, and
    beside an RL log it gets its own x-axis (drawn; the figure is written)."""
    from imitation.training import TrainingLog

    bc, rl = str(tmp_path / "bc.h5"), str(tmp_path / "rl.h5")
    log = TrainingLog(bc, attrs={"mode": "bclone"}, out=open(os.devnull, "w"))
    for it in (1, 1001, 2001):
        log.write([("iter", it), ("trueret", 100. + it / 100), ("valacc", -1.)])
    log.save(finished=True)
    log = TrainingLog(rl, attrs={"env_name": "CartPole-v1"}, out=open(os.devnull, "w"))
    for it in range(4):
        log.write([("iter", it), ("ret", 20. * it)])
    log.save(finished=True)
    code, out, err = run_cli("showlog", [rl, bc, "--out", tmp_path / "both.png"])
    assert code == 0, err
    assert "bc.h5: 3 evaluations (Adam steps 1..2001)" in out
    assert "rl.h5: 4 iterations (iter 0..3)" in out
    assert os.path.getsize(tmp_path / "both.png") > 0


def test_every_logged_column_is_documented_and_the_console_is_compact(tmp_path):
    """The console shows the compact columns by default and all with --verbose; the log holds
    all either way; showlog.py --columns explains every column a GAIL, TRPO or BC log has."""
    from imitation.training import COMPACT_COLUMNS, LOG_COLUMNS, read_log

    data = os.path.join(REPO, "expert_trajs", "cartpole.h5")
    common = ["--tiny_policy", "--num_workers", 0, "--max_iter", 1]
    runs = {"ga": ["imitate_mj", "--mode", "ga", "--data", data, "--min_total_sa", 200],
            "bc": ["imitate_mj", "--mode", "bclone", "--data", data, "--bclone_eval_ntrajs", 1],
            "rl": ["run_rl_mj", "--env_name", "CartPole-v1", "--min_total_sa", 200]}
    for kind, (name, *argv) in runs.items():
        for verbose in (False, True):
            log = tmp_path / f"{kind}{verbose}.h5"
            code, out, err = run_cli(name, argv + common + ["--log", log]
                                     + (["--verbose"] if verbose else []))
            assert code == 0, err
            cols = list(read_log(str(log)).rows.dtype.names)
            assert set(cols) <= set(LOG_COLUMNS), set(cols) - set(LOG_COLUMNS)
            header = next(ln.split() for ln in out.splitlines() if ln.split()[:1] == ["iter"])
            assert header == (cols if verbose else [c for c in cols if c in COMPACT_COLUMNS])
    code, out, _ = run_cli("showlog", ["--columns"])
    assert code == 0 and [ln.split()[0] for ln in out.splitlines()[:-1]] == list(LOG_COLUMNS)
