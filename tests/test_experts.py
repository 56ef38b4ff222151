"""The original authors' expert policies (../shared/expert_policies): loading them, and their
returns on today's Gymnasium environments, measured through scripts/eval_policy.py (design.md
section 7)."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERT_DIR = REPO.parent / "shared" / "expert_policies"

if not EXPERT_DIR.is_dir():
    pytest.skip(f"the original expert policies are not available ({EXPERT_DIR} is absent; it "
                "lives in the shared checkout ../shared next to the repository)",
                allow_module_level=True)

import h5py  # noqa: E402

from imitation.snapshots import load_policy  # noqa: E402
from policyopt import ContinuousSpace, FiniteSpace  # noqa: E402
from policyopt.rl import GaussianPolicy, GibbsPolicy  # noqa: E402

# file -> (policy class, obs dim, action dim (continuous) or number of actions, last snapshot)
EXPECTED = {
    "classic/CartPole-v0.h5": (GibbsPolicy, 4, 2, "snapshots/iter0000100"),
    "classic/MountainCar-v0.h5": (GibbsPolicy, 2, 3, "snapshots/iter0000100"),
    "classic/Acrobot-v0.h5": (GibbsPolicy, 4, 3, "snapshots/iter0000100"),
    "classic/InvertedPendulum-v1.h5": (GaussianPolicy, 4, 1, "snapshots/iter0000100"),
    "modern/log_Hopper-v0_3.h5": (GaussianPolicy, 11, 3, "snapshots/iter0000500"),
    "modern/walker_eb5b2e_1.h5": (GaussianPolicy, 17, 6, "snapshots/iter0000480"),
    "modern/log_HalfCheetah-v0_2.h5": (GaussianPolicy, 17, 6, "snapshots/iter0000500"),
    "modern/log_Ant-v1_0.h5": (GaussianPolicy, 111, 8, "snapshots/iter0000500"),
    "modern/log_Reacher-v1_4.h5": (GaussianPolicy, 11, 2, "snapshots/iter0000500"),
}

ALL_FILES = sorted(str(p.relative_to(EXPERT_DIR)) for p in EXPERT_DIR.rglob("*.h5"))

RETURN_RE = re.compile(r"^return: (-?\d+\.\d{2}) \+/- (\d+\.\d{2}) \((\d+) trajectories\)$")


def expert(rel):
    path = EXPERT_DIR / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return str(path)


# -------------------------------------------------------------------------------- loading

def test_expert_directory_has_the_protocol_files():
    missing = sorted(set(EXPECTED) - set(ALL_FILES))
    assert not missing, f"expert policies missing from {EXPERT_DIR}: {missing}"


@pytest.mark.parametrize("rel", ALL_FILES)
def test_load_last_snapshot(rel):
    path = expert(rel)
    policy, key, args = load_policy(path)
    assert np.all(np.isfinite(policy.get_params()))
    assert policy.get_num_params() > 0
    assert args.get("policy_hidden_spec")
    if rel not in EXPECTED:  # a file this test does not know: generic checks only
        return
    cls, obs_dim, act, last = EXPECTED[rel]
    assert key == last
    assert type(policy) is cls
    assert policy.obsfeat_space.storage_size == obs_dim
    if cls is GibbsPolicy:
        assert isinstance(policy.action_space, FiniteSpace) and policy.action_space.size == act
    else:
        assert isinstance(policy.action_space, ContinuousSpace) and policy.action_space.dim == act
    # every variable holds exactly the file's values (the snapshot layout of design.md
    # section 6: <key>/<scope path>)
    with h5py.File(path, "r") as f:
        for v in policy.get_variables():
            np.testing.assert_allclose(v.get_value(), f[key + v.name][()], rtol=1e-6,
                                       err_msg=v.name)
        assert f"{key}/{cls.__name__}/hidden/FeedforwardNet/layer_0/AffineLayer/W" in f
    # acting on a batch of observations gives finite action-distribution parameters
    adist = policy.compute_actiondist_params(np.zeros((3, obs_dim)))
    assert adist.shape == (3, act if cls is GibbsPolicy else 2 * act)
    assert np.all(np.isfinite(adist))


@pytest.mark.parametrize("rel", ["classic/CartPole-v0.h5", "modern/log_Hopper-v0_3.h5"])
def test_load_explicit_snapshot_key(rel):
    path = expert(rel)
    policy, key, _ = load_policy(path + "/snapshots/iter0000020")
    assert key == "snapshots/iter0000020"
    assert np.all(np.isfinite(policy.get_params()))
    last, _, _ = load_policy(path)
    assert not np.allclose(policy.get_params(), last.get_params())
    with h5py.File(path, "r") as f:
        W = f[f"{key}/{type(policy).__name__}/out/AffineLayer/W"][()]
    out_W = [v for v in policy.get_variables() if v.name.endswith("/out/AffineLayer/W")][0]
    np.testing.assert_allclose(out_W.get_value(), W, rtol=1e-6)


def test_load_every_file_at_iter20():
    for rel in ALL_FILES:
        with h5py.File(EXPERT_DIR / rel, "r") as f:
            if "snapshots/iter0000020" not in f:
                continue
        policy, key, _ = load_policy(str(EXPERT_DIR / rel) + "/snapshots/iter0000020")
        assert key == "snapshots/iter0000020"
        assert np.all(np.isfinite(policy.get_params())), rel


# ----------------------------------------------------------------------------- evaluation

def run_eval(*args, timeout=300):
    """Run scripts/eval_policy.py; returns the CompletedProcess."""
    cmd = [sys.executable, str(REPO / "scripts" / "eval_policy.py"), *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def eval_return(rel, *args, num_trajs, seed=0):
    """Mean return of an expert over `num_trajs` episodes, parsed from the script's last line.

    Two sampling workers always, so that the episodes (seeded per worker) are the same on
    every machine whatever its number of cores."""
    p = run_eval(expert(rel), *args, "--num_trajs", num_trajs, "--seed", seed,
                 "--num_workers", 2)
    assert p.returncode == 0, p.stderr
    last = p.stdout.rstrip("\n").split("\n")[-1]
    m = RETURN_RE.match(last)
    assert m, f"last line {last!r} does not match {RETURN_RE.pattern}"
    assert int(m.group(3)) == num_trajs
    return float(m.group(1)), float(m.group(2)), p.stdout


def test_cartpole_expert():
    mean, std, out = eval_return("classic/CartPole-v0.h5", num_trajs=20)
    assert mean == 200. and std == 0.
    assert "CartPole-v0" in out


def test_mountaincar_expert():
    mean, _, _ = eval_return("classic/MountainCar-v0.h5", num_trajs=20)
    assert mean >= -110.  # design.md section 7: -97 measured, -99 published


def test_acrobot_expert_via_legacy_id():
    # the file records env_name Acrobot-v0 -> Acrobot-v1 with the acrobot_v0 adapter
    mean, _, out = eval_return("classic/Acrobot-v0.h5", num_trajs=20)
    assert "Acrobot-v1 with adapter acrobot_v0" in out
    assert mean >= -100.  # design.md section 7: -85 measured, -75 published


def test_acrobot_expert_via_explicit_adapter():
    mean, _, out = eval_return("classic/Acrobot-v0.h5", "--env_name", "Acrobot-v1",
                               "--obs_adapter", "acrobot_v0", num_trajs=5, seed=1)
    assert "with adapter acrobot_v0" in out
    assert mean >= -100.


@pytest.mark.slow
def test_inverted_pendulum_expert():
    # Deterministically the expert balances for the whole 1000 steps (measured: 1000 on every
    # seed tried). Stochastically it averages ~900 over 100 episodes on this machine
    # (MuJoCo 4.0; 20-episode means 830-960 depending on the seed), not the 1000 that
    # design.md section 7 quotes, so the stochastic bound is looser.
    mean, _, out = eval_return("classic/InvertedPendulum-v1.h5", "--deterministic",
                               num_trajs=20)
    assert "InvertedPendulum-v5" in out
    assert mean >= 900.
    mean, _, _ = eval_return("classic/InvertedPendulum-v1.h5", num_trajs=20)
    assert mean >= 700.


def test_reacher_expert_via_legacy_id():
    # the file records env_name Reacher-v1 -> Reacher-v5 + the reacher_v1 adapter;
    # design.md section 7 measured -3.38 +/- 1.28 over 50 episodes (published expert -4.09 +/-
    # 1.70);
    # here -3.62 +/- 1.65 over 50 (seed 0)
    mean, _, out = eval_return("modern/log_Reacher-v1_4.h5", num_trajs=20)
    assert "Reacher-v5 with adapter reacher_v1" in out
    assert -5. <= mean <= -2.5


@pytest.mark.slow
def test_halfcheetah_expert():
    mean, _, _ = eval_return("modern/log_HalfCheetah-v0_2.h5", "--env_name", "HalfCheetah-v5",
                             num_trajs=10)
    assert mean >= 4200.  # design.md section 7: 4438 measured, 4463 published


# Hopper and Walker2d. On this machine's MuJoCo 4.0 the stochastic experts score below what
# design.md section 7 measured (3534 / 6625): over 100 episodes the stochastic Hopper averages
# ~3430 (3350-3500 depending on the seed; episode std ~470) and the stochastic Walker
# ~5950-6150 (episode std ~1700, occasional falls). Run deterministically (the mean action)
# they give ~3540 and ~6900 with small spread, so the tight bounds are checked
# deterministically, and the stochastic runs against looser bounds with a fixed seed. The
# stochastic Walker uses 20 episodes: with 10 its mean's standard error (~540) would put
# 5000 only ~1.8 standard errors below the expected mean.

@pytest.mark.slow
def test_hopper_expert_deterministic():
    mean, _, _ = eval_return("modern/log_Hopper-v0_3.h5", "--env_name", "Hopper-v5",
                             "--deterministic", num_trajs=10)
    assert mean >= 3400.


@pytest.mark.slow
def test_walker_expert_deterministic():
    mean, _, _ = eval_return("modern/walker_eb5b2e_1.h5", "--env_name", "Walker2d-v5",
                             "--deterministic", num_trajs=10)
    assert mean >= 6300.


@pytest.mark.slow
def test_hopper_expert_stochastic():
    mean, _, _ = eval_return("modern/log_Hopper-v0_3.h5", "--env_name", "Hopper-v5",
                             num_trajs=10)
    assert mean >= 3000.


@pytest.mark.slow
def test_walker_expert_stochastic():
    mean, _, _ = eval_return("modern/walker_eb5b2e_1.h5", "--env_name", "Walker2d-v5",
                             num_trajs=20)
    assert mean >= 5000.


@pytest.mark.slow
def test_ant_expert_with_adapter():
    # the file records env_name Ant-v1 -> Ant-v5 (cfrc_ext included) + the ant_v1 adapter;
    # measured ~4000 +/- 600 per episode over 100 episodes (published expert: 4228)
    mean, _, out = eval_return("modern/log_Ant-v1_0.h5", num_trajs=10)
    assert "Ant-v5 with adapter ant_v1" in out
    assert mean >= 3000.


# ------------------------------------------------------------------------ output and errors

def test_return_line_format_quiet():
    p = run_eval(expert("classic/CartPole-v0.h5"), "--num_trajs", 3, "--quiet",
                 "--num_workers", 0)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1
    assert RETURN_RE.fullmatch(lines[0]), lines[0]
    assert lines[0] == "return: 200.00 +/- 0.00 (3 trajectories)"


def _assert_one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip("\n")
    assert "Traceback" not in p.stderr
    assert len(err.splitlines()) == 1, p.stderr
    for n in needles:
        assert n in err, err
    return err


def test_mismatched_environment_exits_2_with_adapter_hint():
    p = run_eval(expert("modern/log_Ant-v1_0.h5"), "--env_name", "Ant-v5", "--num_trajs", 2)
    err = _assert_one_line_error(p, "adapter", "111", "105")
    assert "ant_v1" in err
    assert "return:" not in p.stdout


def test_missing_snapshot_exits_2():
    p = run_eval(expert("classic/CartPole-v0.h5") + "/snapshots/iter0009999")
    _assert_one_line_error(p, "iter0009999")


def test_unknown_env_exits_2():
    p = run_eval(expert("classic/CartPole-v0.h5"), "--env_name", "CartPole-v99")
    _assert_one_line_error(p, "CartPole-v99")
