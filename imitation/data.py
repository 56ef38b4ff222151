"""Expert trajectory datasets (HDF5).

Layout: ``obs_B_T_Do`` float (right-padded with 0), ``a_B_T_Da`` (int with Da = 1 for discrete
actions), ``r_B_T``, ``len_B`` int32. Root attributes: ``env_name`` (a Gymnasium or original
id), optionally ``obs_adapter``, and provenance: ``source_policy``, ``seed``, ``deterministic``,
``return_mean``, ``return_std``, ``command``, ``data_subsamp_freq``.

For training, the first `limit_trajs` trajectories are kept and each is subsampled every
`data_subsamp_freq` steps from a random offset in [0, freq) drawn per trajectory from a fixed
seed; the time index of every kept pair is kept too.
"""
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from imitation.errors import UserError
from policyopt.util import library_versions, write_h5_atomic

REQUIRED = ("obs_B_T_Do", "a_B_T_Da", "r_B_T", "len_B")
# Kept by imports from other formats (imitation.interop); training does not use them.
OPTIONAL = ("terminated_B", "truncated_B", "obs_final_B_Do")


@dataclass
class ExpertData:
    """A dataset as loaded from disk (all trajectories, padded) plus its attributes."""

    obs_B_T_Do: np.ndarray
    a_B_T_Da: np.ndarray
    r_B_T: np.ndarray
    len_B: np.ndarray
    attrs: dict = field(default_factory=dict)
    path: str = ""
    extra: dict = field(default_factory=dict)  # the OPTIONAL arrays the file holds

    @property
    def num_trajs(self):
        return len(self.len_B)

    @property
    def env_name(self):
        return self.attrs.get("env_name")

    @property
    def obs_adapter(self):
        return self.attrs.get("obs_adapter") or None

    @property
    def returns_B(self):
        mask = np.arange(self.r_B_T.shape[1])[None, :] < self.len_B[:, None]
        return (self.r_B_T * mask).sum(axis=1)

    @property
    def discrete(self):
        return np.issubdtype(self.a_B_T_Da.dtype, np.integer)


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def load_dataset(path):
    """Read and validate a dataset; every problem is a one-line UserError."""
    import h5py

    from imitation.snapshots import open_h5

    with open_h5(path) as f:
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise UserError(f"{path} is not an expert dataset: missing {', '.join(missing)} "
                            f"(has {', '.join(sorted(f.keys())) or 'nothing'})")
        for k in REQUIRED:
            if not isinstance(f[k], h5py.Dataset):
                raise UserError(f"{path}: {k} is not a dataset")
        try:
            obs, a, r, lens = (f[k][()] for k in REQUIRED)
            extra = {k: f[k][()] for k in OPTIONAL if k in f and isinstance(f[k], h5py.Dataset)}
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
        except (OSError, ValueError, RuntimeError, TypeError) as e:
            # e.g. a corrupt compressed chunk ("filter returned failure"), a truncated file
            raise UserError(f"{path}: the file is damaged and cannot be read "
                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    for name, x in (("obs_B_T_Do", obs), ("a_B_T_Da", a), ("r_B_T", r), ("len_B", lens)):
        if x.dtype.names is not None or not np.issubdtype(x.dtype, np.number):
            raise UserError(f"{path}: {name} holds {x.dtype} values, not numbers")
    if obs.ndim != 3 or a.ndim != 3 or r.ndim != 2 or lens.ndim != 1:
        raise UserError(f"{path}: expected obs_B_T_Do, a_B_T_Da 3-D, r_B_T 2-D, len_B 1-D; got "
                        f"{obs.shape}, {a.shape}, {r.shape}, {lens.shape}")
    B, T = obs.shape[:2]
    if a.shape[:2] != (B, T) or r.shape != (B, T) or lens.shape != (B,):
        raise UserError(f"{path}: inconsistent shapes obs {obs.shape}, a {a.shape}, r {r.shape}, "
                        f"len {lens.shape}")
    if B == 0:
        raise UserError(f"{path} holds no trajectories")
    if not np.issubdtype(lens.dtype, np.integer) or lens.min() < 1 or lens.max() > T:
        raise UserError(f"{path}: len_B must be integers in [1, {T}]")
    mask = np.arange(T)[None, :] < lens[:, None]
    for name, x in (("obs_B_T_Do", obs), ("a_B_T_Da", a), ("r_B_T", r)):
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x[mask])):
            raise UserError(f"{path}: {name} contains NaN or inf")
    return ExpertData(obs.astype(np.float64), a, r.astype(np.float64), lens.astype(np.int64),
                      attrs, path, extra)


