"""A run's life: the outer training loop shared by TRPO (run_rl_mj.py) and imitation
(imitate_mj.py) — iterate, log, snapshot every `save_freq` iterations, stop cleanly on Ctrl-C —
the log file it writes (`TrainingLog`) and reads back (`read_log`), and the state a resumed run
continues from (`RunState`).

A log is one HDF5 file (written with h5py only):
  log            a table (compound dataset) of one row per iteration, in the original's column
                 names; PyTables reads it as a Table, as it did the original's logs
  snapshots/iter%07d/<scope path>   the models' variables at that iteration
  resume/        what `RunState` needs to continue the run exactly
  attributes     args (the run's arguments, JSON), finished (0/1), versions (JSON list of the
                 library versions of every process that wrote the file, one entry per change)
"""
import json
import os
import signal
import sys
from dataclasses import dataclass

import numpy as np

from imitation.errors import UserError
from policyopt import util

# Every column a training log can hold (the original's names), what it means. The console shows
# COMPACT_COLUMNS unless --verbose; the log always holds every column.
LOG_COLUMNS = {
    "iter": "iteration (behavioural cloning: Adam steps done)",
    "trueret": "mean true (environment) return of the iteration's trajectories",
    "ret": "mean return of the iteration's trajectories (TRPO)",
    "trueret_std": "standard deviation of the evaluation returns (behavioural cloning)",
    "iret": "mean return under the imitation reward (discriminator or linear reward)",
    "avglen": "mean trajectory length",
    "nsa": "transitions sampled this iteration",
    "ent": "mean entropy of the policy's action distribution",
    "vf_r2": "R^2 of the value function against the Q values (before its fit)",
    "tbase_r2": "R^2 of a time-only baseline against the Q values",
    "dx": "size of the policy step (parameter-space norm)",
    "dl": "improvement of the TRPO surrogate objective",
    "kl": "mean KL(old || new) of the policy step",
    "gnorm": "norm of the surrogate's gradient",
    "bt": "line-search backtracking steps (11: no step taken)",
    "rloss": "discriminator loss after its fit (FEM/GTAL: the expert-minus-policy margin)",
    "racc": "discriminator accuracy, mean of raccpi and raccex",
    "raccpi": "share of policy pairs the discriminator scores as policy",
    "raccex": "share of expert pairs the discriminator scores as expert",
    "vf_dl": "improvement of the value function's objective",
    "vf_kl": "the value function step's mean squared change",
    "vf_gnorm": "norm of the value function's gradient",
    "vf_bt": "the value function's line-search backtracking steps",
    "trainloss": "behavioural cloning: -mean log pi(expert action) on the training pairs",
    "valloss": "behavioural cloning: the same on the validation pairs",
    "valacc": "behavioural cloning: validation accuracy as the original (-NLL discrete, "
              "-squared error of the mean action continuous)",
    "tsamp": "seconds sampling",
    "tadv": "seconds computing rewards and advantages",
    "tstep": "seconds in the policy step",
    "treward": "seconds fitting the reward",
    "tvf": "seconds fitting the value function",
    "ttotal": "seconds for the whole iteration",
}
COMPACT_COLUMNS = ("iter", "trueret", "ret", "iret", "avglen", "ent", "kl", "bt", "racc",
                   "vf_r2", "trueret_std", "valloss", "valacc", "ttotal")


def _fmt(v):
    """A log value as printed in the console table."""
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    return f"{v:.5g}" if abs(v) < 1e6 else f"{v:.4e}"


def _appended_versions(attrs, current):
    """The `versions` attribute (JSON list) with `current` (library versions) appended unless
    it equals the last entry."""
    history = json.loads(_text(attrs["versions"])) if "versions" in attrs else []
    if not history or history[-1] != current:
        history.append(current)
    return json.dumps(history, sort_keys=True)


