"""Gymnasium environments as policyopt MDPs: the environment registry (Gymnasium ids and
the original ids, with legacy observation adapters) and the `GymMDP` facade the algorithms
sample through (the sampling itself is `imitation.sampler`).

Legacy observation adapters let the original authors' experts (trained on gym 0.x) act in
today's environments; they are selected by the original environment id or by name, never
applied implicitly.
"""
import importlib
import json
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

import policyopt
from imitation.errors import EnvError
from imitation.sampler import SamplerPool, default_batch_size, default_num_workers, rollout_batch
from policyopt import ContinuousSpace, FiniteSpace, TrajBatch

# --------------------------------------------------------------------- observation adapters

def _ant_v1_obs(obs_105):
    """Ant-v5 (cfrc_ext included, 105 dims) -> Ant-v1 layout (111 dims): the world body's six
    contact-force entries, always 0, sat after the first 27 entries."""
    obs = np.asarray(obs_105, dtype=np.float64)
    return np.concatenate([obs[..., :27], np.zeros(obs.shape[:-1] + (6,)), obs[..., 27:]],
                          axis=-1)


def _acrobot_v0_obs(obs_6):
    """Acrobot-v1 [cos t1, sin t1, cos t2, sin t2, dt1, dt2] -> Acrobot-v0 [t1, t2, dt1, dt2]."""
    o = np.asarray(obs_6, dtype=np.float64)
    return np.stack([np.arctan2(o[..., 1], o[..., 0]), np.arctan2(o[..., 3], o[..., 2]),
                     o[..., 4], o[..., 5]], axis=-1)


def _reacher_v1_obs(obs_10):
    """Reacher-v5 (10 dims) -> Reacher-v1 layout (11 dims): the original also held the z of
    fingertip minus target, always 0, as its last entry."""
    obs = np.asarray(obs_10, dtype=np.float64)
    return np.concatenate([obs, np.zeros(obs.shape[:-1] + (1,))], axis=-1)


@dataclass(frozen=True)
class ObsAdapter:
    name: str
    fn: callable
    in_dim: int
    out_dim: int
    description: str


OBS_ADAPTERS = {
    "ant_v1": ObsAdapter("ant_v1", _ant_v1_obs, 105, 111,
                         "Ant-v5 observations in the original Ant-v1 layout (111 dims)"),
    "acrobot_v0": ObsAdapter("acrobot_v0", _acrobot_v0_obs, 6, 4,
                             "Acrobot-v1 observations as the original Acrobot-v0 angles"),
    "reacher_v1": ObsAdapter("reacher_v1", _reacher_v1_obs, 10, 11,
                             "Reacher-v5 observations with the original's zero z (11 dims)"),
}

# Original (gym 0.x) ids -> (Gymnasium id, make kwargs, adapter)
LEGACY_ENV_IDS = {
    "Hopper-v0": ("Hopper-v5", {}, None),
    "Hopper-v1": ("Hopper-v5", {}, None),
    "HalfCheetah-v0": ("HalfCheetah-v5", {}, None),
    "HalfCheetah-v1": ("HalfCheetah-v5", {}, None),
    "Walker2d": ("Walker2d-v5", {}, None),
    "Walker2d-v0": ("Walker2d-v5", {}, None),
    "Walker2d-v1": ("Walker2d-v5", {}, None),
    "Ant-v0": ("Ant-v5", {"include_cfrc_ext_in_observation": True}, "ant_v1"),
    "Ant-v1": ("Ant-v5", {"include_cfrc_ext_in_observation": True}, "ant_v1"),
    # gym registered Acrobot-v0 with timestep_limit=200 (Acrobot-v1 and Gymnasium: 500); the
    # published results show it: behavioural-cloning, FEM and GTAL runs of exactly -200 +/- 0,
    # episodes of length 200. A stuck policy therefore costs -200 there, -500 on Acrobot-v1.
    "Acrobot-v0": ("Acrobot-v1", {"max_episode_steps": 200}, "acrobot_v0"),
    "InvertedPendulum-v1": ("InvertedPendulum-v5", {}, None),
    "Reacher-v1": ("Reacher-v5", {}, "reacher_v1"),
}


