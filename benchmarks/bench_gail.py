"""One full GAIL iteration on Hopper-v5 vs its sampling time, training throughput, and memory.

Sets GAIL up exactly as ``scripts/imitate_mj.py --mode ga`` does with its defaults
(GaussianPolicy fc100-tanh-fc100-tanh, TransitionClassifier discriminator, ValueFunc baseline,
every standardizer initialised from the expert data, TRPO(max_kl 0.01, damping 0.1),
SimConfig(min_total_sa=50000), all cores sampling), on a 4-trajectory dataset sampled from the
original authors' Hopper expert, runs --warmup untimed iterations (graph compilation, worker
pool start) and then --iters timed ones. Each ``ImitationOptimizer.step()`` reports its own
phase times (tsamp, tadv, tstep, treward, tvf, ttotal).

Output: one ``name: value`` line per figure.
  gail_iter_vs_sampling  median over iterations of ttotal / tsamp. Target <= 1.4.
  gail_env_steps_per_s   sum(nsa) / sum(ttotal) over the timed iterations. Target >= 7600
                         (4x the ~1,900 steps/s of PyTorch GAIL + SB3 PPO on these machines).
  memory_peak_mb         peak resident memory of the main process plus its sampling workers.
  memory_growth_mb       resident memory (main + workers) after the last iteration minus after
                         the 5th timed one; must stay about 0.

    python benchmarks/bench_gail.py [--iters 20] [--samples 50000] [--data FILE] [--workers W]
"""
import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOPPER_EXPERT = os.path.normpath(os.path.join(
    REPO, "..", "shared", "expert_policies", "modern", "log_Hopper-v0_3.h5", "snapshots",
    "iter0000500"))


# ------------------------------------------------------------------------------ expert data

def _sample_dataset_child(policy_string, out, num_trajs, seed):
    from imitation.experts import sample_dataset

    sample_dataset(policy_string, out, num_trajs, env_name="Hopper-v5", seed=seed,
                       verbose=False)


def build_expert_dataset(out, policy_string=HOPPER_EXPERT, num_trajs=4, seed=0):
    """Sample `num_trajs` expert trajectories into `out` with scripts/sample_expert.py's
    sample_dataset, in a child process (the expert policy's graphs, variables and sampling
    workers stay out of the benchmarked process)."""
    p = mp.get_context("fork").Process(target=_sample_dataset_child,
                                       args=(policy_string, out, num_trajs, seed))
    p.start()
    p.join()
    if p.exitcode != 0 or not os.path.exists(out):
        raise RuntimeError(f"sampling the expert dataset from {policy_string} failed "
                           f"(exit code {p.exitcode})")
    return out


# ----------------------------------------------------------------------------------- memory

