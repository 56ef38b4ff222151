"""imitation.envs: environment ids, legacy observation adapters, GymMDP spaces, and the
correctness of (multi-process) trajectory sampling."""
import os

import numpy as np
import pytest

from imitation import envs, sampler
from imitation.envs import LEGACY_ENV_IDS, OBS_ADAPTERS, GymMDP, resolve_env
from imitation.errors import EnvError
from policyopt import ContinuousSpace, FiniteSpace, SimConfig, TrajBatch, nn, rl

# ----------------------------------------------------------------------------- resolve_env


def test_unknown_env_id_raises_env_error_with_suggestions():
    with pytest.raises(EnvError) as ei:
        resolve_env("CartPole-v99")
    msg = str(ei.value)
    assert "CartPole-v99" in msg
    assert "CartPole-v1" in msg  # "did you mean ..."
    assert "\n" not in msg
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize("typo,meant", [("Hoper-v5", "Hopper-v5"),
                                        ("halfcheetah-v5", "HalfCheetah-v5"),
                                        ("CartPol-v1", "CartPole-v1")])
def test_misspelt_env_id_suggests_the_registered_one(typo, meant):
    with pytest.raises(EnvError, match=f"did you mean .*{meant}"):
        resolve_env(typo)


def test_completely_unknown_env_id():
    with pytest.raises(EnvError, match="NoSuchEnvironment-v3"):
        resolve_env("NoSuchEnvironment-v3")


def test_legacy_ant_resolves_to_v5_with_adapter():
    spec = resolve_env("Ant-v1")
    assert spec.env_name == "Ant-v1"
    assert spec.gym_id == "Ant-v5"
    assert spec.adapter is OBS_ADAPTERS["ant_v1"]
    assert spec.make_kwargs.get("include_cfrc_ext_in_observation") is True


def test_legacy_acrobot_resolves_to_v1_with_adapter():
    spec = resolve_env("Acrobot-v0")
    assert spec.gym_id == "Acrobot-v1"
    assert spec.adapter is OBS_ADAPTERS["acrobot_v0"]


def test_legacy_acrobot_keeps_the_originals_200_step_limit():
    """gym's Acrobot-v0 ended episodes at 200 steps, Acrobot-v1 at 500: a policy that never
    swings up returns -200, as the published runs of exactly -200 +/- 0 did."""
    mdp = GymMDP("Acrobot-v0", num_workers=0)
    assert mdp.horizon() == 200
    env = resolve_env("Acrobot-v0").make()
    try:
        env.reset(seed=0)
        steps, ret, done = 0, 0., False
        while not done:
            _, r, term, trunc, _ = env.step(1)
            steps, ret, done = steps + 1, ret + r, term or trunc
        assert (steps, ret, term) == (200, -200., False)
    finally:
        env.close()
    assert GymMDP("Acrobot-v1", num_workers=0).horizon() == 500
    assert GymMDP("Acrobot-v0", max_traj_len=50, num_workers=0).horizon() == 50


def test_legacy_reacher_appends_the_originals_zero_z():
    """Reacher-v1 observed fingertip minus target in 3D, its z always 0; Reacher-v5 drops it."""
    spec = resolve_env("Reacher-v1")
    assert spec.gym_id == "Reacher-v5" and spec.adapter is OBS_ADAPTERS["reacher_v1"]
    env = spec.make()
    try:
        raw, _ = env.reset(seed=0)
    finally:
        env.close()
    assert raw.shape == (10,)
    out = spec.adapt(raw)
    assert out.shape == (11,)
    np.testing.assert_array_equal(out[:10], raw)
    assert out[10] == 0.
    x = np.arange(20.).reshape(2, 10)
    np.testing.assert_array_equal(OBS_ADAPTERS["reacher_v1"].fn(x), np.c_[x, np.zeros(2)])


@pytest.mark.parametrize("legacy,gym_id", [("Hopper-v1", "Hopper-v5"),
                                           ("HalfCheetah-v0", "HalfCheetah-v5"),
                                           ("Walker2d", "Walker2d-v5"),
                                           ("InvertedPendulum-v1", "InvertedPendulum-v5")])
def test_legacy_ids_without_adapter(legacy, gym_id):
    spec = resolve_env(legacy)
    assert spec.gym_id == gym_id
    assert spec.adapter is None


@pytest.mark.parametrize("name", ["Hopper-v5", "Ant-v5", "Acrobot-v1", "CartPole-v1"])
def test_plain_ids_never_get_an_adapter(name):
    spec = resolve_env(name)
    assert spec.gym_id == name
    assert spec.adapter is None
    assert "include_cfrc_ext_in_observation" not in spec.make_kwargs