# MuJoCo >= 4.0 deprecates an attribute of Gymnasium's own half_cheetah.xml; the model it
# compiles is unchanged, so the warning says nothing about the user's run.
_HARMLESS_MUJOCO_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(msg):
    """MuJoCo's warning handler here: known harmless ones dropped, the rest one line each on
    stderr. Replaces MuJoCo's default, which also appends to MUJOCO_LOG.TXT in the current
    directory."""
    import sys

    if not msg.startswith(_HARMLESS_MUJOCO_WARNINGS):
        print(f"MuJoCo warning: {' '.join(msg.split())}", file=sys.stderr, flush=True)


def install_mujoco_warning_handler():
    """Route MuJoCo's warnings through _mujoco_warning in this process (idempotent; a no-op
    without MuJoCo)."""
    try:
        import mujoco
    except ImportError:
        return
    if mujoco.get_mju_user_warning() is not _mujoco_warning:
        mujoco.set_mju_user_warning(_mujoco_warning)


@dataclass
class EnvSpec:
    """How to build one environment: Gymnasium id, make kwargs, optional obs adapter."""

    env_name: str
    gym_id: str
    make_kwargs: dict = field(default_factory=dict)
    adapter: ObsAdapter = None
    max_traj_len: int = None

    def make(self, render_mode=None):
        import gymnasium as gym

        kwargs = dict(self.make_kwargs)
        if self.max_traj_len is not None:
            # replaces the registered TimeLimit, so episodes may also be longer than the
            # environment's default (the original experts trained with 2000-step episodes)
            kwargs["max_episode_steps"] = self.max_traj_len
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        install_mujoco_warning_handler()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gym.make(self.gym_id, disable_env_checker=True, **kwargs)

    def adapt(self, obs):
        obs = np.asarray(obs, dtype=np.float64)
        return self.adapter.fn(obs) if self.adapter is not None else obs


def parse_env_kwargs(text):
    """The --env_kwargs JSON object as a dict ({} for None or empty); EnvError otherwise."""
    if text in (None, ""):
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise EnvError(f"env_kwargs is not valid JSON ({e.msg} at character {e.pos}): {text}")
    if not isinstance(value, dict):
        raise EnvError("env_kwargs must be a JSON object such as "
                       f"'{{\"ctrl_cost_weight\": 0.1}}', got {text}")
    return value


def import_env_module(env_name):
    """Import the module of a 'package.module:EnvId-v0' id (Gymnasium's convention for
    environments that user packages register) and return the bare id."""
    if ":" not in env_name:
        return env_name
    module, env_id = env_name.split(":", 1)
    # As `python -m` would, find a module in the current directory (last, so that installed
    # packages win); sampling workers are forked and inherit the path.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.split(".")[0] == e.name.split(".")[0]:
            raise EnvError(f"{env_name}: no module {module} in the current directory or on "
                           "the Python path (set PYTHONPATH to the directory that holds it, "
                           "or pip install its package)")
        raise EnvError(f"{env_name}: cannot import {module} ({type(e).__name__}: {e})")
    except SystemExit as e:
        raise EnvError(f"{env_name}: importing {module} called sys.exit({e.code!r}); a module "
                       "that registers environments must not exit")
    except Exception as e:
        raise EnvError(f"{env_name}: cannot import {module} ({type(e).__name__}: {e})")
    return env_id