def _status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryProbe:
    """Resident memory of this process and its live descendants (the sampling workers)."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()

    def children(self):
        return self.me.children(recursive=True)

    def rss_mb(self):
        """(main, workers summed) current RSS in MiB."""
        main = self.me.memory_info().rss
        workers = 0
        for c in self.children():
            try:
                workers += c.memory_info().rss
            except Exception:
                pass
        return main / 2 ** 20, workers / 2 ** 20

    def pss_mb(self):
        """Proportional set size of main + workers (pages shared after fork counted once)."""
        total = 0
        for p in [self.me] + self.children():
            try:
                total += p.memory_full_info().pss
            except Exception:
                return float("nan")
        return total / 2 ** 20

    def hwm_mb(self):
        """(main, workers summed) peak RSS (VmHWM) in MiB."""
        return (_status_kb(self.me.pid, "VmHWM") / 1024.,
                sum(_status_kb(c.pid, "VmHWM") for c in self.children()) / 1024.)


# ------------------------------------------------------------------------------------- GAIL

def setup_gail(data_path, min_total_sa, num_workers, seed=0):
    """What scripts/imitate_mj.py builds for --mode ga with default flags (the same builder)."""
    from imitation.experiment import ImitationConfig, build_imitation
    from policyopt import backend

    backend.set_backend(os.environ.get("POLICYOPT_BACKEND", "c"))
    exp = build_imitation(ImitationConfig(mode="ga", data=data_path, min_total_sa=min_total_sa,
                                          num_workers=num_workers, seed=seed))
    return exp.mdp, exp.optimizer, len(exp.optimizer.ex_obs)


PHASES = ("tsamp", "tadv", "tstep", "treward", "tvf", "ttotal")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints `name: value` lines; per-iteration rows and RSS "
                                        "go to stderr. Targets: gail_iter_vs_sampling <= 1.4, "
                                        "gail_env_steps_per_s >= 7600, memory_growth_mb ~ 0.")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations (default 20)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed iterations first (compilation, worker start; default 2)")
    ap.add_argument("--samples", type=int, default=50000,
                    help="min_total_sa, transitions per iteration (default 50000)")
    ap.add_argument("--data", default=None,
                    help="Hopper expert dataset (default: sample 4 trajectories of the original "
                         "expert into a temporary file)")
    ap.add_argument("--expert", default=HOPPER_EXPERT,
                    help="policy string the default dataset is sampled from")
    ap.add_argument("--workers", type=int, default=None,
                    help="sampling worker processes (default: one per available core)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.samples < 1:
        ap.error("--iters and --samples must be >= 1, --warmup >= 0")

    tmpdir = None
    try:
        if args.data is None:
            tmpdir = tempfile.mkdtemp(prefix="bench_gail_")
            t0 = time.perf_counter()
            args.data = build_expert_dataset(os.path.join(tmpdir, "hopper_4traj.h5"),
                                             args.expert)
            print(f"expert dataset {args.data} sampled in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        run(args)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def run(args):
    mdp, opt, n_ex = setup_gail(args.data, args.samples, args.workers, args.seed)
    probe = MemoryProbe()
    print(f"GAIL on {mdp.spec.gym_id}: {n_ex} expert pairs, {mdp.num_workers} sampling workers, "
          f"{args.samples} transitions per iteration", file=sys.stderr, flush=True)
    rows, walls, rss = [], [], []
    try:
        for it in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            fields = dict(opt.step())
            wall = time.perf_counter() - t0
            main_mb, workers_mb = probe.rss_mb()
            timed = it >= args.warmup
            if timed:
                rows.append(fields)
                walls.append(wall)
                rss.append((main_mb, workers_mb))
            print(f"iter {it}{'' if timed else ' (warm-up)'}: nsa {fields['nsa']} "
                  f"trueret {fields['trueret']:.1f} avglen {fields['avglen']} "
                  + " ".join(f"{k} {fields[k]:.2f}" for k in PHASES)
                  + f" wall {wall:.2f} rss main {main_mb:.0f} workers {workers_mb:.0f} MiB",
                  file=sys.stderr, flush=True)
        hwm_main, hwm_workers = probe.hwm_mb()
        pss = probe.pss_mb()
        num_workers = len(probe.children())
    finally:
        mdp.close()

    col = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in PHASES + ("nsa",)}
    total_rss = [m + w for m, w in rss]
    base = min(4, len(rss) - 1)  # after the 5th timed iteration
    print("rss_per_iter_mb (main+workers): " + ", ".join(f"{x:.0f}" for x in total_rss),
          file=sys.stderr)
    print("rss_main_per_iter_mb: " + ", ".join(f"{m:.0f}" for m, _ in rss), file=sys.stderr)
    maxrss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.  # KiB on Linux
    other = col["ttotal"] - sum(col[k] for k in PHASES[:-1])
    out = [
        ("gail_iter_vs_sampling", f"{np.median(col['ttotal'] / col['tsamp']):.3f}"),
        ("gail_env_steps_per_s", f"{col['nsa'].sum() / col['ttotal'].sum():.0f}"),
        ("gail_env_steps_per_s_wall", f"{col['nsa'].sum() / np.sum(walls):.0f}"),
    ]
    out += [(f"{k}_s", f"{np.median(col[k]):.3f}") for k in PHASES]
    out += [
        ("tother_s", f"{np.median(other):.3f}"),
        ("iter_wall_s", f"{np.median(walls):.3f}"),
        ("nsa_per_iter", f"{np.median(col['nsa']):.0f}"),
        ("memory_peak_mb", f"{hwm_main + hwm_workers:.0f}"),
        ("memory_peak_sampled_mb", f"{max(total_rss):.0f}"),
        ("memory_main_maxrss_mb", f"{maxrss_self:.0f}"),
        ("memory_workers_peak_mb", f"{hwm_workers:.0f}"),
        ("memory_pss_mb", f"{pss:.0f}"),
        ("memory_growth_mb", f"{total_rss[-1] - total_rss[base]:.1f}"),
        ("memory_growth_main_mb", f"{rss[-1][0] - rss[base][0]:.1f}"),
        ("memory_growth_from_iter", str(base + 1)),
        ("iters", str(len(rows))),
        ("samples", str(args.samples)),
        ("num_workers", str(num_workers)),
        ("load_avg_1min", f"{os.getloadavg()[0]:.2f}"),
    ]
    for name, value in out:
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
