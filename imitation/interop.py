"""Expert data in and out of the field's formats: Minari datasets and D4RL-style flat arrays.

The project's dataset (`imitation.data`) holds whole trajectories, right-padded:
``obs_B_T_Do``, ``a_B_T_Da`` (integers with Da = 1 for discrete actions), ``r_B_T``, ``len_B``.
An import also keeps what the formats know and the layout does not: ``terminated_B`` and
``truncated_B`` (how each episode ended) and ``obs_final_B_Do`` (the observation after the last
action, which Minari stores and training does not use), with the source in the ``source``
attribute.

* **Minari** (Farama's standard for offline datasets, the successor of D4RL): episodes of
  T actions and T + 1 observations; the last observation goes to ``obs_final_B_Do``.
* **Flat files** (D4RL's layout; ``.npz`` or ``.hdf5``/``.h5``): one row per step,
  ``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts``; an episode ends at a
  row whose terminal or timeout flag is set.

Every problem with the input is a one-line `UserError`.
"""
import os
import warnings
from dataclasses import dataclass

import numpy as np

from imitation.errors import UserError

FLAT_COLUMNS = ("observations", "actions", "rewards", "terminals", "timeouts")


@dataclass
class Episodes:
    """Episodes as lists of per-episode arrays, the common ground of every format."""

    obs: list          # each (T, Do) float64
    actions: list      # each (T, Da): float64, or int64 with Da = 1 for discrete actions
    rewards: list      # each (T,)
    terminated: np.ndarray   # (B,) bool: the episode ended by termination
    truncated: np.ndarray    # (B,) bool: ... by a time limit (or another truncation)
    obs_final: list = None   # each (Do,): the observation after the last action, if known
    env_name: str = None
    source: str = ""
    env_kwargs: dict = None  # keyword arguments the environment was made with (gymnasium.make)

    def __len__(self):
        return len(self.obs)


def _check_finite(name, x, where):
    if np.issubdtype(np.asarray(x).dtype, np.floating) and not np.all(np.isfinite(x)):
        raise UserError(f"{where}: {name} contains NaN or inf")


def _flat_actions(a, where, discrete):
    a = np.asarray(a)
    if discrete:
        if not np.issubdtype(a.dtype, np.integer):
            if not np.all(a == np.round(a)):
                raise UserError(f"{where}: discrete actions are not whole numbers")
            a = a.astype(np.int64)
        return a.reshape(len(a), -1).astype(np.int64)
    return a.reshape(len(a), -1).astype(np.float64)


# --------------------------------------------------------------------------------- Minari

def _require_minari():
    try:
        import minari
    except ImportError:
        raise UserError("Minari is not installed: pip install -e \".[datasets]\"")
    return minari


def read_minari(dataset_id):
    """Episodes of a Minari dataset in the local store (``minari download ID`` fetches one)."""
    minari = _require_minari()

    local = minari.list_local_datasets()
    if dataset_id not in local:
        import difflib

        close = difflib.get_close_matches(dataset_id, list(local), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"no Minari dataset {dataset_id!r} in the local store "
                        f"($MINARI_DATASETS_PATH or ~/.minari/datasets){hint}; "
                        f"`minari download {dataset_id}` fetches a remote one")
    where = f"Minari dataset {dataset_id}"
    try:
        ds = minari.load_dataset(dataset_id)
    except Exception as e:  # a truncated or foreign main_data.hdf5, a broken metadata file
        raise UserError(f"{where} cannot be read ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})")
    try:
        return _read_minari_episodes(ds, dataset_id, where)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{where} cannot be read ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})")