def _text(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


class TrainingLog:
    """One row of named fields per iteration, printed as an aligned table (header every
    `header_every` rows) and stored in the HDF5 file `filename` as the table `log` (layout in
    the module docstring). Rows are buffered and written together with each snapshot (`save`)
    through an atomic replace, so a run killed at any moment leaves a file that opens and holds
    every iteration up to its last completed save.
    """

    def __init__(self, filename=None, attrs=None, header_every=20, out=None,
                 print_columns=None):
        """`print_columns`: the columns shown on the console (None: all of them)."""
        import os

        self.filename = filename
        self.attrs = dict(attrs or {})
        self.versions = util.library_versions()  # once: they cannot change within a process
        self.header_every = header_every
        self.out = out
        self.print_columns = None if print_columns is None else set(print_columns)
        self.pending = []
        self.columns = None
        self.num_printed = 0
        if filename and os.path.exists(filename):
            import h5py

            with h5py.File(filename, "r") as f:
                if "log" in f:
                    self.columns = list(f["log"].dtype.names)

    def write(self, kvs, print_=True):
        """Record one row: `kvs` is a list of (name, value) in column order."""
        kvs = [(k, v) for k, v in kvs]
        if self.columns is None:
            self.columns = [k for k, _ in kvs]
        names = [k for k, _ in kvs]
        if names != self.columns:
            raise ValueError(f"log row fields {names} differ from the table's {self.columns}")
        self.pending.append(kvs)
        if print_:
            self._print(kvs)

    def _print(self, kvs):
        if self.print_columns is not None:
            kvs = [(k, v) for k, v in kvs if k in self.print_columns]
        out = self.out or sys.stdout
        widths = [max(len(k), 9) for k, _ in kvs]
        if self.num_printed % self.header_every == 0:
            print("  ".join(k.rjust(w) for (k, _), w in zip(kvs, widths)), file=out)
            print("  ".join("-" * w for w in widths), file=out)
        print("  ".join(_fmt(v).rjust(w) for (_, v), w in zip(kvs, widths)), file=out,
              flush=True)
        self.num_printed += 1

    def _append_rows(self, f):
        if "log" not in f:
            dtype = [(k, np.int64 if isinstance(v, (bool, int, np.integer, np.bool_))
                      else np.float64) for k, v in self.pending[0]]
            f.create_dataset("log", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(256,))
        table = f["log"]
        rec = np.zeros(len(self.pending), dtype=table.dtype)
        for i, kvs in enumerate(self.pending):
            for k, v in kvs:
                rec[k][i] = v
        n = table.shape[0]
        table.resize((n + len(rec),))
        table[n:] = rec
        if "NROWS" in table.attrs:   # a table PyTables created (an older log): keep it valid
            table.attrs["NROWS"] = np.int64(n + len(rec))

    def save(self, snapshot_iter=None, models=(), extra=None, finished=False):
        """Append the buffered rows, and when `snapshot_iter` is given write every model in
        `models` under ``snapshots/iter%07d``; `extra(h5file)` may write more (e.g. resume
        state); `finished` marks the run complete (root attribute `finished`). All in one
        atomic replace of the file."""
        if not self.filename:
            self.pending = []
            return
        import os


        def fill(f):
            if self.pending:
                self._append_rows(f)
            f.attrs["args"] = json.dumps(self.attrs, sort_keys=True, indent=1, default=str)
            f.attrs["finished"] = int(finished)
            f.attrs["versions"] = _appended_versions(f.attrs, self.versions)
            if snapshot_iter is not None:
                key = f"snapshots/iter{snapshot_iter:07d}"
                if key in f:
                    del f[key]
                for m in models:
                    m.save_h5(f, key)
            if extra is not None:
                extra(f)

        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.filename)), exist_ok=True)
            util.write_h5_atomic(self.filename, fill, copy_existing=True)
        except OSError as e:  # a full disk, a file-size limit, a directory made read-only
            n = self.rows_written() if os.path.exists(self.filename) else 0
            kept = (f"it keeps its last save ({n} iteration{'s' if n != 1 else ''})"
                    if os.path.exists(self.filename) else "nothing was saved")
            raise UserError(f"cannot write the log {self.filename} "
                            f"({e.strerror or type(e).__name__}); {kept}")
        self.pending = []

    def rows_written(self):
        """Number of rows already in the file."""
        import os

        if not self.filename or not os.path.exists(self.filename):
            return 0
        return len(read_log(self.filename).rows)


@dataclass
class LogData:
    """A training log read back: the run's arguments, its table, whether it finished."""

    path: str
    args: dict
    rows: np.ndarray            # structured array, one field per column
    finished: bool = None       # None: the file does not say (an original log)

    @property
    def columns(self):
        return list(self.rows.dtype.names)


def read_log(path):
    """Read a training log (this project's or an original one). UserError, in one line, when
    the file is missing, not HDF5, or holds no table `log` of named columns."""
    from imitation.errors import UserError
    from imitation.snapshots import open_h5, read_args

    with open_h5(path) as f:
        if "log" not in f:
            raise UserError(f"{path} has no `log` table (not a training log; top-level "
                            f"entries: {', '.join(sorted(f.keys())[:6]) or 'none'})")
        d = f["log"]
        if not hasattr(d, "dtype") or d.dtype.names is None or d.ndim != 1:
            raise UserError(f"{path}: `log` is not a table of named columns")
        finished = f.attrs.get("finished")
        return LogData(path=path, args=read_args(f), rows=d[()],
                       finished=None if finished is None else bool(finished))


class TensorBoardWriter:
    """Every field of every log row as a TensorBoard scalar, at the row's ``iter`` (Adam steps
    for behavioural cloning), through tensorboardX: event files that TensorBoard reads, with no
    deep-learning framework installed."""

    def __init__(self, logdir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs tensorboardX: pip install -e \".[tensorboard]\"")
        if os.path.exists(logdir) and not os.path.isdir(logdir):
            raise UserError(f"--tensorboard {logdir} is a file, not a directory")
        self.writer = SummaryWriter(logdir)

    def write(self, kvs):
        fields = dict(kvs)
        step = int(fields.get("iter", 0))
        for k, v in kvs:
            if k != "iter":
                self.writer.add_scalar(k, float(v), step)
        self.writer.flush()

    def close(self):
        self.writer.close()


