"""imitation.experiment, the Python API: the builders the scripts, benchmarks and tests share.
A run built in Python and the same run from the command line write the same log."""
import ast
import inspect
import json
import os
import subprocess
import sys
from dataclasses import fields

import h5py
import numpy as np
import pytest

from imitation import experiment
from imitation.errors import UserError
from imitation.experiment import ImitationConfig, RLConfig, build_imitation, build_trpo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARTPOLE = os.path.join(REPO, "expert_trajs", "cartpole.h5")
TIMINGS = {"tsamp", "tadv", "tstep", "treward", "tvf", "ttotal"}


def _script(name, *argv, cwd=REPO):
    res = subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *map(str, argv)],
                         capture_output=True, text=True, cwd=cwd, timeout=600)
    assert res.returncode == 0, res.stderr
    return res


def _same_logs(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        ra, rb = fa["log"][()], fb["log"][()]
        assert ra.dtype.names == rb.dtype.names
        for c in ra.dtype.names:
            if c not in TIMINGS:
                np.testing.assert_array_equal(ra[c], rb[c], err_msg=c)
        sa, sb = [], []
        fa["snapshots"].visit(sa.append)
        fb["snapshots"].visit(sb.append)
        assert sa == sb
        for k in sa:
            if isinstance(fa["snapshots"][k], h5py.Dataset):
                np.testing.assert_array_equal(fa["snapshots"][k][()], fb["snapshots"][k][()])
        args_a, args_b = json.loads(fa.attrs["args"]), json.loads(fb.attrs["args"])
    return args_a, args_b


def test_python_gail_run_writes_the_log_the_script_writes(tmp_path):
    """The README's Python example and `imitate_mj.py` with the same settings: same rows, same
    snapshots (timings aside)."""
    cfg = ImitationConfig(mode="ga", data=CARTPOLE, min_total_sa=500, tiny_policy=True, seed=2,
                          num_workers=0)
    with build_imitation(cfg) as exp:
        assert exp.config.env_name == "CartPole-v0" and exp.config.data_subsamp_freq == 10
        assert exp.run(max_iter=3, log=str(tmp_path / "api.h5"), save_freq=1)
    _script("imitate_mj.py", "--mode", "ga", "--data", CARTPOLE, "--min_total_sa", 500,
            "--tiny_policy", "--seed", 2, "--num_workers", 0, "--max_iter", 3, "--save_freq", 1,
            "--log", tmp_path / "cli.h5")
    api_args, cli_args = _same_logs(tmp_path / "api.h5", tmp_path / "cli.h5")
    for f in fields(ImitationConfig):     # the API records its resolved config
        assert api_args[f.name] == cli_args[f.name], f.name


def test_python_trpo_run_writes_the_log_the_script_writes(tmp_path):
    cfg = RLConfig(env_name="CartPole-v1", min_total_sa=500, tiny_policy=True, seed=1,
                   num_workers=0)
    with build_trpo(cfg) as exp:
        exp.run(max_iter=2, log=str(tmp_path / "api.h5"), save_freq=1)
    _script("run_rl_mj.py", "--env_name", "CartPole-v1", "--min_total_sa", 500, "--tiny_policy",
            "--seed", 1, "--num_workers", 0, "--max_iter", 2, "--save_freq", 1, "--log",
            tmp_path / "cli.h5")
    _same_logs(tmp_path / "api.h5", tmp_path / "cli.h5")


@pytest.mark.parametrize("cls,script", [(ImitationConfig, "imitate_mj.py"),
                                        (RLConfig, "run_rl_mj.py")])
def test_every_config_field_is_a_documented_flag(cls, script):
    """Each field carries a one-line docstring and is a flag of its script, with the same
    default (read back from a real run's stored arguments elsewhere; here from --help)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            doc = body[i + 1] if i + 1 < len(body) else None
            assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and \
                doc.value.value.strip(), f"{cls.__name__}.{node.target.id} has no docstring"
    help_text = _script(script, "--help").stdout
    for f in fields(cls):
        assert f"--{f.name}" in help_text, f.name


def test_builders_reject_bad_configs():
    with pytest.raises(UserError, match="mode must be ga or bclone"):
        build_imitation(ImitationConfig(mode="gail", data=CARTPOLE))
    with pytest.raises(UserError, match="needs an expert dataset"):
        build_imitation(ImitationConfig(mode="ga"))
    with pytest.raises(UserError, match="reward_type must be"):
        build_imitation(ImitationConfig(data=CARTPOLE, reward_type="svm", num_workers=0))
    with pytest.raises(UserError, match="mutually exclusive"):
        build_trpo(RLConfig(env_name="CartPole-v1", tiny_policy=True,
                            policy_hidden_spec='[{"type": "fc", "n": 3}]'))
    with pytest.raises(UserError, match="needs an environment"):
        build_trpo(RLConfig())


def test_make_policy_follows_the_action_space():
    from imitation.envs import GymMDP
    from policyopt import nn, rl

    for env, cls in (("CartPole-v1", rl.GibbsPolicy), ("Pendulum-v1", rl.GaussianPolicy)):
        mdp = GymMDP(env, num_workers=0)
        try:
            assert type(experiment.make_policy(nn.TINY_HIDDEN_SPEC, mdp, True)) is cls
        finally:
            mdp.close()


def test_a_finished_run_closes_with_a_summary_whose_commands_work(tmp_path):
    """The last lines say how it went and where the log is, with commands that run; a --log
    in directories that do not exist yet is created."""
    log = tmp_path / "runs" / "cartpole" / "trpo.h5"
    out = _script("run_rl_mj.py", "--env_name", "CartPole-v1", "--min_total_sa", 300,
                  "--tiny_policy", "--num_workers", 0, "--max_iter", 3, "--log", log).stdout
    lines = out.strip().splitlines()[-5:]
    assert lines[0].startswith("done: 3 iterations in ") and "true return" in lines[0]
    assert lines[1] == f"log: {log} (last snapshot {log}/snapshots/iter0000002)"
    evaluate = lines[2].split("evaluate: ")[1].split()
    assert evaluate[:2] == ["python", "scripts/eval_policy.py"]
    res = subprocess.run([sys.executable, *evaluate[1:], "--num_trajs", "2", "--num_workers",
                          "0"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1].startswith("return: ")
    assert lines[3].split("resume:   ")[1] == (f"python scripts/run_rl_mj.py --resume --log {log} "
                                              "--max_iter 5")
    no_log = _script("run_rl_mj.py", "--env_name", "CartPole-v1", "--min_total_sa", 300,
                     "--tiny_policy", "--num_workers", 0, "--max_iter", 1).stdout
    assert no_log.strip().splitlines()[-1].startswith(
        "no --log: nothing was saved (rerun with --log FILE to keep")


def test_the_closing_summary_commands_work_from_another_directory(tmp_path):
    """Run from outside the repository with a relative --log, the summary names the scripts
    by absolute path, and its evaluate command runs there."""
    out = _script("run_rl_mj.py", "--env_name", "CartPole-v1", "--min_total_sa", 300,
                  "--tiny_policy", "--num_workers", 0, "--max_iter", 2, "--log", "rel.h5",
                  cwd=tmp_path).stdout
    lines = out.strip().splitlines()[-5:]
    evaluate = lines[2].split("evaluate: ")[1].split()
    assert evaluate[:3] == ["python", os.path.join(REPO, "scripts", "eval_policy.py"), "rel.h5"]
    res = subprocess.run([sys.executable, *evaluate[1:], "--num_trajs", "2", "--num_workers",
                          "0"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