def _read_minari_episodes(ds, dataset_id, where):
    import gymnasium as gym

    if not isinstance(ds.observation_space, gym.spaces.Box):
        raise UserError(f"{where}: observations are {type(ds.observation_space).__name__}; only "
                        "flat Box observations are supported")
    discrete = isinstance(ds.action_space, gym.spaces.Discrete)
    if not discrete and not isinstance(ds.action_space, gym.spaces.Box):
        raise UserError(f"{where}: actions are {type(ds.action_space).__name__}; only Box and "
                        "Discrete actions are supported")
    if discrete and ds.action_space.start != 0:
        raise UserError(f"{where}: discrete actions start at {ds.action_space.start}, not 0")
    eps = Episodes([], [], [], None, None, [], source=f"minari:{dataset_id}")
    term, trunc = [], []
    for ep in ds.iterate_episodes():
        obs = np.asarray(ep.observations, dtype=np.float64)
        T = len(ep.rewards)
        if obs.ndim != 2 or len(obs) != T + 1 or len(ep.actions) != T:
            raise UserError(f"{where}: episode {ep.id} has {len(obs)} observations, "
                            f"{len(ep.actions)} actions and {T} rewards (expected T + 1, T, T)")
        if T == 0:
            raise UserError(f"{where}: episode {ep.id} is empty")
        if not (ep.terminations[-1] or ep.truncations[-1]):
            raise UserError(f"{where}: episode {ep.id} never ends (its last step is neither "
                            "terminated nor truncated)")
        for name, x in (("observations", obs), ("actions", ep.actions), ("rewards", ep.rewards)):
            _check_finite(name, x, f"{where}, episode {ep.id}")
        eps.obs.append(obs[:-1])
        eps.obs_final.append(obs[-1])
        eps.actions.append(_flat_actions(ep.actions, where, discrete))
        eps.rewards.append(np.asarray(ep.rewards, dtype=np.float64))
        term.append(bool(ep.terminations[-1]))
        trunc.append(bool(ep.truncations[-1]) and not bool(ep.terminations[-1]))
    if not eps.obs:
        raise UserError(f"{where} holds no episodes")
    eps.terminated, eps.truncated = np.array(term), np.array(trunc)
    env_spec = ds.spec.env_spec
    if env_spec is not None:
        eps.env_name = _env_name_of_spec(env_spec)
        eps.env_kwargs = dict(env_spec.kwargs) or None
    return eps


def _env_name_of_spec(env_spec):
    """The id to make a recorded Gymnasium EnvSpec with: its id when registered here, else
    'module:id' from its entry point (Gymnasium's convention for user packages, whose import
    registers the id)."""
    import gymnasium as gym

    if env_spec.id in gym.registry:
        return env_spec.id
    ep = env_spec.entry_point
    if isinstance(ep, str) and ":" in ep:
        return f"{ep.split(':', 1)[0]}:{env_spec.id}"
    return env_spec.id


def _env_spec_for_export(env_name, env_kwargs):
    """A Gymnasium EnvSpec that records the environment and its kwargs, for Minari; None when
    this machine cannot resolve the id."""
    import dataclasses

    import gymnasium as gym

    from imitation.envs import import_env_module

    try:
        bare = import_env_module(env_name)
    except Exception:
        return None
    if bare not in gym.registry:
        return None
    spec = gym.spec(bare)
    return dataclasses.replace(spec, kwargs={**spec.kwargs, **(env_kwargs or {})})


def check_minari_id(dataset_id):
    """UserError unless `dataset_id` is a valid Minari id, (namespace/)name-vN."""
    _require_minari()
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        _, _, version = parse_dataset_id(dataset_id)
    except ValueError:
        version = None
    if version is None:
        raise UserError(f"{dataset_id!r} is not a Minari dataset id: expected "
                        "(namespace/)name-vN, e.g. cartpole/gail-expert-v0")


