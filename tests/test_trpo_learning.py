"""TRPO learns: CartPole-v1 to the maximum return, Pendulum-v1 to a swing-up no random policy
reaches, and scripts/run_rl_mj.py end to end (table, HDF5 log, snapshots, evaluation)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imitation.envs import GymMDP
from policyopt import FiniteSpace, SimConfig, nn, rl

REPO = Path(__file__).resolve().parents[1]


def make_trpo(env_name, seed, min_total_sa=5000):
    """The setup of scripts/run_rl_mj.py (defaults, --tiny_policy), two sampling workers."""
    mdp = GymMDP(env_name, num_workers=2)
    nn.seed_initializers(seed)
    rng = np.random.default_rng(seed)
    cls = rl.GibbsPolicy if isinstance(mdp.action_space, FiniteSpace) else rl.GaussianPolicy
    policy = cls(nn.TINY_HIDDEN_SPEC, mdp.obs_space, mdp.action_space)
    vf = rl.ValueFunc(nn.TINY_HIDDEN_SPEC, mdp.obs_space, enable_obsnorm=True, enable_vnorm=True,
                      max_kl=0.01, damping=0.1, time_scale=1. / mdp.horizon())
    opt = rl.SamplingPolicyOptimizer(mdp, 0.995, 0.97, policy,
                                     SimConfig(min_total_sa=min_total_sa),
                                     rl.TRPO(0.01, 0.1), vf, rng)
    return mdp, policy, opt


def train_until(opt, max_iter, target, consecutive=3):
    """Step until `consecutive` batches in a row have mean return >= target; returns the list
    of batch mean returns (the last entry reached the target unless max_iter ran out)."""
    rets = []
    for _ in range(max_iter):
        fields = dict(opt.step())
        assert np.isfinite(fields["ret"]) and np.isfinite(fields["kl"])
        assert fields["kl"] <= 2 * 0.01 + 1e-9  # the line search's hard wall
        rets.append(fields["ret"])
        if len(rets) >= consecutive and min(rets[-consecutive:]) >= target:
            break
    return rets


def evaluate(mdp, policy, n, seed):
    return mdp.sim_mp(policy, None, SimConfig(min_num_trajs=n), np.random.default_rng(seed))


@pytest.mark.slow
def test_trpo_cartpole_reaches_max_return():
    # reference: `run_rl_mj.py --env_name CartPole-v1 --tiny_policy --min_total_sa 5000` reaches
    # 500 by iteration ~10-20 (seeds 0-5: the criterion below met after 11-21 iterations)
    mdp, policy, opt = make_trpo("CartPole-v1", seed=0)
    try:
        rets = train_until(opt, max_iter=40, target=475)
        assert min(rets[-3:]) >= 475, f"not solved in 40 iterations: {np.round(rets, 1)}"
        assert rets[0] < 100  # it did learn: the initial (uniform) policy gets ~25
        batch = evaluate(mdp, policy, 20, seed=12345)
        assert len(batch) == 20
        assert batch.returns.mean() >= 475, batch.returns
    finally:
        mdp.close()


@pytest.mark.slow
def test_trpo_pendulum_swings_up():
    # reference: `run_rl_mj.py --env_name Pendulum-v1 --tiny_policy --min_total_sa 5000` goes
    # from ~-1200 to ~-180 by iteration ~45; over seeds 0-11 three batches in a row above -400
    # came after 38-46 iterations, and 20 fresh episodes of that policy then averaged -118 to
    # -385 (the episode's start state matters, hence the margin in the final bound).
    mdp, policy, opt = make_trpo("Pendulum-v1", seed=0)
    try:
        random_ret = evaluate(mdp, policy, 20, seed=999).returns.mean()
        # the untrained policy (mean 0, stdev 1) is a random policy: measured -1040 to -1400
        assert random_ret < -900, random_ret
        rets = train_until(opt, max_iter=80, target=-400)
        assert min(rets[-3:]) >= -400, f"no swing-up in 80 iterations: {np.round(rets)}"
        trained = evaluate(mdp, policy, 20, seed=12345).returns.mean()
        assert trained > -500, trained
        assert trained > random_ret + 500
    finally:
        mdp.close()


# --------------------------------------------------------------------------- run_rl_mj.py

EXPECTED_COLUMNS = ["iter", "ret", "avglen", "nsa", "ent", "vf_r2", "tbase_r2", "dx", "dl",
                    "kl", "gnorm", "bt", "vf_dl", "vf_kl", "vf_gnorm", "vf_bt", "tsamp", "tadv",
                    "tstep", "tvf", "ttotal"]


def run_script(name, *args, timeout=300):
    cmd = [sys.executable, str(REPO / "scripts" / name), *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_run_rl_mj_end_to_end(tmp_path):
    import h5py
    import tables

    log = tmp_path / "cartpole.h5"
    p = run_script("run_rl_mj.py", "--env_name", "CartPole-v1", "--tiny_policy",
                   "--min_total_sa", 1000, "--max_iter", 11, "--save_freq", 5, "--log", log,
                   "--num_workers", 2, "--seed", 3, "--verbose")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    header = [i for i, l in enumerate(lines) if l.split()[:3] == ["iter", "ret", "avglen"]]
    assert len(header) == 1, p.stdout  # header once (every 20 rows)
    h = header[0]
    assert lines[h].split() == EXPECTED_COLUMNS
    assert set(lines[h + 1].replace(" ", "")) == {"-"}
    rows = [l.split() for l in lines[h + 2:h + 13]]
    assert [int(r[0]) for r in rows] == list(range(11))
    assert lines[h + 13].startswith("done: 11 iterations in ")   # the closing summary

    # the log table
    with tables.open_file(str(log), "r") as f:
        table = f.root.log
        assert table.nrows == 11
        assert list(table.colnames) == EXPECTED_COLUMNS
        data = table.read()
        args = json.loads(f.root._v_attrs.args)
    np.testing.assert_array_equal(data["iter"], np.arange(11))
    assert np.all(data["nsa"] >= 1000)
    assert np.all(np.isfinite(data["ret"])) and np.all(data["ret"] >= 8)
    np.testing.assert_allclose(data["ret"], [float(r[1]) for r in rows], rtol=1e-4)
    assert np.all(data["kl"] <= 0.02 + 1e-9)
    assert data["ret"][-3:].mean() > data["ret"][:3].mean()  # learning is under way
    # run arguments with the original defaults
    assert args["env_name"] == "CartPole-v1"
    assert args["discount"] == 0.995
    assert args["lam"] == 0.97
    assert args["policy_max_kl"] == 0.01
    assert args["policy_cg_damping"] == 0.1
    assert args["vf_max_kl"] == 0.01
    assert args["min_total_sa"] == 1000 and args["max_iter"] == 11 and args["save_freq"] == 5
    assert json.loads(args["policy_hidden_spec"]) == json.loads(nn.TINY_HIDDEN_SPEC)

    # snapshots in the snapshot layout (design.md section 6)
    with h5py.File(log, "r") as f:
        assert sorted(f["snapshots"].keys()) == ["iter0000000", "iter0000005", "iter0000010"]
        g = f["snapshots/iter0000010/GibbsPolicy"]
        assert g["hidden/FeedforwardNet/layer_0/AffineLayer/W"].shape == (4, 64)
        assert g["hidden/FeedforwardNet/layer_0/AffineLayer/b"].shape == (1, 64)
        assert g["hidden/FeedforwardNet/layer_2/AffineLayer/W"].shape == (64, 64)
        assert g["out/AffineLayer/W"].shape == (64, 2)
        assert g["out/AffineLayer/b"].shape == (1, 2)
        assert g["obsnorm/Standardizer/count"][()] > 0
        assert g["obsnorm/Standardizer/mean_1_D"].shape == (1, 4)
        assert g["obsnorm/Standardizer/meansq_1_D"].shape == (1, 4)
        assert "snapshots/iter0000010/ValueFunc" in f
        W0 = f["snapshots/iter0000000/GibbsPolicy/out/AffineLayer/W"][()]
        W10 = g["out/AffineLayer/W"][()]
        assert not np.allclose(W0, W10)

    # the snapshot evaluates with the real script (env_name read from the file)
    p = run_script("eval_policy.py", f"{log}/snapshots/iter0000010", "--num_trajs", 4,
                   "--num_workers", 2)
    assert p.returncode == 0, p.stderr
    last = p.stdout.splitlines()[-1]
    m = re.fullmatch(r"return: (-?\d+\.\d{2}) \+/- (\d+\.\d{2}) \((\d+) trajectories\)", last)
    assert m, last
    assert int(m.group(3)) == 4 and float(m.group(1)) > 0
    assert "GibbsPolicy" in p.stdout and "CartPole-v1" in p.stdout


def test_run_rl_mj_refuses_existing_log(tmp_path):
    log = tmp_path / "existing.h5"
    log.write_bytes(b"precious")
    before = log.stat()
    p = run_script("run_rl_mj.py", "--env_name", "CartPole-v1", "--max_iter", 1, "--log", log,
                   timeout=120)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    err = p.stderr.strip("\n").splitlines()
    assert len(err) == 1 and "already exists" in err[0] and str(log) in err[0], p.stderr
    assert log.read_bytes() == b"precious"
    assert log.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(x.name for x in tmp_path.iterdir()) == ["existing.h5"]