def test_every_legacy_adapter_name_exists():
    for legacy, (_, _, adapter) in LEGACY_ENV_IDS.items():
        assert adapter is None or adapter in OBS_ADAPTERS, legacy


def test_explicit_adapter():
    spec = resolve_env("Acrobot-v1", obs_adapter="acrobot_v0")
    assert spec.adapter is OBS_ADAPTERS["acrobot_v0"]
    spec = resolve_env("Ant-v5", obs_adapter="ant_v1")
    assert spec.adapter is OBS_ADAPTERS["ant_v1"]
    assert spec.make_kwargs.get("include_cfrc_ext_in_observation") is True
    assert resolve_env("Hopper-v5", obs_adapter="none").adapter is None


def test_unknown_adapter_raises_env_error():
    with pytest.raises(EnvError) as ei:
        resolve_env("Acrobot-v1", obs_adapter="acrobot_v9")
    msg = str(ei.value)
    assert "acrobot_v9" in msg
    assert "acrobot_v0" in msg and "ant_v1" in msg  # lists the available ones


def test_nonpositive_max_traj_len_raises():
    with pytest.raises(EnvError):
        resolve_env("CartPole-v1", max_traj_len=0)


# -------------------------------------------------------------------------------- adapters

def test_acrobot_adapter_recovers_angles_from_raw_state():
    spec = resolve_env("Acrobot-v0")
    env = spec.make()
    try:
        obs, _ = env.reset(seed=3)
        rng = np.random.default_rng(0)
        for _ in range(60):
            adapted = spec.adapt(obs)
            assert adapted.shape == (4,)
            state = np.asarray(env.unwrapped.state, dtype=np.float64)
            # angles: equal modulo 2 pi; arctan2 lands in [-pi, pi]
            dang = np.angle(np.exp(1j * (adapted[:2] - state[:2])))
            np.testing.assert_allclose(dang, 0., atol=1e-5)
            assert np.all(np.abs(adapted[:2]) <= np.pi + 1e-12)
            np.testing.assert_allclose(adapted[2:], state[2:], rtol=1e-5, atol=1e-5)
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()


def test_acrobot_adapter_batched():
    th = np.array([[0.3, -2.5], [3.0, 1.0]])
    o = np.concatenate([np.cos(th[:, :1]), np.sin(th[:, :1]), np.cos(th[:, 1:]),
                        np.sin(th[:, 1:]), np.array([[1., 2.], [3., 4.]])], axis=1)
    out = OBS_ADAPTERS["acrobot_v0"].fn(o)
    np.testing.assert_allclose(out, [[0.3, -2.5, 1., 2.], [3.0, 1.0, 3., 4.]], atol=1e-12)


def test_ant_adapter_inserts_six_zeros_after_27():
    spec = resolve_env("Ant-v1")
    env = spec.make()
    try:
        raw, _ = env.reset(seed=0)
        raw, *_ = env.step(env.action_space.sample())
    finally:
        env.close()
    assert raw.shape == (105,)
    out = spec.adapt(raw)
    assert out.shape == (111,)
    np.testing.assert_array_equal(out[:27], raw[:27])
    np.testing.assert_array_equal(out[27:33], 0.)
    np.testing.assert_array_equal(out[33:], raw[27:])
    # batched
    x = np.arange(2 * 105, dtype=np.float64).reshape(2, 105)
    y = OBS_ADAPTERS["ant_v1"].fn(x)
    assert y.shape == (2, 111)
    np.testing.assert_array_equal(y[:, 27:33], 0.)
    np.testing.assert_array_equal(np.delete(y, np.s_[27:33], axis=1), x)


# ---------------------------------------------------------------------------- GymMDP spaces

def test_gymmdp_spaces_cartpole():
    mdp = GymMDP("CartPole-v1", num_workers=0)
    assert isinstance(mdp.action_space, FiniteSpace) and mdp.action_space.size == 2
    assert isinstance(mdp.obs_space, ContinuousSpace) and mdp.obs_space.dim == 4
    assert mdp.max_episode_steps == 500
    mdp.close()


def test_gymmdp_spaces_pendulum():
    mdp = GymMDP("Pendulum-v1", num_workers=0)
    assert isinstance(mdp.action_space, ContinuousSpace) and mdp.action_space.dim == 1
    np.testing.assert_allclose(mdp.action_space.low, [-2.])
    np.testing.assert_allclose(mdp.action_space.high, [2.])
    assert mdp.obs_space.dim == 3
    assert mdp.max_episode_steps == 200
    mdp.close()