def write_minari(eps, dataset_id, description=None):
    """Write episodes as a Minari dataset in the local store. The observation after the last
    action is the stored one (``obs_final_B_Do``) or, when the dataset has none, a copy of the
    last observation (said in the dataset's description)."""
    minari = _require_minari()
    import shutil

    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer

    check_minari_id(dataset_id)
    if dataset_id in minari.list_local_datasets():
        raise UserError(f"a Minari dataset {dataset_id!r} already exists in the local store "
                        f"(remove it with `minari delete {dataset_id}`)")
    buffers = []
    copied_final = eps.obs_final is None
    for b in range(len(eps)):
        final = eps.obs[b][-1] if copied_final else eps.obs_final[b]
        T = len(eps.rewards[b])
        terms = np.zeros(T, dtype=bool)
        truncs = np.zeros(T, dtype=bool)
        terms[-1] = eps.terminated[b]
        truncs[-1] = eps.truncated[b]
        a = eps.actions[b]
        discrete = np.issubdtype(a.dtype, np.integer)
        buffers.append(EpisodeBuffer(
            id=b, observations=np.concatenate([eps.obs[b], final[None]]),
            actions=a[:, 0] if discrete else a,
            rewards=list(eps.rewards[b]), terminations=list(terms), truncations=list(truncs),
            infos={}))
    Do = eps.obs[0].shape[1]
    a0 = eps.actions[0]
    if np.issubdtype(a0.dtype, np.integer):
        action_space = gym.spaces.Discrete(int(max(a.max() for a in eps.actions)) + 1)
    else:
        action_space = gym.spaces.Box(-np.inf, np.inf, (a0.shape[1],), np.float64)
    # float64 spaces: the project's data is float64, and an import gives back the same arrays
    note = description or f"exported from {eps.source}"
    if copied_final:
        note += ("; the observation after each episode's last action was not recorded and is a "
                 "copy of the last observation")
    env = _env_spec_for_export(eps.env_name, eps.env_kwargs) if eps.env_name else None
    if env is None and eps.env_name:
        note += f"; recorded in environment {eps.env_name}"
        if eps.env_kwargs:
            note += f" made with {eps.env_kwargs}"
    from minari.utils import get_dataset_path

    store_dir = get_dataset_path(dataset_id)
    existed = os.path.exists(store_dir)
    try:
        with warnings.catch_warnings():
            # Minari's reminders to fill author, permalink...; Gymnasium's for old versions
            warnings.simplefilter("ignore")
            return minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env,
                observation_space=gym.spaces.Box(-np.inf, np.inf, (Do,), np.float64),
                action_space=action_space, algorithm_name="expert (policyopt)",
                description=note, ref_min_score=0., ref_max_score=1.)
    except BaseException as e:
        # never leave a half-written dataset in the store: it breaks every later listing
        if not existed and os.path.exists(store_dir):
            shutil.rmtree(store_dir, ignore_errors=True)
        if isinstance(e, Exception):
            raise UserError(f"cannot write Minari dataset {dataset_id} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})")
        raise


# ---------------------------------------------------------------------- flat (D4RL) files