def resolve_env(env_name, obs_adapter=None, max_traj_len=None, env_kwargs=None):
    """EnvSpec for a Gymnasium id or an original id (e.g. 'Ant-v1' -> Ant-v5 + ant_v1 adapter),
    or 'package.module:EnvId' (the module is imported first: it registers the id).
    `env_kwargs` (a dict or a JSON object) go to gymnasium.make.

    Raises EnvError with a one-line explanation when the id or adapter is unknown.
    """
    import gymnasium as gym

    user_kwargs = parse_env_kwargs(env_kwargs)
    gym_id, kwargs, adapter_name = import_env_module(env_name), {}, None
    if env_name in LEGACY_ENV_IDS:
        gym_id, kwargs, adapter_name = LEGACY_ENV_IDS[env_name]
    if obs_adapter not in (None, "", "none"):
        if obs_adapter not in OBS_ADAPTERS:
            raise EnvError(f"unknown observation adapter {obs_adapter!r}; available: "
                           f"{', '.join(sorted(OBS_ADAPTERS))}")
        adapter_name = obs_adapter
        if obs_adapter == "ant_v1" and gym_id.startswith("Ant-"):
            kwargs = {**kwargs, "include_cfrc_ext_in_observation": True}
    if gym_id not in gym.registry:
        import difflib

        stem = gym_id.split("-")[0].lower()
        ids = list(gym.registry)
        close = sorted(k for k in ids if k.split("-")[0].lower() == stem)[:4]
        by_name = {k.lower(): k for k in ids}
        close += [by_name[k] for k in difflib.get_close_matches(gym_id.lower(), by_name, n=4,
                                                                 cutoff=0.75)
                  if by_name[k] not in close]
        hint = f" (did you mean {', '.join(close[:4])}?)" if close else ""
        raise EnvError(f"unknown environment id {env_name!r}{hint}")
    if max_traj_len is not None and max_traj_len <= 0:
        raise EnvError(f"max_traj_len must be positive, got {max_traj_len}")
    kwargs = {**kwargs, **user_kwargs}
    return EnvSpec(env_name, gym_id, kwargs,
                   OBS_ADAPTERS[adapter_name] if adapter_name else None, max_traj_len)


# ---------------------------------------------------------------------------------------- MDP

# horizon() of an environment with no time limit and no --max_traj_len.
NO_TIME_LIMIT = 10 ** 9