def test_gymmdp_spaces_hopper():
    mdp = GymMDP("Hopper-v5", num_workers=0)
    assert mdp.obs_space.dim == 11
    assert isinstance(mdp.action_space, ContinuousSpace) and mdp.action_space.dim == 3
    assert mdp.max_episode_steps == 1000
    mdp.close()


def test_gymmdp_spaces_with_adapters():
    assert GymMDP("Acrobot-v0", num_workers=0).obs_space.dim == 4
    assert GymMDP("Acrobot-v1", num_workers=0).obs_space.dim == 6
    mdp = GymMDP("CartPole-v1", max_traj_len=50, num_workers=0)
    assert mdp.max_episode_steps == 50


# ------------------------------------------------------------------------------- sampling

def _gibbs_policy(mdp, seed=0, Df=None):
    """A tiny GibbsPolicy with random (non-zero) output weights, so that the action
    distribution depends on the observation."""
    nn.seed_initializers(seed)
    space = mdp.obs_space if Df is None else ContinuousSpace(Df)
    pol = rl.GibbsPolicy('[{"type": "fc", "n": 8}, {"type": "nonlin", "func": "tanh"}]', space,
                         mdp.action_space, enable_obsnorm=False)
    pol.set_params(np.random.default_rng(seed).normal(scale=0.5, size=pol.get_num_params()))
    return pol


@pytest.fixture(scope="module")
def cartpole_mp():
    mdp = GymMDP("CartPole-v1", num_workers=2)
    pol = _gibbs_policy(mdp)
    yield mdp, pol
    mdp.close()


@pytest.fixture(scope="module")
def cartpole_local():
    mdp = GymMDP("CartPole-v1", num_workers=0)
    pol = _gibbs_policy(mdp)
    yield mdp, pol
    mdp.close()


def _check_cartpole_batch(batch, pol, horizon):
    """Whole, uncorrupted CartPole trajectories (see design.md section 8 on autoreset)."""
    import gymnasium as gym

    assert isinstance(batch, TrajBatch)
    lengths = batch.obs.lengths
    assert np.all(lengths >= 1)
    assert lengths.sum() == batch.num_sa == batch.obs.stacked.shape[0]
    for f in ("obsfeat", "adist", "a", "r"):
        np.testing.assert_array_equal(getattr(batch, f).lengths, lengths)
    assert batch.obs.stacked.shape[1] == 4
    assert batch.a.stacked.shape[1] == 1
    assert set(np.unique(batch.a.stacked)) <= {0, 1}
    # every transition's reward is 1 in CartPole (a reset step would give 0 or wrong obs)
    np.testing.assert_array_equal(batch.r.stacked, 1.)
    np.testing.assert_allclose(batch.returns, lengths)
    # obs features are the observations (obsfeat_fn None); adist belongs to the same row
    np.testing.assert_array_equal(batch.obsfeat.stacked, batch.obs.stacked)
    np.testing.assert_allclose(batch.adist.stacked,
                               pol.compute_actiondist_params(batch.obs.stacked), atol=1e-6)
    np.testing.assert_array_equal(batch.time.stacked, batch.obs.row_index[1])

    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    try:
        for i in range(len(batch)):
            obs, a = batch.obs[i], batch.a[i][:, 0]
            T = len(obs)
            # a fresh episode starts in CartPole's reset distribution, U(-0.05, 0.05)^4
            assert np.all(np.abs(obs[0]) <= 0.05 + 1e-7), (i, obs[0])
            for t in range(T):
                env.state = np.asarray(obs[t], dtype=np.float64)
                env.steps_beyond_terminated = None  # re-arm after a terminal step
                nxt, r, terminated, _, _ = env.step(int(a[t]))
                assert r == 1.
                if t + 1 < T:
                    np.testing.assert_allclose(nxt, obs[t + 1], rtol=1e-5, atol=1e-5,
                                               err_msg=f"traj {i} step {t}")
                    assert not terminated, f"traj {i} continued after termination at {t}"
                else:
                    # whole trajectory: ends by termination, or exactly at the horizon
                    assert terminated or T == horizon, (i, T)
    finally:
        env.close()


def test_sim_mp_min_total_sa_whole_trajectories(cartpole_mp):
    mdp, pol = cartpole_mp
    cfg = SimConfig(min_total_sa=600)
    batch = mdp.sim_mp(pol, None, cfg, np.random.default_rng(1))
    assert batch.num_sa >= 600
    _check_cartpole_batch(batch, pol, horizon=500)


