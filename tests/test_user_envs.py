"""Any Gymnasium environment: an id from a user's package ('module:Id') and --env_kwargs, end to
end: train, evaluate, sample a dataset, imitate, resume; the stored arguments rebuild the same
environment every time."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from imitation.envs import EnvError, parse_env_kwargs, resolve_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
ENV_ID = "user_envs:UserLine-v0"


def run_script(name, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def test_env_kwargs_parsing():
    assert parse_env_kwargs(None) == {} and parse_env_kwargs("") == {}
    assert parse_env_kwargs('{"target": 1.5}') == {"target": 1.5}
    with pytest.raises(EnvError, match="not valid JSON"):
        parse_env_kwargs('{"target": ')
    with pytest.raises(EnvError, match="must be a JSON object"):
        parse_env_kwargs("[1, 2]")


def test_module_prefixed_id_resolves(monkeypatch):
    monkeypatch.syspath_prepend(TESTS)
    spec = resolve_env(ENV_ID, env_kwargs='{"target": 2.0}')
    env = spec.make()
    assert env.unwrapped.target == 2.0 and env.spec.max_episode_steps == 25
    with pytest.raises(EnvError, match="no module no_such_pkg.*PYTHONPATH"):
        resolve_env("no_such_pkg:Thing-v0")


def test_user_env_with_kwargs_end_to_end(tmp_path):
    kwargs = '{"target": 3.0}'
    log = tmp_path / "trpo.h5"
    p = run_script("run_rl_mj.py", "--env_name", ENV_ID, "--env_kwargs", kwargs, "--tiny_policy",
                   "--min_total_sa", 500, "--max_iter", 3, "--save_freq", 1, "--log", log,
                   "--seed", 0, "--num_workers", 1)
    assert p.returncode == 0, p.stderr
    with h5py.File(log) as f:
        args = json.loads(f.attrs["args"])
    assert args["env_name"] == ENV_ID and json.loads(args["env_kwargs"]) == {"target": 3.0}

    # evaluation rebuilds the environment from the log: the observation's second entry is
    # target - x, so the target shows in the sampled data
    p = run_script("eval_policy.py", log, "--num_trajs", 2, "--quiet", "--num_workers", 1)
    assert p.returncode == 0, p.stderr
    data = tmp_path / "expert.h5"
    p = run_script("sample_expert.py", log, "--num_trajs", 4, "--out", data, "--num_workers", 1)
    assert p.returncode == 0, p.stderr
    with h5py.File(data) as f:
        obs = f["obs_B_T_Do"][()]
        assert json.loads(f.attrs["env_kwargs"]) == {"target": 3.0}
    np.testing.assert_allclose(obs[:, :, 0] + obs[:, :, 1], 3.0)

    # imitation from that dataset takes its environment, kwargs included; then a resume
    glog = tmp_path / "gail.h5"
    p = run_script("imitate_mj.py", "--mode", "ga", "--data", data, "--tiny_policy",
                   "--min_total_sa", 500, "--max_iter", 2, "--log", glog, "--num_workers", 1,
                   "--data_subsamp_freq", 5)
    assert p.returncode == 0, p.stderr
    p = run_script("imitate_mj.py", "--resume", "--log", glog, "--max_iter", 3)
    assert p.returncode == 0, p.stderr
    with h5py.File(glog) as f:
        args = json.loads(f.attrs["args"])
        assert len(f["log"]) == 3
    assert args["env_name"] == ENV_ID and json.loads(args["env_kwargs"]) == {"target": 3.0}
