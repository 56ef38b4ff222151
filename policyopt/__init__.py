"""policyopt: TRPO and GAIL with every piece of learning maths as a compiled PyTensor graph.

This module holds the data types the algorithms pass around: observation/action spaces,
trajectories and ragged batches of them, the sampling configuration, and the MDP interface.

Importing the package has no side effects: the first compiled graph links PyTensor's C backend
to a real BLAS, runs the BLAS copies inside NumPy's and SciPy's wheels single-threaded, and
makes malloc recycle large freed blocks (`policyopt.blas.setup`, called by
`policyopt.backend.compile_mode`).
"""
from dataclasses import dataclass

import numpy as np

from policyopt import backend  # noqa: F401  (policyopt.backend, as before)

# ----------------------------------------------------------------------------------- spaces

class Space:
    storage_size = None
    storage_type = None


class ContinuousSpace(Space):
    """Box of `dim` reals (actions stored as float64 rows of length dim)."""

    def __init__(self, dim, low=None, high=None):
        self.dim = int(dim)
        self.low = None if low is None else np.asarray(low, dtype=np.float64)
        self.high = None if high is None else np.asarray(high, dtype=np.float64)

    storage_type = np.float64

    @property
    def storage_size(self):
        return self.dim

    def __repr__(self):
        return f"ContinuousSpace(dim={self.dim})"


class FiniteSpace(Space):
    """{0, ..., size-1} (actions stored as int32 rows of length 1)."""

    def __init__(self, size):
        self.size = int(size)

    storage_type = np.int32
    storage_size = 1

    def __repr__(self):
        return f"FiniteSpace(size={self.size})"


# ------------------------------------------------------------------------------- trajectories

class RaggedArray:
    """A list of arrays of different lengths along axis 0, stored stacked.

    `stacked` is (sum of lengths, ...), `lengths` (B,), `boundaries` (B+1,) offsets;
    `arrays[i]` / `self[i]` are views of trajectory i.
    """

    def __init__(self, arrays=None, lengths=None, stacked=None):
        if stacked is not None:
            self.stacked = np.asarray(stacked)
            self.lengths = np.asarray(lengths, dtype=np.int64)
            if self.lengths.sum() != self.stacked.shape[0]:
                raise ValueError(f"lengths sum to {self.lengths.sum()} but stacked has "
                                 f"{self.stacked.shape[0]} rows")
        else:
            arrays = [np.asarray(a) for a in arrays]
            self.lengths = np.array([len(a) for a in arrays], dtype=np.int64)
            self.stacked = np.concatenate(arrays, axis=0) if arrays else np.zeros((0,))
        self.boundaries = np.concatenate([[0], np.cumsum(self.lengths)])

    @property
    def arrays(self):
        return [self.stacked[self.boundaries[i]:self.boundaries[i + 1]]
                for i in range(len(self.lengths))]

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        return self.stacked[self.boundaries[i]:self.boundaries[i + 1]]

    @property
    def row_index(self):
        """(trajectory index, time index) of every stacked row."""
        traj_N = np.repeat(np.arange(len(self.lengths)), self.lengths)
        time_N = np.arange(self.stacked.shape[0]) - self.boundaries[traj_N]
        return traj_N, time_N

    def padded(self, fill=0.):
        """(B, T_max, ...) array, right-padded with `fill`."""
        B, T = len(self.lengths), int(self.lengths.max(initial=0))
        out = np.full((B, T) + self.stacked.shape[1:], fill, dtype=self.stacked.dtype)
        traj_N, time_N = self.row_index
        out[traj_N, time_N] = self.stacked
        return out

    @classmethod
    def from_padded(cls, x_B_T, lengths):
        lengths = np.asarray(lengths, dtype=np.int64)
        mask_B_T = np.arange(x_B_T.shape[1])[None, :] < lengths[:, None]
        return cls(stacked=x_B_T[mask_B_T], lengths=lengths)


@dataclass
class Trajectory:
    """One episode: observations, observation features, action-distribution parameters,
    actions and rewards, each with T rows."""

    obs_T_Do: np.ndarray
    obsfeat_T_Df: np.ndarray
    adist_T_Pa: np.ndarray
    a_T_Da: np.ndarray
    r_T: np.ndarray

    def __len__(self):
        return self.obs_T_Do.shape[0]


class TrajBatch:
    """A batch of trajectories kept as RaggedArrays: obs, obsfeat, adist, a, r, time."""

    def __init__(self, obs, obsfeat, adist, a, r):
        self.obs, self.obsfeat, self.adist, self.a, self.r = obs, obsfeat, adist, a, r
        traj_N, time_N = obs.row_index
        self.time = RaggedArray(stacked=time_N, lengths=obs.lengths)

    @classmethod
    def from_trajs(cls, trajs):
        return cls(*(RaggedArray([getattr(t, f) for t in trajs])
                     for f in ("obs_T_Do", "obsfeat_T_Df", "adist_T_Pa", "a_T_Da", "r_T")))

    @classmethod
    def from_stacked(cls, obs, obsfeat, adist, a, r, lengths):
        return cls(*(RaggedArray(stacked=x, lengths=lengths) for x in (obs, obsfeat, adist, a, r)))

    @classmethod
    def concat(cls, batches):
        fields = ("obs", "obsfeat", "adist", "a", "r")
        lengths = np.concatenate([b.obs.lengths for b in batches])
        return cls(*(RaggedArray(stacked=np.concatenate([getattr(b, f).stacked for b in batches]),
                                 lengths=lengths) for f in fields))

    @property
    def trajs(self):
        return [Trajectory(self.obs[i], self.obsfeat[i], self.adist[i], self.a[i], self.r[i])
                for i in range(len(self))]

    def __len__(self):
        return len(self.obs)

    @property
    def num_sa(self):
        return int(self.obs.lengths.sum())

    @property
    def returns(self):
        """Undiscounted return of every trajectory."""
        traj_N, _ = self.r.row_index
        return np.bincount(traj_N, weights=self.r.stacked, minlength=len(self))


@dataclass
class SimConfig:
    """How much to sample: whole trajectories until at least `min_num_trajs` trajectories AND
    `min_total_sa` transitions (-1: no bound). `batch_size`: environments stepped together in
    each worker (None: chosen automatically). `max_traj_len`: cut episodes at this length
    (None: the environment's own time limit)."""

    min_num_trajs: int = -1
    min_total_sa: int = -1
    batch_size: int = None
    max_traj_len: int = None


class MDP:
    """An environment the algorithms sample from (implemented in imitation/envs.py).

    `obs_space`, `action_space`, `max_episode_steps`; `sim_mp(policy, obsfeat_fn, cfg, ...)`
    returns a TrajBatch of whole trajectories.
    """

    obs_space = None
    action_space = None
    max_episode_steps = None

    def sim_mp(self, policy, obsfeat_fn, cfg, **kwargs):
        raise NotImplementedError