def test_sim_mp_min_total_sa_in_process(cartpole_local):
    mdp, pol = cartpole_local
    batch = mdp.sim_mp(pol, None, SimConfig(min_total_sa=400, batch_size=4),
                       np.random.default_rng(2))
    assert batch.num_sa >= 400
    _check_cartpole_batch(batch, pol, horizon=500)


@pytest.mark.parametrize("n", [1, 5, 8])
def test_sim_mp_min_num_trajs_exact(cartpole_mp, n):
    mdp, pol = cartpole_mp
    batch = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=n), np.random.default_rng(n))
    assert len(batch) == n
    _check_cartpole_batch(batch, pol, horizon=500)


def test_sim_mp_min_num_trajs_exact_in_process(cartpole_local):
    mdp, pol = cartpole_local
    batch = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=7), np.random.default_rng(0))
    assert len(batch) == 7


def test_sim_mp_both_bounds(cartpole_mp):
    mdp, pol = cartpole_mp
    batch = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=6, min_total_sa=300),
                       np.random.default_rng(5))
    assert len(batch) >= 6 and batch.num_sa >= 300
    _check_cartpole_batch(batch, pol, horizon=500)


def test_sim_mp_requires_a_bound(cartpole_local):
    mdp, pol = cartpole_local
    with pytest.raises(ValueError):
        mdp.sim_mp(pol, None, SimConfig(), np.random.default_rng(0))


def test_sim_mp_deterministic_policy_is_argmax(cartpole_local):
    mdp, pol = cartpole_local
    batch = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=3), np.random.default_rng(0),
                       deterministic=True)
    np.testing.assert_array_equal(batch.a.stacked[:, 0], batch.adist.stacked.argmax(axis=1))


def _assert_same_batch(b1, b2):
    np.testing.assert_array_equal(b1.obs.lengths, b2.obs.lengths)
    for f in ("obs", "obsfeat", "adist", "a", "r"):
        np.testing.assert_array_equal(getattr(b1, f).stacked, getattr(b2, f).stacked)


def _differ(b1, b2):
    return (len(b1) != len(b2) or not np.array_equal(b1.obs.lengths, b2.obs.lengths)
            or not np.array_equal(b1.obs.stacked, b2.obs.stacked))


@pytest.mark.parametrize("num_workers", [2, 0])
def test_sampling_is_deterministic_given_seed(num_workers):
    cfg = SimConfig(min_total_sa=300)
    mdp = GymMDP("CartPole-v1", num_workers=num_workers)
    other = GymMDP("CartPole-v1", num_workers=num_workers)
    try:
        pol = _gibbs_policy(mdp)
        b1 = mdp.sim_mp(pol, None, cfg, np.random.default_rng(123))
        b2 = mdp.sim_mp(pol, None, cfg, np.random.default_rng(123))  # same MDP, reused envs
        b3 = other.sim_mp(pol, None, cfg, np.random.default_rng(123))  # a fresh MDP
        b4 = mdp.sim_mp(pol, None, cfg, np.random.default_rng(124))
    finally:
        mdp.close()
        other.close()
    _assert_same_batch(b1, b2)
    _assert_same_batch(b1, b3)
    assert _differ(b1, b4)


def test_max_traj_len_cuts_episodes_cartpole(cartpole_mp):
    mdp, pol = cartpole_mp
    batch = mdp.sim_mp(pol, None, SimConfig(min_total_sa=300, max_traj_len=12),
                       np.random.default_rng(7))
    assert batch.obs.lengths.max() == 12
    _check_cartpole_batch(batch, pol, horizon=12)


def test_max_traj_len_in_gymmdp():
    mdp = GymMDP("CartPole-v1", max_traj_len=9, num_workers=0)
    try:
        pol = _gibbs_policy(mdp)
        batch = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=10), np.random.default_rng(0))
        assert mdp.horizon() == 9
        assert batch.obs.lengths.max() <= 9
        _check_cartpole_batch(batch, pol, horizon=9)
    finally:
        mdp.close()


