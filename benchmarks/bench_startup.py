"""Start-up time of GAIL training: process start to the first sampled environment step, and to
the end of the first iteration (its table row).

Runs the README's quick start, ``python scripts/imitate_mj.py --mode ga --data
expert_trajs/cartpole.h5 --min_total_sa 5000 --max_iter 1`` (or ``--data FILE``), with
``POLICYOPT_REPORT_FIRST_STEP=1``, which makes every sampling worker print ``policyopt: first
environment step at <unix time>`` on stderr at its first step. Both figures are measured from
the wall-clock time taken just before the process is started: the first step from the printed
time, the first iteration from the moment its row (iteration 0) appears on the output.

  cold_first_iter_s  with PYTENSOR_FLAGS=compiledir=<a fresh empty directory> (nothing compiled,
                     BLAS not yet probed); the user's other PYTENSOR_FLAGS are kept. Target <= 30.
  cold_first_step_s  the same runs' first environment step.
  warm_first_iter_s  with the default compile cache, filled by one untimed run first.
  warm_first_step_s  the same runs' first environment step. Target <= 5 s.
  import_s           ``python -c "import policyopt, imitation.envs"`` with the default cache.

Each is the median over --repeats runs. Run it on a quiet machine (no training running).

    python benchmarks/bench_startup.py [--repeats 3] [--data FILE]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "imitate_mj.py")
QUICK_START_DATA = os.path.join(REPO, "expert_trajs", "cartpole.h5")
FIRST_STEP = re.compile(r"policyopt: first environment step at ([0-9.]+)")


def pytensor_flags(compiledir=None):
    """The user's PYTENSOR_FLAGS with the compile directory replaced by `compiledir`."""
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f.strip()]
    if compiledir is not None:
        flags = [f for f in flags
                 if f.split("=", 1)[0].strip() not in ("compiledir", "base_compiledir")]
        flags.append(f"compiledir={compiledir}")
    return ",".join(flags)


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def time_first_iteration(data, compiledir=None, timeout=300., extra_args=()):
    """(seconds to the first environment step, seconds to the first iteration's row) of
    imitate_mj.py, from just before Popen."""
    env = dict(os.environ, POLICYOPT_REPORT_FIRST_STEP="1", PYTHONUNBUFFERED="1")
    flags = pytensor_flags(compiledir)
    if flags:
        env["PYTENSOR_FLAGS"] = flags
    cmd = [sys.executable, SCRIPT, "--mode", "ga", "--data", data, "--max_iter", "1",
           "--min_total_sa", "5000", *extra_args]
    tail, first_step = [], None
    t0 = time.time()
    # its own process group, so that the sampling workers go with it when it is killed
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = t0 + timeout
        for line in proc.stdout:
            m = FIRST_STEP.search(line)
            if m and first_step is None:
                first_step = float(m.group(1)) - t0
            if line.split()[:1] == ["0"]:  # iteration 0's row: the first iteration is done
                if first_step is None:
                    raise RuntimeError("no first-step line before the first row")
                return first_step, time.time() - t0
            tail = (tail + [line.rstrip()])[-20:]
            if time.time() > deadline:
                raise RuntimeError(f"no first iteration within {timeout:.0f} s")
        proc.wait()
        raise RuntimeError(f"imitate_mj.py exited with code {proc.returncode} before the end of "
                           "its first iteration:\n" + "\n".join(tail))
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        proc.stdout.close()


def time_import():
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import policyopt, imitation.envs"], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints `name: value` lines. Targets: cold_first_iter_s "
                                        "<= 30, warm_first_step_s <= 5.")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per figure; the median is reported (default 3)")
    ap.add_argument("--data", default=QUICK_START_DATA,
                    help="expert dataset (default: the quick start's expert_trajs/cartpole.h5)")
    ap.add_argument("--timeout", type=float, default=300.,
                    help="give up on a run after this many seconds (default 300)")
    ap.add_argument("--skip-cold", action="store_true", help="only the warm figures and import_s")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    tmpdir = tempfile.mkdtemp(prefix="bench_startup_")
    cold, warm, imp = [], [], []
    try:
        if not args.skip_cold:
            for r in range(args.repeats):
                cdir = os.path.join(tmpdir, f"compiledir_{r}")
                os.makedirs(cdir)
                cold.append(time_first_iteration(args.data, cdir, args.timeout))
                print(f"cold run {r}: first step {cold[-1][0]:.2f} s, first iteration "
                      f"{cold[-1][1]:.2f} s", file=sys.stderr, flush=True)
                shutil.rmtree(cdir, ignore_errors=True)
        time_first_iteration(args.data, None, args.timeout)  # fills the default cache
        for r in range(args.repeats):
            warm.append(time_first_iteration(args.data, None, args.timeout))
            imp.append(time_import())
            print(f"warm run {r}: first step {warm[-1][0]:.2f} s, first iteration "
                  f"{warm[-1][1]:.2f} s, import {imp[-1]:.2f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    out = []
    if cold:
        out += [("cold_first_iter_s", f"{np.median([c[1] for c in cold]):.2f}"),
                ("cold_first_step_s", f"{np.median([c[0] for c in cold]):.2f}")]
    out += [("warm_first_iter_s", f"{np.median([w[1] for w in warm]):.2f}"),
            ("warm_first_step_s", f"{np.median([w[0] for w in warm]):.2f}"),
            ("import_s", f"{np.median(imp):.2f}"),
            ("repeats", str(args.repeats)),
            ("load_avg_1min", f"{os.getloadavg()[0]:.2f}")]
    for name, value in out:
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