class GymMDP(policyopt.MDP):
    """A Gymnasium environment (any Box or Discrete action space) as a policyopt MDP."""

    def __init__(self, env_name, obs_adapter=None, max_traj_len=None, num_workers=None,
                 env_kwargs=None):
        self.spec = resolve_env(env_name, obs_adapter, max_traj_len, env_kwargs)
        try:
            env = self.spec.make()
        except Exception as e:
            raise EnvError(f"{env_name}: cannot create the environment "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        try:
            import gymnasium as gym

            obs, _ = env.reset(seed=0)
            ad = self.spec.adapter
            if ad is not None and np.shape(obs)[-1:] != (ad.in_dim,):
                raise EnvError(f"observation adapter {ad.name} expects {ad.in_dim}-dim "
                               f"observations but {self.spec.gym_id} gives {np.shape(obs)[-1]}")
            obs_dim = int(np.prod(self.spec.adapt(obs).shape))
            if len(np.shape(obs)) != 1:
                raise EnvError(f"{env_name}: only flat (1-D) observations are supported, got "
                               f"shape {np.shape(obs)}")
            self.obs_space = ContinuousSpace(obs_dim)
            asp = env.action_space
            if isinstance(asp, gym.spaces.Discrete):
                if asp.start != 0:
                    raise EnvError(f"{env_name}: Discrete action spaces must start at 0")
                self.action_space = FiniteSpace(int(asp.n))
            elif isinstance(asp, gym.spaces.Box) and len(asp.shape) == 1:
                self.action_space = ContinuousSpace(asp.shape[0], asp.low, asp.high)
            else:
                raise EnvError(f"{env_name}: action space {asp} is not a Box or Discrete space")
            # the registered limit, or max_traj_len, which make() put in its place
            self.max_episode_steps = env.spec.max_episode_steps if env.spec else None
            # One step on this probe (closed below; the sampler makes its own): kwargs of the
            # wrong type, or an environment that returns NaN, fail here in one line rather
            # than in the first iteration's sampling or the first policy step.
            try:
                obs1 = env.step(asp.sample())[0]
            except Exception as e:
                raise EnvError(f"{env_name}: the environment fails at its first step "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                               + (f"; made with kwargs {self.spec.make_kwargs}"
                                  if self.spec.make_kwargs else ""))
            for when, o in (("reset", obs), ("its first step", obs1)):
                if not np.all(np.isfinite(np.asarray(o, dtype=np.float64))):
                    raise EnvError(f"{env_name}: the observation after {when} contains NaN "
                                   "or inf")
        finally:
            env.close()
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self._pools = {}
        self._local_envs = []

    @property
    def env_name(self):
        return self.spec.env_name

    def horizon(self, cfg_max_traj_len=None):
        limits = [x for x in (self.max_episode_steps, cfg_max_traj_len) if x]
        return min(limits) if limits else NO_TIME_LIMIT

    def sim_mp(self, policy, obsfeat_fn, cfg, rng, deterministic=False, progress=None):
        """Sample whole trajectories per `cfg` (a SimConfig) with `policy`.

        `rng` (np.random.Generator) seeds everything; `obsfeat_fn` maps observations to the
        policy's features (None: identity); `progress`: a label to show a progress bar over
        the trajectories (for long one-off sampling such as datasets and evaluations)."""
        min_sa = cfg.min_total_sa if cfg.min_total_sa is not None else -1
        min_trajs = cfg.min_num_trajs if cfg.min_num_trajs is not None else -1
        if min_sa <= 0 and min_trajs <= 0:
            raise ValueError("SimConfig needs min_total_sa > 0 or min_num_trajs > 0")
        horizon = self.horizon(cfg.max_traj_len)
        batch_size = cfg.batch_size or default_batch_size(min_sa, min_trajs, horizon,
                                                          max(self.num_workers, 1))
        base_seed = int(rng.integers(2 ** 63 - 1))
        bar = None
        if progress:
            import sys

            from tqdm import tqdm

            total = min_trajs if min_trajs > 0 else None
            bar = tqdm(total=total, desc=progress, unit="traj", file=sys.stderr, leave=False)
        try:
            results = self._sample(policy, obsfeat_fn, min_sa, min_trajs, horizon, batch_size,
                                   base_seed, deterministic,
                                   (lambda t: bar.update(1)) if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        results = [r for r in results if r is not None]
        lengths = np.concatenate([r[5] for r in results])
        stacked = [np.concatenate([r[k] for r in results]) for k in range(5)]
        if not np.all(np.isfinite(stacked[0])):
            # a learner fed NaN fails later and obscurely (a KL of NaN in the policy step)
            raise EnvError(f"{self.env_name}: the environment returned observations that "
                           "contain NaN or inf")
        return TrajBatch.from_stacked(*stacked, lengths)

    def _sample(self, policy, obsfeat_fn, min_sa, min_trajs, horizon, batch_size, base_seed,
                deterministic, on_traj_done):
        if self.num_workers <= 0:
            while len(self._local_envs) < batch_size:
                self._local_envs.append(self.spec.make())
            return [rollout_batch(self._local_envs[:batch_size], self.spec, policy,
                                  obsfeat_fn, min_sa, min_trajs, horizon,
                                  np.random.default_rng([base_seed, 0]), deterministic,
                                  on_traj_done)]
        key = (id(policy), id(obsfeat_fn), batch_size)
        if key not in self._pools:
            self._pools[key] = SamplerPool(self.spec, policy, obsfeat_fn, self.num_workers,
                                           batch_size)
        seeds = [[base_seed, w] for w in range(self.num_workers)]
        return self._pools[key].sample(min_sa, min_trajs, horizon, seeds, deterministic,
                                       on_traj_done)

    def close(self):
        for pool in self._pools.values():
            pool.close()
        self._pools = {}
        for env in self._local_envs:
            env.close()
        self._local_envs = []


def sample_random_returns(env_name, obs_adapter, num_trajs, seed):
    """Returns and lengths of `num_trajs` episodes of uniformly random actions (the 'random'
    end of the paper's normalized scores)."""
    spec = resolve_env(env_name, obs_adapter)
    env = spec.make()
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    rets, lens = [], []
    try:
        for _ in range(num_trajs):
            env.reset(seed=int(rng.integers(2 ** 31 - 1)))
            total, n, done = 0., 0, False
            while not done:
                _, r, terminated, truncated, _ = env.step(env.action_space.sample())
                total, n, done = total + r, n + 1, terminated or truncated
            rets.append(total)
            lens.append(n)
    finally:
        env.close()
    return np.array(rets), np.array(lens)
