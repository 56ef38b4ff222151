"""Multi-process batched sampling of whole trajectories.

Each worker process owns `batch_size` environments and its own copy of the
compiled policy (forked after compilation). Per step a worker evaluates the policy once on the
observations of all its running environments, then steps each of them. Trajectories are
always whole: an episode, once started, runs until termination, truncation or max_traj_len.
A worker stops *starting* episodes once the steps it has taken plus the expected remainder of
its running episodes reach its share of `min_total_sa` (and it has started its share of
`min_num_trajs`); which episodes start never depends on their own outcome, so the batch is not
biased towards short episodes. Only parameters go to the workers and only finished
trajectories come back, once per batch.

Every episode's reset seed and every action's noise come from generators derived from the
caller's seed, the call, and the worker index, so a given seed and worker count reproduce the
same batch, in the same order (workers are concatenated in index order).

Gymnasium vector environments are not used inside the workers because they step every
sub-environment on every call; a worker must leave finished environments idle.

The registry and the `GymMDP` facade that drive it live in `imitation.envs`.
"""
import atexit
import math
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import warnings

import numpy as np

from policyopt import FiniteSpace

# ------------------------------------------------------------------------------------ rollout

_first_step_reported = False


def _report_first_step():
    """With $POLICYOPT_REPORT_FIRST_STEP set, print the wall-clock time of this process's first
    environment step to stderr once (benchmarks/bench_startup.py measures start-up with it)."""
    global _first_step_reported
    if not _first_step_reported:
        _first_step_reported = True
        if os.environ.get("POLICYOPT_REPORT_FIRST_STEP"):
            import sys
            import time

            print(f"policyopt: first environment step at {time.time():.6f}", file=sys.stderr,
                  flush=True)


def rollout_batch(envs, spec, policy, obsfeat_fn, min_sa, min_trajs, horizon, rng,
                  deterministic=False, on_traj_done=None):
    """Sample whole trajectories with `envs` stepped together (see the module docstring).

    Each environment is seeded from `rng` at its first reset in this call; later resets
    continue its own generator, so the batch depends only on `rng`'s state.
    `on_traj_done(length)` is called as each trajectory finishes (progress reporting).
    Returns stacked arrays (obs_N_Do, obsfeat_N_Df, adist_N_Pa, a_N_Da, r_N, lengths_B) in the
    order trajectories finished; None when there is nothing to sample.
    """
    if min_sa <= 0 and min_trajs <= 0:
        return None
    K = len(envs)
    if min_sa <= 0:
        K = max(1, min(K, min_trajs))
    discrete = isinstance(policy.action_space, FiniteSpace)
    env_seeds = [int(x) for x in rng.integers(2 ** 31 - 1, size=K)]
    seeded = [False] * K

    # Per-environment state as plain Python lists/ints: this loop runs once per environment
    # step, where NumPy scalar indexing would cost more than the bookkeeping itself.
    cap = min(horizon, 1024)
    bufs = None
    cur_obs = [None] * K
    tpos = [0] * K
    running = []  # indices of environments with an episode in progress
    rewards = [[] for _ in range(K)]
    state = dict(steps_done=0, started=0, done_sum=0)  # steps of all started episodes, ...
    lengths = []
    out = ([], [], [], [], [])  # obs, adist, a, rewards, features

    def want_more():
        if state["started"] < min_trajs:
            return True
        if min_sa <= 0:
            return False
        mean_len = state["done_sum"] / len(lengths) if lengths else horizon
        expected_rest = sum(max(mean_len - tpos[i], 1.) for i in running)
        return state["steps_done"] + expected_rest < min_sa

    def start(i):
        obs, _ = envs[i].reset(seed=None if seeded[i] else env_seeds[i])
        seeded[i] = True
        cur_obs[i] = spec.adapt(obs)
        tpos[i] = 0
        rewards[i] = []
        running.append(i)
        state["started"] += 1

    for i in range(K):
        if want_more():
            start(i)

    _report_first_step()
    while running:
        idx = list(running)
        obs_A_Do = np.stack([cur_obs[i] for i in idx])
        feat_A_Df = obs_A_Do if obsfeat_fn is None else obsfeat_fn(obs_A_Do)
        a_A_Da, adist_A_Pa = policy.sample_actions(feat_A_Df, rng, deterministic=deterministic)
        # without an obsfeat_fn the features are the observations: one buffer serves both
        rows = (obs_A_Do, adist_A_Pa, a_A_Da) + (() if obsfeat_fn is None else (feat_A_Df,))
        if bufs is None:
            bufs = [np.zeros((K, cap) + x.shape[1:], dtype=x.dtype) for x in rows]
        t_A = [tpos[i] for i in idx]
        if max(t_A) >= cap:
            cap *= 2
            bufs = [np.concatenate([b, np.zeros_like(b)], axis=1) for b in bufs]
        for b, x in zip(bufs, rows):
            b[idx, t_A] = x
        acts = a_A_Da[:, 0].tolist() if discrete else a_A_Da
        for j, i in enumerate(idx):
            obs, r, terminated, truncated, _ = envs[i].step(acts[j])
            rewards[i].append(r)
            t = tpos[i] = tpos[i] + 1
            state["steps_done"] += 1
            if terminated or truncated or t >= horizon:
                for o, b in zip(out[:3] + out[4:], bufs):
                    o.append(b[i, :t].copy())
                out[3].append(np.asarray(rewards[i], dtype=np.float64))
                lengths.append(t)
                state["done_sum"] += t
                if on_traj_done is not None:
                    on_traj_done(t)
                running.remove(i)
                if want_more():
                    start(i)
            else:
                cur_obs[i] = spec.adapt(obs)

    obs_N, adist_N, a_N, r_N = (np.concatenate(o) for o in out[:4])
    feat_N = obs_N if obsfeat_fn is None else np.concatenate(out[4])
    return obs_N, feat_N, adist_N, a_N, r_N, np.array(lengths, dtype=np.int64)


