"""What every script shares: user-facing errors, common flags, seeding, backend selection.

A script's `main` raises `UserError` (or lets one of the well-known input errors escape);
`run_main` prints it as one line on stderr and exits with status 2, without a traceback.
"""
import argparse
import os
import sys

from imitation.errors import EnvError, UserError

__all__ = ["EnvError", "UserError", "run_main"]


def package_checkout_mismatch(script_path):
    """When `script_path` (a script in some checkout's scripts/) imports this package from
    another checkout, the line that says so; None otherwise. A script run from a `git
    worktree` imports the installed package, which `pip install -e` points at the checkout it
    was run in: the run would silently use that checkout's code, and the pipeline's jobs too."""
    if not script_path:
        return None
    script_root = os.path.dirname(os.path.dirname(os.path.abspath(script_path)))
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    is_checkout = os.path.isfile(os.path.join(script_root, "imitation", "__init__.py"))
    if not is_checkout or os.path.samefile(script_root, package_root):
        return None
    return (f"warning: {os.path.basename(script_path)} is in {script_root}, but the imitation "
            f"package comes from {package_root}, whose code this run uses; to run this "
            f"checkout: PYTHONPATH={script_root} python {script_path} ...")


def run_main(main, argv=None):
    """Run `main(argv)`; turn input errors into one clear stderr line and exit status 2.

    Ctrl-C exits with 130 after `main` has had the chance to save. First warns when the script
    and the imitation package come from different checkouts (`package_checkout_mismatch`)."""
    from policyopt.optim import DivergedError

    warning = package_checkout_mismatch(getattr(sys.modules.get("__main__"), "__file__", None))
    if warning:
        print(warning, file=sys.stderr)
    try:
        rc = main(argv)
    except (UserError, EnvError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except DivergedError as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        sys.exit(3)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # the reader went away (`showlog.py --columns | head`): stop quietly, as a program
        # killed by SIGPIPE does; stdout goes to /dev/null so the exit's flush cannot fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    sys.exit(rc or 0)


def positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def nonneg_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {s!r}")
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}")
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {s}")
    return v