def read_flat(path, drop_unfinished=False):
    """Episodes of a D4RL-style flat file (.npz, .hdf5/.h5)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    cols, attrs = {}, {}
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as f:
                cols = {k: f[k] for k in f.files}
        elif ext in (".hdf5", ".h5"):
            import h5py

            with h5py.File(path, "r") as f:
                cols = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
                attrs = {k: (v.decode() if isinstance(v, bytes) else v)
                         for k, v in f.attrs.items()}
        else:
            raise UserError(f"{path}: expected a .npz or .hdf5/.h5 file")
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: cannot read it ({type(e).__name__}: {e})")
    missing = [c for c in FLAT_COLUMNS if c not in cols]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)} (has "
                        f"{', '.join(sorted(cols)) or 'nothing'}); a flat file needs "
                        f"{', '.join(FLAT_COLUMNS)}")
    shapes = {"observations": ((2,), "(steps, dims)"),
              "actions": ((1, 2), "(steps,) or (steps, dims)")}
    for c in FLAT_COLUMNS:
        x = np.asarray(cols[c])
        if x.dtype.names is not None or not (np.issubdtype(x.dtype, np.number)
                                             or x.dtype == bool):
            raise UserError(f"{path}: column {c} holds {x.dtype} values, not numbers")
        ndims, text = shapes.get(c, ((1,), "(steps,)"))
        if x.ndim not in ndims and not (c not in shapes and x.ndim == 2 and x.shape[1] == 1):
            raise UserError(f"{path}: column {c} has shape {x.shape}; expected {text}")
    obs = np.asarray(cols["observations"], dtype=np.float64)
    N = len(obs)
    lengths = {c: len(cols[c]) for c in FLAT_COLUMNS}
    if len(set(lengths.values())) != 1:
        raise UserError(f"{path}: columns of different lengths: "
                        + ", ".join(f"{c} {n}" for c, n in lengths.items()))
    if N == 0:
        raise UserError(f"{path} holds no steps")
    a_raw = np.asarray(cols["actions"])
    # integers are discrete actions; floats continuous, 1-D ones included (a 1-dim action
    # space); `match_action_kind` turns whole-number floats into indices for a Discrete env
    discrete = np.issubdtype(a_raw.dtype, np.integer)
    actions = _flat_actions(a_raw, path, discrete)
    rewards = np.asarray(cols["rewards"], dtype=np.float64).reshape(N)
    for name, x in (("observations", obs), ("actions", actions), ("rewards", rewards)):
        _check_finite(name, x, path)
    terminals = np.asarray(cols["terminals"]).reshape(N).astype(bool)
    timeouts = np.asarray(cols["timeouts"]).reshape(N).astype(bool)
    ends = np.flatnonzero(terminals | timeouts)
    if len(ends) == 0 or ends[-1] != N - 1:
        last = ends[-1] + 1 if len(ends) else 0
        if not drop_unfinished or last == 0:
            raise UserError(f"{path}: the last {N - last} steps (from row {last}) belong to an "
                            "episode that never ends (no terminal or timeout flag)"
                            + ("" if drop_unfinished else "; --drop_unfinished drops them"))
        N = last
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.array([], int)
    eps = Episodes([], [], [], terminals[ends], timeouts[ends] & ~terminals[ends],
                   None, source=f"flat:{os.path.abspath(path)}")
    for s, e in zip(starts, ends + 1):
        eps.obs.append(obs[s:e])
        eps.actions.append(actions[s:e])
        eps.rewards.append(rewards[s:e])
    name = cols.get("env_name", attrs.get("env_name"))
    if name is not None:
        eps.env_name = str(np.asarray(name).item() if isinstance(name, np.ndarray) else name)
    kw = cols.get("env_kwargs", attrs.get("env_kwargs"))
    if kw is not None:
        import json

        try:
            eps.env_kwargs = json.loads(str(np.asarray(kw).item()
                                            if isinstance(kw, np.ndarray) else kw)) or None
        except ValueError:
            raise UserError(f"{path}: env_kwargs is not a JSON object")
    return eps


def write_flat(eps, path):
    """Write episodes as a D4RL-style .npz (with ``env_name``), atomically."""
    from policyopt.util import atomic_write

    if not path.endswith(".npz"):
        raise UserError(f"{path}: the flat export writes .npz files")
    T_B = [len(r) for r in eps.rewards]
    terminals = np.zeros(sum(T_B), dtype=bool)
    timeouts = np.zeros(sum(T_B), dtype=bool)
    ends = np.cumsum(T_B) - 1
    terminals[ends] = eps.terminated
    timeouts[ends] = eps.truncated
    cols = dict(observations=np.concatenate(eps.obs), actions=np.concatenate(eps.actions),
                rewards=np.concatenate(eps.rewards), terminals=terminals, timeouts=timeouts)
    if eps.env_name:
        cols["env_name"] = np.array(eps.env_name)
    if eps.env_kwargs:
        import json

        cols["env_kwargs"] = np.array(json.dumps(eps.env_kwargs, sort_keys=True))
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **cols)


# --------------------------------------------------------------- the project's datasets

def from_dataset(data, max_episode_steps=None):
    """Episodes of a loaded project dataset (`imitation.data.load_dataset`). How an episode
    ended comes from ``terminated_B``/``truncated_B`` when the dataset records it, else from
    its length: the environment's time limit (`max_episode_steps`) means truncated."""
    B = data.num_trajs
    lens = data.len_B
    obs = [data.obs_B_T_Do[b, :lens[b]] for b in range(B)]
    acts = [data.a_B_T_Da[b, :lens[b]] for b in range(B)]
    rews = [data.r_B_T[b, :lens[b]] for b in range(B)]
    extra = data.extra
    if "terminated_B" in extra and "truncated_B" in extra:
        term, trunc = extra["terminated_B"].astype(bool), extra["truncated_B"].astype(bool)
    else:
        trunc = (lens >= max_episode_steps) if max_episode_steps else np.zeros(B, bool)
        term = ~trunc
    final = extra.get("obs_final_B_Do")
    from imitation.envs import parse_env_kwargs

    return Episodes(obs, acts, rews, term, trunc,
                    None if final is None else list(final), data.env_name,
                    source=f"dataset:{os.path.abspath(data.path)}",
                    env_kwargs=parse_env_kwargs(data.attrs.get("env_kwargs")) or None)


