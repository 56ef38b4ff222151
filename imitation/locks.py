"""One writer per output: an exclusive lock held for a run's life.

Two runs given the same `--log` (or two pipelines the same `--out`) would both "succeed" and
interleave their rows, snapshots and resume state. A run therefore holds an advisory lock
(`fcntl.flock`) on ``<path>.lock`` while it writes `path`; a second run fails at once with one
line naming the holder. The kernel drops the lock when the process dies, so a killed run never
leaves a stale lock; the lock file itself is removed on a clean exit.

Also here: `remove_stale_temporaries`, which deletes the ``<path>.tmp-<pid>`` files that
`policyopt.util.atomic_write` leaves when its process is SIGKILLed mid-save.
"""
import atexit
import glob
import os
import re

from imitation.errors import UserError

_held = {}   # absolute path -> open lock file


def _lock_path(key):
    # a directory (a pipeline's --out) holds its lock inside; a file has it beside
    return os.path.join(key, ".lock") if os.path.isdir(key) else key + ".lock"


def lock_output(path, what="--log"):
    """Hold an exclusive lock on `path` (``<path>.lock`` beside a file, ``.lock`` inside a
    directory) until `release_output` or the process ends. Re-entrant within a process.
    UserError when another process holds it. Returns True when this call took the lock,
    False when the process already held it."""
    import fcntl

    key = os.path.abspath(path)
    if key in _held:
        return False
    lock_path = _lock_path(key)
    try:
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        f = open(lock_path, "a+")
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write next to it ({e.strerror})")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise UserError(f"{what} {path} is in use by another run (process {holder}); wait for "
                        f"it to end or choose another {what}")
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _held[key] = f
    return True


def release_output(path):
    """Release the lock `lock_output` took on `path` and remove its lock file."""
    key = os.path.abspath(path)
    f = _held.pop(key, None)
    if f is None:
        return
    try:
        os.unlink(f.name)
    except OSError:
        pass
    f.close()   # closing drops the flock


@atexit.register
def _release_all():
    for key in list(_held):
        release_output(key)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path):
    """Delete ``<path>.tmp-<pid>`` files whose process is gone (left by a SIGKILL during an
    atomic save); returns the paths removed."""
    removed = []
    for tmp in glob.glob(glob.escape(path) + ".tmp-*"):
        m = re.fullmatch(r".*\.tmp-(\d+)", tmp)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(tmp)
                removed.append(tmp)
            except OSError:
                pass
    return removed