def nonneg_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}")
    if not (v >= 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {s}")
    return v


def unit_interval(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {s!r}")
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {s}")
    return v


def int01(s):
    if s not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {s!r}")
    return int(s)


def add_resume_arg(parser):
    parser.add_argument("--resume", action="store_true",
                        help="continue the killed or interrupted run logged in --log from its "
                             "last snapshot (arguments come from the log; --max_iter may extend "
                             "it)")


def add_common_args(parser, sampling=True):
    """--seed, --backend, --num_workers (and sampling flags)."""
    g = parser.add_argument_group("execution")
    g.add_argument("--seed", type=nonneg_int, default=0,
                   help="seed for every random stream (default: 0)")
    g.add_argument("--backend", choices=["c", "numba", "jax"],
                   default=os.environ.get("POLICYOPT_BACKEND", "c"),
                   help="how the PyTensor graphs are compiled (default: c, or "
                        "$POLICYOPT_BACKEND)")
    if sampling:
        g.add_argument("--num_workers", type=nonneg_int, default=None,
                       help="sampling worker processes (default: one per CPU core; 0: sample "
                            "in the main process)")
    return g


def setup_backend(args):
    from policyopt import backend

    try:
        backend.set_backend(args.backend)
    except (ValueError, RuntimeError) as e:
        raise UserError(str(e))


def explicit_args(parser, argv=None):
    """The dests of the options given on the command line (not left at their defaults)."""
    import copy

    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    ns, _ = quiet.parse_known_args(argv)
    return set(vars(ns))


# On --resume these come from the command line; every other argument from the log.
RESUME_OVERRIDABLE = {"resume", "log", "max_iter", "print_freq", "save_freq", "num_workers",
                      "backend", "verbose", "tensorboard"}


def require_unless_resume(parser, args, *names):
    """argparse's 'required' for options a --resume takes from the run's log instead."""
    missing = [n for n in names if getattr(args, n) is None]
    if missing and not args.resume:
        parser.error("the following arguments are required: "
                     + ", ".join("--" + n for n in missing))


def restore_args(args, parser, argv=None):
    """On --resume: take the run's stored arguments, except those in RESUME_OVERRIDABLE that
    were given on this command line. Returns the stored args dict."""
    from imitation.snapshots import open_h5, read_args

    with open_h5(args.log) as f:
        stored = read_args(f)
    if not stored:
        raise UserError(f"--resume: {args.log} records no run arguments")
    foreign = sorted(set(stored) - set(vars(args)))
    if foreign:
        raise UserError(f"--resume: {args.log} is not a log of {parser.prog} (its arguments "
                        f"include {', '.join(foreign[:3])})")
    given = explicit_args(parser, argv)
    for k in sorted(given - RESUME_OVERRIDABLE):
        if k in stored and not _same_arg(getattr(args, k), stored[k]):
            raise UserError(f"--resume: --{k} {getattr(args, k)} differs from the run's "
                            f"{stored[k]} (a resumed run keeps its arguments; only "
                            f"--max_iter, --save_freq, --print_freq, --num_workers and --backend "
                            f"may change)")
    for k, v in stored.items():
        # max_iter, save_freq and the worker count (the sampled episodes depend on it)
        # continue as stored unless given again; the other overridable ones (paths, printing,
        # backend) are this invocation's
        if k in RESUME_OVERRIDABLE and (
                k in given or k not in ("max_iter", "save_freq", "num_workers")):
            continue
        setattr(args, k, v)
    if "policy_hidden_spec" in stored:
        from policyopt import nn

        try:
            nn.parse_hidden_spec(args.policy_hidden_spec)
        except ValueError as e:
            raise UserError(f"--resume: {args.log}: stored policy_hidden_spec: {e}")
    args.resume = True
    return stored


def _same_arg(given, stored):
    """Whether a command-line value names the same thing as a stored one (equal values, the
    same existing file, or the same JSON)."""
    if given == stored:
        return True
    if isinstance(given, str) and isinstance(stored, str):
        try:
            if os.path.exists(given) and os.path.exists(stored):
                return os.path.samefile(given, stored)
        except OSError:
            pass
        import json

        try:
            return json.loads(given) == json.loads(stored)
        except ValueError:
            pass
    return False


def check_writable_output(flag, path, directory=False, create_parents=False):
    """UserError unless `path` can be written before any work is done: with `create_parents`
    its nearest existing ancestor, else its parent, is a writable directory; `path` itself is
    not the wrong kind (a directory for a file output, or a file for a `directory` output)
    and, when it exists, is writable."""
    path_abs = os.path.abspath(path)
    parent = os.path.dirname(path_abs)
    if create_parents:
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        if os.path.exists(parent):
            raise UserError(f"{flag} {path}: {parent} is a file, not a directory")
        raise UserError(f"{flag} {path}: directory {parent} does not exist")
    if directory:
        if os.path.exists(path_abs) and not os.path.isdir(path_abs):
            raise UserError(f"{flag} {path} is a file, not a directory")
    elif os.path.isdir(path_abs):
        raise UserError(f"{flag} {path} is a directory")
    target = path_abs if os.path.exists(path_abs) else parent
    if not os.access(target, os.W_OK | (os.X_OK if os.path.isdir(target) else 0)):
        raise UserError(f"{flag} {path}: {target} is not writable")


def check_log_path(path, resume=False):
    """A --log path must not hold a log (unless resume); its missing parent directories are
    created at the first save, but none of them may be a file, and the nearest existing one
    must be writable. Takes the log's exclusive lock for the life of the process (a second
    run on the same log fails here, `imitation.locks`) and removes temporaries a killed save
    left next to it."""
    if path is None:
        if resume:
            raise UserError("--resume needs --log (the log of the run to continue)")
        return
    check_writable_output("--log", path, create_parents=True)
    from imitation import locks

    locks.lock_output(path, "--log")
    if os.path.exists(path) and not resume:
        raise UserError(f"--log {path} already exists; pass --resume to continue that run, or "
                        "choose a new file")
    if resume and not os.path.exists(path):
        raise UserError(f"--resume: {path} does not exist")
    locks.remove_stale_temporaries(path)
