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