def match_action_kind(eps, discrete):
    """Make the episodes' actions fit an environment whose actions are `discrete` or not: a
    flat file's whole-number float actions of one dimension become indices for a Discrete
    environment (other floats stay, and `fit_to_env` says they do not fit)."""
    a0 = eps.actions[0]
    if (discrete and np.issubdtype(a0.dtype, np.floating) and a0.shape[1] == 1
            and all(np.all(a == np.round(a)) for a in eps.actions)):
        eps.actions = [a.astype(np.int64) for a in eps.actions]
    return eps


def to_expert_data(eps):
    """The episodes right-padded into the dataset layout, as an `imitation.data.ExpertData`
    (extra: how each episode ended, and the final observations when known)."""
    from imitation.data import ExpertData

    B = len(eps)
    lens = np.array([len(r) for r in eps.rewards], dtype=np.int64)
    T, Do = int(lens.max()), eps.obs[0].shape[1]
    Da = eps.actions[0].shape[1]
    discrete = np.issubdtype(eps.actions[0].dtype, np.integer)
    obs = np.zeros((B, T, Do))
    a = np.zeros((B, T, Da), dtype=np.int64 if discrete else np.float64)
    r = np.zeros((B, T))
    for b in range(B):
        if eps.obs[b].shape[1] != Do or eps.actions[b].shape[1] != Da:
            raise UserError(f"{eps.source}: episode {b} has {eps.obs[b].shape[1]}-dim "
                            f"observations / {eps.actions[b].shape[1]}-dim actions, episode 0 "
                            f"{Do} / {Da}")
        obs[b, :lens[b]] = eps.obs[b]
        a[b, :lens[b]] = eps.actions[b]
        r[b, :lens[b]] = eps.rewards[b]
    extra = {"terminated_B": np.asarray(eps.terminated, bool),
             "truncated_B": np.asarray(eps.truncated, bool)}
    if eps.obs_final is not None:
        extra["obs_final_B_Do"] = np.stack(eps.obs_final)
    attrs = {"env_name": eps.env_name, "source": eps.source}
    if eps.env_kwargs:
        attrs["env_kwargs"] = eps.env_kwargs
    return ExpertData(obs, a, r, lens, attrs, eps.source, extra)


def write_dataset(data, path, attrs=None):
    """Write `to_expert_data`'s result as a project dataset (atomically), with its extra
    arrays."""
    from imitation.data import write_arrays

    write_arrays(path, data.obs_B_T_Do, data.a_B_T_Da, data.r_B_T, data.len_B,
                 {**data.attrs, **(attrs or {})}, data.extra)


def fit_to_env(eps, env_name, env_kwargs=None):
    """The episodes as an `imitation.data.ExpertData` that fits the environment: one
    environment is made to learn its spaces, whole-number float actions become indices for a
    Discrete one (`match_action_kind`), and a UserError says when the sizes do not fit."""
    from imitation.data import check_fits_mdp
    from imitation.envs import GymMDP
    from imitation.errors import EnvError
    from policyopt import FiniteSpace

    try:
        mdp = GymMDP(env_name, num_workers=0, env_kwargs=env_kwargs)
    except EnvError as e:
        raise UserError(str(e))
    try:
        match_action_kind(eps, isinstance(mdp.action_space, FiniteSpace))
        data = to_expert_data(eps)
        check_fits_mdp(data, mdp)
    finally:
        mdp.close()
    return data
