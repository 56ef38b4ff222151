"""Start-up time of GAIL training: process start to the first sampled environment step.

Runs ``python scripts/imitate_mj.py --mode ga --data <Hopper 4-trajectory dataset> --max_iter 1
--min_total_sa 1000`` with ``POLICYOPT_REPORT_FIRST_STEP=1``, which makes every sampling worker
print ``policyopt: first environment step at <unix time>`` on stderr at its first step. The
figure is that time minus the wall-clock time taken just before the process is started; the
process (group) is killed as soon as the line appears.

  cold_start_s  with PYTENSOR_FLAGS=compiledir=<a fresh empty directory> (nothing compiled,
                BLAS not yet probed); the user's other PYTENSOR_FLAGS are kept. Target <= 20 s.
  warm_start_s  with the default compile cache, filled by one untimed run first. Target <= 5 s.
  import_s      ``python -c "import policyopt, imitation.envs"`` with the default cache.

Each is the median over --repeats runs.

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


def time_to_first_step(data, compiledir=None, timeout=300., extra_args=()):
    """Seconds from just before Popen to the first environment step of imitate_mj.py."""
    env = dict(os.environ, POLICYOPT_REPORT_FIRST_STEP="1")
    flags = pytensor_flags(compiledir)
    if flags:
        env["PYTENSOR_FLAGS"] = flags
    cmd = [sys.executable, SCRIPT, "--mode", "ga", "--data", data, "--max_iter", "1",
           "--min_total_sa", "1000", *extra_args]
    tail = []
    t0 = time.time()
    # its own process group, so that the sampling workers go with it when it is killed
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = t0 + timeout
        for line in proc.stderr:
            m = FIRST_STEP.search(line)
            if m:
                return float(m.group(1)) - t0
            tail = (tail + [line.rstrip()])[-20:]
            if time.time() > deadline:
                raise RuntimeError(f"no first step within {timeout:.0f} s")
        proc.wait()
        raise RuntimeError(f"imitate_mj.py exited with code {proc.returncode} before its first "
                           "environment step:\n" + "\n".join(tail))
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        proc.stderr.close()


def time_import():
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import policyopt, imitation.envs"], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints `name: value` lines. Targets: cold_start_s <= 20, "
                                        "warm_start_s <= 5.")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per figure; the median is reported (default 3)")
    ap.add_argument("--data", default=None,
                    help="Hopper expert dataset (default: sample 4 trajectories of the original "
                         "expert into a temporary file, as bench_gail.py does)")
    ap.add_argument("--timeout", type=float, default=300.,
                    help="give up on a run after this many seconds (default 300)")
    ap.add_argument("--skip-cold", action="store_true", help="only warm_start_s and import_s")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    tmpdir = tempfile.mkdtemp(prefix="bench_startup_")
    try:
        if args.data is None:
            from bench_gail import build_expert_dataset  # beside this script

            args.data = build_expert_dataset(os.path.join(tmpdir, "hopper_4traj.h5"))
        cold = []
        if not args.skip_cold:
            for r in range(args.repeats):
                cdir = os.path.join(tmpdir, f"compiledir_{r}")
                os.makedirs(cdir)
                cold.append(time_to_first_step(args.data, cdir, args.timeout))
                print(f"cold run {r}: {cold[-1]:.2f} s", file=sys.stderr, flush=True)
                shutil.rmtree(cdir, ignore_errors=True)
        time_to_first_step(args.data, None, args.timeout)  # fills the default cache
        warm, imp = [], []
        for r in range(args.repeats):
            warm.append(time_to_first_step(args.data, None, args.timeout))
            imp.append(time_import())
            print(f"warm run {r}: {warm[-1]:.2f} s, import {imp[-1]:.2f} s", file=sys.stderr,
                  flush=True)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    out = []
    if cold:
        out.append(("cold_start_s", f"{np.median(cold):.2f}"))
    out += [("warm_start_s", f"{np.median(warm):.2f}"),
            ("import_s", f"{np.median(imp):.2f}"),
            ("repeats", str(args.repeats)),
            ("load_avg_1min", f"{os.getloadavg()[0]:.2f}")]
    for name, value in out:
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