def train_loop(step_fn, log, models, max_iter, save_freq, print_freq=1, start_iter=0,
               extra_state=None, snapshot_label=None):
    """Call `step_fn()` (returns a log row) for iterations start_iter .. max_iter-1.

    The log row buffer is written with a snapshot of `models` at every iteration divisible by
    `save_freq`, at the last iteration, and when Ctrl-C arrives (the current iteration finishes
    first; a second Ctrl-C aborts at once). `extra_state(h5file)` may add resume data to each
    save; `snapshot_label(it)` names the snapshot (default: it). Returns the last iteration
    completed.
    """
    interrupted = []

    def on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        what = "saving" if log.filename else "stopping (no --log: nothing is saved)"
        print(f"\nCtrl-C: finishing this iteration and {what} (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    it = start_iter - 1
    try:
        for it in range(start_iter, max_iter):
            row = step_fn()
            log.write(row, print_=(it % print_freq == 0 or it == max_iter - 1))
            if it % save_freq == 0 or it == max_iter - 1 or interrupted:
                log.save(snapshot_label(it) if snapshot_label else it, models, extra_state,
                         finished=it == max_iter - 1)
            if interrupted:
                if log.filename:
                    print(f"saved a snapshot to {log.filename}", file=sys.stderr)
                raise KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, old_handler)
    return it


class RunState:
    """Everything a resumed run needs, saved under ``resume/`` in the log at every snapshot:
    every variable of every model (parameters and standardizers), extra shared variables (the
    Adam moments and step counters), the random generator's state, and counters of the
    optimizer (its iteration). Restoring it continues the same training, not a new one."""

    def __init__(self, models, shared_vars=(), rng=None, counters=None, fingerprints=None):
        self.models = list(models)
        self.shared_vars = list(shared_vars)
        self.rng = rng
        self.counters = counters or {}  # name -> (object, attribute)
        # input name -> SHA-256 of the file the run reads (its dataset): a resume on a
        # changed file is refused
        self.fingerprints = dict(fingerprints or {})

    def write(self, h5file, iteration):
        import json

        if "resume" in h5file:
            del h5file["resume"]
        g = h5file.create_group("resume")
        g.attrs["iteration"] = int(iteration)
        for m in self.models:
            m.save_h5(g, "models")
        for i, v in enumerate(self.shared_vars):
            g.create_dataset(f"shared/{i:03d}", data=v.get_value())
        if self.rng is not None:
            g.attrs["rng"] = json.dumps(self.rng.bit_generator.state)
        g.attrs["counters"] = json.dumps({k: getattr(o, a) for k, (o, a)
                                          in self.counters.items()})
        g.attrs["fingerprints"] = json.dumps(self.fingerprints, sort_keys=True)

    def saver(self, iteration_fn):
        """An `extra_state` callback for train_loop (iteration_fn() = last finished iter)."""
        return lambda h5file: self.write(h5file, iteration_fn())

    def load(self, path):
        """Restore from the log at `path`; returns the last saved iteration."""
        import json

        import h5py
        import numpy as np

        from imitation.errors import UserError

        with h5py.File(path, "r") as f:
            if "resume" not in f:
                raise UserError(f"{path} holds no resume state (written by an older version?)")
            g = f["resume"]
            stored = json.loads(g.attrs.get("fingerprints", "{}"))
            for name, sha in stored.items():  # logs written before fingerprints have none
                if name in self.fingerprints and self.fingerprints[name] != sha:
                    raise UserError(f"--resume: the {name} file differs from the one {path} "
                                    f"was trained on (SHA-256 {self.fingerprints[name][:12]}"
                                    f"... now, {sha[:12]}... then): resuming would continue "
                                    "on other data")
            try:
                for m in self.models:
                    m.load_h5(g, "models")
            except (KeyError, ValueError) as e:
                raise UserError(f"{path}: the resume state does not fit this run ({e})")
            shared = sorted(g["shared"].keys()) if "shared" in g else []
            if len(shared) != len(self.shared_vars):
                raise UserError(f"{path}: the resume state has {len(shared)} optimizer "
                                f"variables, this run {len(self.shared_vars)}")
            for name, v in zip(shared, self.shared_vars):
                v.set_value(np.asarray(g["shared"][name][()], dtype=v.dtype))
            if self.rng is not None:
                self.rng.bit_generator.state = json.loads(g.attrs["rng"])
            for k, val in json.loads(g.attrs["counters"]).items():
                obj, attr = self.counters[k]
                setattr(obj, attr, val)
            return int(g.attrs["iteration"])