def test_max_traj_len_pendulum_exact_lengths():
    """Pendulum never terminates: every episode lasts exactly the horizon."""
    mdp = GymMDP("Pendulum-v1", num_workers=0)
    try:
        nn.seed_initializers(0)
        pol = rl.GaussianPolicy('[{"type": "fc", "n": 8}, {"type": "nonlin", "func": "tanh"}]',
                                mdp.obs_space, mdp.action_space)
        b = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=3, max_traj_len=37),
                       np.random.default_rng(0))
        np.testing.assert_array_equal(b.obs.lengths, [37, 37, 37])
        b = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=2), np.random.default_rng(0))
        np.testing.assert_array_equal(b.obs.lengths, [200, 200])
        assert b.a.stacked.shape == (400, 1) and b.adist.stacked.shape == (400, 2)
    finally:
        mdp.close()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_max_traj_len_longer_than_the_environment_limit(num_workers):
    """GymMDP's max_traj_len replaces the registered time limit (Pendulum-v1: 200), so the
    original experts' 2000-step training episodes can be reproduced on 1000-step envs."""
    mdp = GymMDP("Pendulum-v1", max_traj_len=450, num_workers=num_workers)
    try:
        assert mdp.horizon() == 450
        nn.seed_initializers(0)
        pol = rl.GaussianPolicy('[{"type": "fc", "n": 8}, {"type": "nonlin", "func": "tanh"}]',
                                mdp.obs_space, mdp.action_space)
        b = mdp.sim_mp(pol, None, SimConfig(min_num_trajs=2), np.random.default_rng(0))
        np.testing.assert_array_equal(b.obs.lengths, [450, 450])
    finally:
        mdp.close()


# ---------------------------------------------------------------------------- worker pool

def _pid_feature(obs_B_Do):
    """obs features with the sampling process's pid appended (runs inside the worker)."""
    return np.concatenate([obs_B_Do, np.full((len(obs_B_Do), 1), float(os.getpid()))], axis=1)


def test_worker_pool_uses_two_processes_and_close_terminates_them():
    mdp = GymMDP("CartPole-v1", num_workers=2)
    try:
        pol = _gibbs_policy(mdp, Df=5)
        batch = mdp.sim_mp(pol, _pid_feature, SimConfig(min_num_trajs=6),
                           np.random.default_rng(0))
        assert len(batch) == 6
        pools = list(mdp._pools.values())
        assert len(pools) == 1
        pool = pools[0]
        assert isinstance(pool, sampler.SamplerPool)
        procs = list(pool.procs)
        assert len(procs) == 2
        assert all(p.is_alive() for p in procs)
        worker_pids = {p.pid for p in procs}
        assert len(worker_pids) == 2 and os.getpid() not in worker_pids
        # the transitions really were sampled in the two worker processes
        sampled_pids = {int(x) for x in batch.obsfeat.stacked[:, 4]}
        assert sampled_pids == worker_pids
        np.testing.assert_array_equal(batch.obsfeat.stacked[:, :4], batch.obs.stacked)
        # the pool persists across calls
        mdp.sim_mp(pol, _pid_feature, SimConfig(min_num_trajs=6), np.random.default_rng(1))
        assert list(mdp._pools.values())[0] is pool
    finally:
        mdp.close()
    for p in procs:
        p.join(timeout=10)
        assert not p.is_alive()
        assert p.exitcode is not None
    assert mdp._pools == {}


def test_split_quota():
    assert [sampler.split_quota(7, 3, w) for w in range(3)] == [3, 2, 2]
    assert sum(sampler.split_quota(1001, 2, w) for w in range(2)) == 1001
    assert sampler.split_quota(-1, 2, 0) == -1
    assert sampler.split_quota(None, 2, 1) == -1


# ------------------------------------------------------------------------- MuJoCo warnings

def test_mujoco_warnings_one_line_each_harmless_ones_dropped(capsys):
    envs._mujoco_warning("Nan, Inf or huge value in QACC at DOF 0.\n  The simulation is "
                         "unstable. Time = 0.1200.")
    envs._mujoco_warning("compiler attribute 'settotalmass' is deprecated and will be removed")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["MuJoCo warning: Nan, Inf or huge value in QACC at DOF 0. The "
                                "simulation is unstable. Time = 0.1200."]


def test_making_halfcheetah_prints_nothing_and_writes_no_mujoco_log(tmp_path):
    """Gymnasium's half_cheetah.xml sets `settotalmass`, which MuJoCo 4 reports by default on
    stderr and in MUJOCO_LOG.TXT in the working directory; building the environment here
    leaves both alone (a bad-input run must end with one line on stderr)."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("from imitation.envs import resolve_env\n"
            "env = resolve_env('HalfCheetah-v5').make()\n"
            "env.reset(seed=0)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=repo), timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert os.listdir(tmp_path) == []
