"""Two training runs side by side on one machine, against one run alone.

The pipeline's local cluster runs one job per core. Each job's compiled graphs call an OpenBLAS
whose threads spin after every call; two multi-threaded jobs on two cores then steal each
other's cores (a Hopper TRPO step measured 0.4 s alone and 2-5.7 s beside another job). The
pipeline therefore gives each job one BLAS thread (OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1,
MKL_NUM_THREADS=1). This benchmark measures the three situations with the same Hopper TRPO run
(``scripts/run_rl_mj.py --env_name Hopper-v5 --num_workers 1``):

  alone        one run, BLAS threads as the library sets them (the machine's cores)
  pair         two runs at once, each with one BLAS thread (what the pipeline does)
  pair_spin    two runs at once, BLAS threads left to OpenBLAS (what it did before)

From each run's log, the median over iterations 1.. of the TRPO step (``tstep``) and of the
whole iteration (``ttotal``); iteration 0 (compiles) is left out and the compile cache is filled
by an untimed run first; the sampling (``tsamp``) and value-fit (``tvf``) times are shown too.
Prints ``name: value`` lines, among them the ratios
``pair_iter_vs_alone`` and ``pair_step_vs_alone`` (target: close to 1 on a machine with at least
two cores) and ``pair_spin_step_vs_alone``.

    python benchmarks/bench_concurrent.py [--samples 10000] [--iters 8]

Run it on a quiet machine (nothing else training).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_rl_mj.py")
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def start_run(log, samples, iters, seed, one_thread):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if one_thread:
        env.update(ONE_BLAS_THREAD)
    cmd = [sys.executable, SCRIPT, "--env_name", "Hopper-v5", "--num_workers", "1",
           "--min_total_sa", str(samples), "--max_iter", str(iters), "--seed", str(seed),
           "--log", log]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finish(procs):
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"run_rl_mj.py failed ({p.returncode}):\n{err[-2000:]}")


PHASES = ("ttotal", "tstep", "tsamp", "tvf")


def medians(log):
    """Medians over iterations 1.. of a finished log's iteration, TRPO step, sampling and value
    fit times."""
    from imitation.training import read_log

    rows = read_log(log).rows
    return tuple(float(np.median(rows[c][1:])) for c in PHASES)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints `name: value` lines.")
    ap.add_argument("--samples", type=int, default=10000,
                    help="--min_total_sa of each run (default 10000)")
    ap.add_argument("--iters", type=int, default=8,
                    help="iterations per run, the first one not timed (default 8)")
    args = ap.parse_args(argv)
    if args.iters < 2 or args.samples < 1:
        ap.error("--iters must be >= 2 and --samples >= 1")

    tmp = tempfile.mkdtemp(prefix="bench_concurrent_")
    out = {}
    try:
        def path(name):
            return os.path.join(tmp, f"{name}.h5")

        finish([start_run(path("warmup"), 1000, 2, 0, False)])  # fills the compile cache
        finish([start_run(path("alone"), args.samples, args.iters, 1, False)])
        out["alone"] = medians(path("alone"))
        for name, one_thread in (("pair", True), ("pair_spin", False)):
            procs = [start_run(path(f"{name}{i}"), args.samples, args.iters, 1 + i, one_thread)
                     for i in range(2)]
            finish(procs)
            runs = [medians(path(f"{name}{i}")) for i in range(2)]
            out[name] = tuple(float(np.mean(v)) for v in zip(*runs))
            print(f"{name}: per run ({', '.join(PHASES)}) {runs}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = []
    for name in ("alone", "pair", "pair_spin"):
        iter_s, step_s, samp_s, vf_s = out[name]
        lines += [(f"{name}_iter_s", iter_s), (f"{name}_step_s", step_s),
                  (f"{name}_sampling_s", samp_s), (f"{name}_vf_s", vf_s)]
        if name != "alone":
            lines += [(f"{name}_iter_vs_alone", iter_s / out["alone"][0]),
                      (f"{name}_step_vs_alone", step_s / out["alone"][1]),
                      (f"{name}_sampling_vs_alone", samp_s / out["alone"][2])]
    for name, value in lines:
        print(f"{name}: {value:.3f}")
    print(f"cores: {len(os.sched_getaffinity(0))}")
    print(f"samples: {args.samples}")
    print(f"load_avg_1min: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
