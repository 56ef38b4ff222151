"""The outer training loop shared by TRPO (run_rl_mj.py) and imitation (imitate_mj.py):
iterate, log, snapshot every `save_freq` iterations, and stop cleanly on Ctrl-C."""
import signal
import sys


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
        print("\nCtrl-C: finishing this iteration and saving (Ctrl-C again to abort)",
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

    def __init__(self, models, shared_vars=(), rng=None, counters=None):
        self.models = list(models)
        self.shared_vars = list(shared_vars)
        self.rng = rng
        self.counters = counters or {}  # name -> (object, attribute)

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
