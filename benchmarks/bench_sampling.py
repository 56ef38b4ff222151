"""The project's sampler vs bare Gymnasium stepping, and its scaling with worker processes.

Project side: ``GymMDP(env, num_workers=W).sim_mp(policy, None, SimConfig(min_total_sa=N), rng)``
with the default policy (``rl.GaussianPolicy(nn.DEFAULT_HIDDEN_SPEC, ...)``, fc100-tanh-fc100-tanh)
in the loop: random small parameters, an observation standardizer fed with observations of
random rollouts. Throughput = transitions returned / wall time of the call (parameters out,
trajectories back, concatenation into a TrajBatch: everything a training iteration pays for).

Bare side: W forked processes, each with one ``gym.make(env)`` (env checker off, as the project
makes its environments), stepping with uniformly random actions drawn before the clock starts,
resetting on termination/truncation, until its share of N steps. The clock runs from the
release of all workers (a barrier; process start, env construction and action drawing happen
before it) to the last worker's finish.

Output: one ``name: value`` line per figure.
  sampling_vs_bare_env  project / bare throughput, W workers each (median of the per-repeat
                        ratios). Target >= 0.85.
  sampling_scaling      project throughput with W workers / with one worker (median of the
                        per-repeat ratios).

    python benchmarks/bench_sampling.py [--env Hopper-v5] [--samples 50000] [--repeats 5] \\
        [--workers W]
"""
import argparse
import multiprocessing as mp
import os
import signal
import sys
import time
import warnings

import numpy as np

from imitation.envs import GymMDP
from imitation.sampler import default_batch_size, default_num_workers, stop_workers
from policyopt import SimConfig, nn, rl

# The standard deviation of U(-1, 1): the policy's action noise is set to it so that both sides
# act with the same spread (Hopper's episodes, hence its per-episode reset costs, depend on it).
UNIFORM_STD = 1. / np.sqrt(3.)


def make_env(env_id):
    import gymnasium as gym

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id, disable_env_checker=True)


# ---------------------------------------------------------------------------------- bare side

def _bare_worker(conn, barrier, env_id, seed, w, predraw):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = make_env(env_id)
    env.action_space.seed(seed + 1000 * w)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng([seed, w])
    env.reset(seed=int(rng.integers(2 ** 31 - 1)))
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        n_steps = msg
        acts = rng.uniform(low, high, size=(n_steps,) + low.shape) if predraw else None
        env.reset()
        barrier.wait()
        t0 = time.perf_counter()
        ep_len, n_eps, sum_len = 0, 0, 0
        sample = env.action_space.sample
        for k in range(n_steps):
            _, _, terminated, truncated, _ = env.step(acts[k] if predraw else sample())
            ep_len += 1
            if terminated or truncated:
                env.reset()
                n_eps, sum_len, ep_len = n_eps + 1, sum_len + ep_len, 0
        t1 = time.perf_counter()
        conn.send((n_steps, n_eps, sum_len, t0, t1))
    env.close()