def subsample(data, limit_trajs, data_subsamp_freq, seed=0):
    """Training pairs from the first `limit_trajs` trajectories, every `data_subsamp_freq`
    steps from a per-trajectory random offset in [0, freq) drawn from
    `np.random.RandomState(seed)`. Training runs keep seed 0 whatever their own `--seed`, as the
    original did (4 trajectories every 20 steps: offsets 12, 15, 0, 3), so runs of one cell
    differ in their training randomness, not in their data.

    Returns (obs_N_Do, a_N_Da, t_N) stacked over trajectories.
    """
    if limit_trajs is None:
        limit_trajs = data.num_trajs
    if limit_trajs <= 0:
        raise UserError(f"--limit_trajs must be positive, got {limit_trajs}")
    if limit_trajs > data.num_trajs:
        raise UserError(f"--limit_trajs {limit_trajs} exceeds the {data.num_trajs} trajectories "
                        f"in {data.path}")
    if data_subsamp_freq <= 0:
        raise UserError(f"--data_subsamp_freq must be positive, got {data_subsamp_freq}")
    lens = data.len_B[:limit_trajs]
    offsets = np.random.RandomState(seed).randint(0, data_subsamp_freq, size=limit_trajs)
    b_idx, t_idx = [], []
    for b in range(limit_trajs):
        t = np.arange(min(offsets[b], lens[b] - 1), lens[b], data_subsamp_freq)
        b_idx.append(np.full(len(t), b))
        t_idx.append(t)
    b_N, t_N = np.concatenate(b_idx), np.concatenate(t_idx)
    return data.obs_B_T_Do[b_N, t_N], data.a_B_T_Da[b_N, t_N], t_N.astype(np.float64)


def check_fits_mdp(data, mdp):
    """UserError when the dataset's observation/action sizes do not match the environment."""
    from policyopt import FiniteSpace

    Do = data.obs_B_T_Do.shape[2]
    if Do != mdp.obs_space.storage_size:
        raise UserError(f"{data.path}: observations have {Do} dims but {mdp.env_name} gives "
                        f"{mdp.obs_space.storage_size}")
    if isinstance(mdp.action_space, FiniteSpace):
        if not data.discrete or data.a_B_T_Da.shape[2] != 1:
            raise UserError(f"{data.path}: {mdp.env_name} has discrete actions but the dataset's "
                            f"actions are {data.a_B_T_Da.dtype} with "
                            f"{data.a_B_T_Da.shape[2]} dims")
        mask = np.arange(data.a_B_T_Da.shape[1])[None, :] < data.len_B[:, None]
        acts = data.a_B_T_Da[mask]
        if acts.min() < 0 or acts.max() >= mdp.action_space.size:
            raise UserError(f"{data.path}: actions outside 0..{mdp.action_space.size - 1}")
    else:
        if data.discrete or data.a_B_T_Da.shape[2] != mdp.action_space.dim:
            raise UserError(f"{data.path}: actions have {data.a_B_T_Da.shape[2]} dims "
                            f"({data.a_B_T_Da.dtype}) but {mdp.env_name} has "
                            f"{mdp.action_space.dim}-dim continuous actions")


def write_dataset(path, batch, attrs):
    """Write a TrajBatch as a dataset file (atomically); see `write_arrays`."""
    B = len(batch)
    T = int(batch.obs.lengths.max())
    obs = batch.obs.padded(fill=0.)
    assert obs.shape[:2] == (B, T)
    write_arrays(path, obs, batch.a.padded(fill=0), batch.r.padded(fill=0.),
                 batch.obs.lengths, attrs)


def write_arrays(path, obs_B_T_Do, a_B_T_Da, r_B_T, len_B, attrs, extra=None):
    """Write padded arrays as a dataset file (atomically). `attrs` go to root attributes (None
    values left out), with `versions` (the libraries that wrote it, util.library_versions)
    unless `attrs` has one; `extra` holds OPTIONAL arrays by name."""

    attrs = {"versions": library_versions(), **attrs}

    def fill(f):
        for name, x in (("obs_B_T_Do", obs_B_T_Do), ("a_B_T_Da", a_B_T_Da), ("r_B_T", r_B_T)):
            f.create_dataset(name, data=x, compression="gzip", compression_opts=4)
        f.create_dataset("len_B", data=np.asarray(len_B, dtype=np.int32))
        for name, x in (extra or {}).items():
            assert name in OPTIONAL, name
            f.create_dataset(name, data=x)
        for k, v in attrs.items():
            if v is None:
                continue
            f.attrs[k] = v if isinstance(v, (str, int, float, np.number)) else json.dumps(v)

    try:
        write_h5_atomic(path, fill)
    except OSError as e:  # a full disk or a read-only directory: the old file is untouched
        raise UserError(f"cannot write the dataset {path} ({e.strerror or type(e).__name__})"
                        + ("; the existing file is unchanged" if os.path.exists(path) else ""))


def command_line():
    """The command that is running, for provenance attributes."""
    return " ".join([os.path.basename(sys.executable)] + sys.argv)