# ------------------------------------------------------------------------------- worker pool

def _worker_main(conn, spec, policy, obsfeat_fn, batch_size):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one core per worker: BLAS threads would only fight
    except Exception:
        pass
    envs = [spec.make() for _ in range(batch_size)]
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        state, min_sa, min_trajs, horizon, seed, deterministic, progress = msg
        try:
            policy.set_state(state)
            rng = np.random.default_rng(seed)
            report = (lambda t: conn.send(("progress", t))) if progress else None
            res = rollout_batch(envs, spec, policy, obsfeat_fn, min_sa, min_trajs, horizon, rng,
                                deterministic, on_traj_done=report)
            conn.send(("ok", res))
        except Exception as e:  # report, don't die silently
            import traceback

            conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    for env in envs:
        env.close()


def split_quota(total, num_workers, w):
    """Worker w's share of `total` (shares differ by at most one; <= 0 means no bound)."""
    if total is None or total <= 0:
        return -1
    return total // num_workers + (1 if w < total % num_workers else 0)


def default_num_workers():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class SamplerPool:
    """Persistent forked workers, each with `batch_size` environments and the policy."""

    def __init__(self, spec, policy, obsfeat_fn, num_workers, batch_size):
        self.spec, self.policy, self.num_workers = spec, policy, num_workers
        self.batch_size = batch_size
        # Compile the sampling graph once, here, so every worker inherits it.
        policy.compute_actiondist_params(np.zeros((1, policy.obsfeat_space.storage_size)))
        ctx = mp.get_context("fork")
        self.conns, self.procs = [], []
        for _ in range(num_workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(child, spec, policy, obsfeat_fn,
                                                       batch_size), daemon=True)
            with warnings.catch_warnings():
                # JAX warns about every fork; the workers never call into JAX (see
                # policyopt.backend.sampling_backend)
                warnings.filterwarnings("ignore", message=".*fork.*")
                p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        atexit.register(self.close)

    def sample(self, min_sa, min_trajs, horizon, seeds, deterministic, on_traj_done=None):
        state = self.policy.get_state()
        progress = on_traj_done is not None
        for w, (conn, seed) in enumerate(zip(self.conns, seeds)):
            conn.send((state, split_quota(min_sa, self.num_workers, w),
                       split_quota(min_trajs, self.num_workers, w), horizon, seed, deterministic,
                       progress))
        results, errors = [None] * self.num_workers, []
        pending = dict(enumerate(self.conns))
        while pending:
            for conn in mp.connection.wait(list(pending.values())):
                w = next(k for k, c in pending.items() if c is conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    status, payload = "error", (f"worker {w} died (exit code "
                                                f"{self.procs[w].exitcode})")
                if status == "progress":
                    on_traj_done(payload)
                    continue
                del pending[w]
                if status == "ok":
                    results[w] = payload
                else:
                    errors.append(payload)
        if errors:
            raise RuntimeError("sampling failed in a worker: " + errors[0])
        return results

    def close(self):
        stop_workers(self.conns, self.procs)
        self.conns, self.procs = [], []


def stop_workers(conns, procs):
    """Ask each worker to stop (None on its pipe), wait up to 5 s for it, then terminate it."""
    for conn in conns:
        try:
            conn.send(None)
        except (OSError, BrokenPipeError):
            pass
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()


MAX_ENVS_PER_WORKER = 16


def default_batch_size(min_sa, min_trajs, horizon, num_workers):
    """Environments per worker: enough to amortise the per-step policy call (up to 16), fewer
    when a worker's share of the batch is only a few episodes long."""
    if min_sa > 0:
        per_worker = min_sa / num_workers
        return int(np.clip(per_worker // max(min(horizon, 1000), 1), 1, MAX_ENVS_PER_WORKER))
    return int(np.clip(math.ceil(max(min_trajs, 1) / num_workers), 1, MAX_ENVS_PER_WORKER))