class BarePool:
    """W forked processes with one environment each, released together by a barrier."""

    def __init__(self, env_id, num_workers, seed, predraw):
        ctx = mp.get_context("fork")
        self.num_workers = num_workers
        self.barrier = ctx.Barrier(num_workers + 1)
        self.conns, self.procs = [], []
        for w in range(num_workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_bare_worker,
                            args=(child, self.barrier, env_id, seed, w, predraw), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        for conn in self.conns:
            assert conn.recv() == "ready"

    def run(self, total_steps):
        """(steps, wall seconds, completed episodes, their summed length)."""
        for w, conn in enumerate(self.conns):
            conn.send(total_steps // self.num_workers
                      + (1 if w < total_steps % self.num_workers else 0))
        self.barrier.wait()
        t0 = time.perf_counter()
        res = [conn.recv() for conn in self.conns]
        # perf_counter is CLOCK_MONOTONIC, comparable across processes on Linux
        t_start = min([t0] + [r[3] for r in res])
        t_end = max(r[4] for r in res)
        return (sum(r[0] for r in res), t_end - t_start, sum(r[1] for r in res),
                sum(r[2] for r in res))

    def close(self):
        stop_workers(self.conns, self.procs)


# ------------------------------------------------------------------------------- project side

def random_rollout_obs(env_id, n, seed):
    """n observations of random-action rollouts (for the policy's observation standardizer)."""
    env = make_env(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    while len(out) < n:
        out.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.asarray(out, dtype=np.float64)


def make_policy(mdp, env_id, seed, policy_std):
    rng = np.random.default_rng(seed)
    policy = rl.GaussianPolicy(nn.DEFAULT_HIDDEN_SPEC, mdp.obs_space, mdp.action_space)
    # random small parameters: N(0, 0.1), the output layer N(0, 0.001) so that the action mean
    # stays near 0 and the episodes are about as long as with the bare side's U(-1, 1) actions
    # (the per-episode reset costs then weigh the same on both sides)
    for var in policy.get_trainable_variables():
        scale = 1e-3 if "/out/" in var.name else 0.1
        var.set_value(rng.normal(scale=scale, size=var.get_value().shape))
    if policy_std is not None:
        policy.logstdevs_1_Da.set_value(np.full_like(policy.logstdevs_1_Da.get_value(),
                                                     np.log(policy_std)))
    policy.update_obsnorm(random_rollout_obs(env_id, 5000, seed))
    return policy


class ProjectSide:
    def __init__(self, env_id, num_workers, policy_seed, policy_std, seed):
        self.mdp = GymMDP(env_id, num_workers=num_workers)
        self.policy = make_policy(self.mdp, env_id, policy_seed, policy_std)
        self.rng = np.random.default_rng(seed)

    def run(self, total_sa):
        """(transitions, wall seconds, episodes, their summed length)."""
        cfg = SimConfig(min_total_sa=total_sa)
        t0 = time.perf_counter()
        batch = self.mdp.sim_mp(self.policy, None, cfg, self.rng)
        dt = time.perf_counter() - t0
        lengths = batch.obs.lengths
        return int(batch.num_sa), dt, len(lengths), int(lengths.sum())

    def close(self):
        self.mdp.close()


# ----------------------------------------------------------------------------------- harness

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints `name: value` lines. sampling_vs_bare_env target "
                                        ">= 0.85; sampling_scaling ideally = number of cores.")
    ap.add_argument("--env", default="Hopper-v5", help="Gymnasium id (default Hopper-v5)")
    ap.add_argument("--samples", type=int, default=50000,
                    help="transitions per measurement, all workers together (default 50000)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed repeats; medians are reported (default 5)")
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes W for the all-cores figures (default: one per "
                         f"available core, here {default_num_workers()})")
    ap.add_argument("--bare-actions", choices=["predrawn", "sample"], default="predrawn",
                    help="bare side's actions: uniform arrays drawn before the clock starts "
                         "(default, the fastest bare loop) or env.action_space.sample() per step")
    ap.add_argument("--policy-std", type=float, default=UNIFORM_STD,
                    help="the policy's action stdev (default 1/sqrt(3), the stdev of the bare "
                         "side's U(-1,1) actions; <= 0: keep the random log-stdev parameter)")
    ap.add_argument("--no-bare-1worker", action="store_true",
                    help="skip the one-process bare measurement (bare_scaling)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    W = args.workers if args.workers is not None else default_num_workers()
    if args.samples < 1 or args.repeats < 1 or W < 1:
        ap.error("--samples, --repeats and --workers must be >= 1")
    policy_std = args.policy_std if args.policy_std > 0 else None
    predraw = args.bare_actions == "predrawn"

    sides = {
        "project": ProjectSide(args.env, W, args.seed, policy_std, args.seed + 1),
        "bare": BarePool(args.env, W, args.seed + 2, predraw),
        "project_1worker": ProjectSide(args.env, 1, args.seed, policy_std, args.seed + 3),
    }
    if not args.no_bare_1worker:
        sides["bare_1worker"] = BarePool(args.env, 1, args.seed + 4, predraw)
    horizon = sides["project"].mdp.horizon()
    try:
        # warm-up: the project's worker pools are created (forked) by the first call
        for side in sides.values():
            side.run(min(args.samples, 2000 * W))
        names = list(sides)
        res = {k: [] for k in names}
        for r in range(args.repeats):
            # rotate the order every repeat, so that load drift and after-effects fall on all
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                res[k].append(sides[k].run(args.samples))
                n, dt, neps, slen = res[k][-1]
                print(f"repeat {r} {k}: {n} steps in {dt:.3f} s = {n / dt:.0f} steps/s, "
                      f"{neps} episodes", file=sys.stderr, flush=True)
    finally:
        for side in sides.values():
            side.close()

    def thr(k):
        return np.array([n / dt for n, dt, _, _ in res[k]])

    def eplen(k):
        return sum(s for *_, s in res[k]) / max(sum(e for _, _, e, _ in res[k]), 1)

    out = [
        ("sampling_vs_bare_env", f"{np.median(thr('project') / thr('bare')):.3f}"),
        ("sampling_scaling", f"{np.median(thr('project') / thr('project_1worker')):.3f}"),
        ("project_steps_per_s", f"{np.median(thr('project')):.0f}"),
        ("bare_steps_per_s", f"{np.median(thr('bare')):.0f}"),
        ("project_1worker_steps_per_s", f"{np.median(thr('project_1worker')):.0f}"),
    ]
    if "bare_1worker" in res:
        out += [("bare_1worker_steps_per_s", f"{np.median(thr('bare_1worker')):.0f}"),
                ("bare_scaling", f"{np.median(thr('bare') / thr('bare_1worker')):.3f}")]
    out += [
        ("num_workers", str(W)),
        ("envs_per_worker", str(default_batch_size(args.samples, -1, horizon, W))),
        ("mean_episode_length_project", f"{eplen('project'):.1f}"),
        ("mean_episode_length_bare", f"{eplen('bare'):.1f}"),
        ("bare_actions", args.bare_actions),
        ("samples", str(args.samples)),
        ("repeats", str(args.repeats)),
        ("cpu_count", str(os.cpu_count())),
        ("load_avg_1min", f"{os.getloadavg()[0]:.2f}"),
    ]
    for name, value in out:
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
