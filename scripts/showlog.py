#!/usr/bin/env python
"""Learning curves from one or several training logs, side by side.

    python scripts/showlog.py runs/ga_hopper.h5 runs/trpo_hopper.h5 --out curves.png
    python scripts/showlog.py a.h5 b.h5 --labels GAIL BC --fields trueret valacc --smooth 10

A log is the HDF5 file written with --log by imitate_mj.py or run_rl_mj.py (or an original
expert's file): a table `log` with one row per iteration. By default there is one panel for each
of: the true return (`trueret`; `ret` in RL logs), the discriminator accuracy (`racc`, `raccpi`,
`raccex`), the KL step (`kl`) and the policy entropy (`ent`), x = `iter`; panels only for fields
that at least one log has, one line per log. --fields picks other columns, one panel each
(`trueret` and `ret` stand for each other, so imitation and RL logs compare on one panel).

Prints a short summary per log (iterations, last and best return). The figure is written
atomically (png, pdf or svg, by the extension of --out).
"""
import argparse
import os

from imitation import cli

# Default panels: (title, [fields]); a panel is drawn when at least one log has one of them.
DEFAULT_PANELS = [
    ("true return", ["trueret"]),
    ("discriminator accuracy", ["racc", "raccpi", "raccex"]),
    ("KL per step", ["kl"]),
    ("policy entropy", ["ent"]),
]
# Columns that name the same quantity in different kinds of log (imitation vs RL).
ALIASES = {"trueret": ["trueret", "ret"], "ret": ["ret", "trueret"]}
LINESTYLES = ["-", "--", ":", "-."]
OUT_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="*", metavar="LOG.h5", help="training logs (HDF5)")
    p.add_argument("--out",
                   help="figure to write (.png, .pdf or .svg); never one of the logs (required "
                        "with logs)")
    p.add_argument("--csv", metavar="OUT.csv", default=None,
                   help="write the log's table as CSV (one log; every column, one row per "
                        "iteration, floats exactly); with --out, the figure too")
    p.add_argument("--columns", action="store_true",
                   help="print what every log column means, and exit")
    p.add_argument("--fields", nargs="+", default=None, metavar="FIELD",
                   help="log columns to plot, one panel each (default: return, discriminator "
                        "accuracy, kl, ent)")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="one legend label per log (default: the file names)")
    p.add_argument("--smooth", type=cli.positive_int, default=1, metavar="N",
                   help="trailing moving average over N iterations (default: 1, none)")
    return p


def expert_return(args):
    """The mean return of the expert trajectories an imitation run trained on (its dataset's
    first `limit_trajs`), or None: an RL log, or a dataset no longer at its path."""
    data = args.get("data")
    if not data or not os.path.exists(data):
        return None
    from imitation.data import load_dataset

    try:
        d = load_dataset(data)
    except cli.UserError:
        return None
    return float(d.returns_B[:args.get("limit_trajs") or d.num_trajs].mean())


class Log:
    """The `log` table of one file as a dict of column arrays, and its label."""

    def __init__(self, path, label):
        import numpy as np

        from imitation.training import read_log

        self.path, self.label = path, label
        run = read_log(path)
        rows, self.finished = run.rows, run.finished
        # behavioural cloning logs one row per evaluation, its `iter` counting Adam steps
        self.bclone = run.args.get("mode") == "bclone"
        self.columns = {}
        for name in rows.dtype.names:
            col = rows[name]
            if col.dtype.kind in "biuf":
                self.columns[name] = np.asarray(col, dtype=np.float64)
        self.nrows = len(rows)
        self.x = self.columns.get("iter", np.arange(self.nrows, dtype=np.float64))
        self.expert_return = expert_return(run.args)

    def column(self, field):
        """The values of `field` (or of its alias), or None when the log lacks it."""
        for name in ALIASES.get(field, [field]):
            if name in self.columns:
                return self.columns[name]
        return None

    def summary(self):
        import numpy as np

        if self.nrows == 0:
            return f"{self.label}: 0 iterations ({self.path})"
        it = self.x
        if self.bclone:
            parts = [f"{self.nrows} evaluations (Adam steps {it[0]:g}..{it[-1]:g})"]
        else:
            parts = [f"{self.nrows} iterations (iter {it[0]:g}..{it[-1]:g})"]
        ret = self.column("trueret")
        if ret is not None:
            ok = np.isfinite(ret)
            if ok.any():
                last = np.flatnonzero(ok)[-1]
                best = np.nanargmax(np.where(ok, ret, np.nan))
                parts.append(f"last return {ret[last]:.2f} (iter {it[last]:g}), best "
                             f"{ret[best]:.2f} (iter {it[best]:g})")
            else:
                parts.append("no finite return")
        for name in ("racc", "valacc"):
            if name in self.columns and np.isfinite(self.columns[name][-1]):
                parts.append(f"last {name} {self.columns[name][-1]:.3f}")
        if self.finished is not None:
            parts.append("finished" if int(self.finished) else "not finished")
        return f"{self.label}: " + ", ".join(parts)


def smooth(y, n):
    """Trailing moving average over n points, ignoring non-finite values (NaN where a whole
    window is non-finite); shorter windows at the start."""
    import numpy as np

    if n <= 1 or len(y) == 0:
        return y
    ok = np.isfinite(y)
    c = np.concatenate([[0.], np.cumsum(np.where(ok, y, 0.))])
    k = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, len(y) + 1)
    lo = np.maximum(hi - n, 0)
    cnt = k[hi] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (c[hi] - c[lo]) / np.maximum(cnt, 1), np.nan)


def default_labels(paths):
    """File names; the paths as given where two logs share a file name."""
    names = [os.path.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [os.path.normpath(p) for p in paths]


def choose_panels(logs, fields):
    if fields is None:
        panels = [(title, fs) for title, fs in DEFAULT_PANELS
                  if any(lg.column(f) is not None for lg in logs for f in fs)]
        if not panels:
            avail = sorted(set().union(*(lg.columns for lg in logs)))
            raise cli.UserError(f"none of the default fields (trueret/ret, racc, kl, ent) is in "
                                f"the logs; pass --fields (available: {', '.join(avail)})")
        return panels
    panels = []
    for f in fields:
        for name in (x for x in f.split(",") if x):
            if not any(lg.column(name) is not None for lg in logs):
                avail = sorted(set().union(*(lg.columns for lg in logs)))
                raise cli.UserError(f"--fields: no log has a field {name!r} (available: "
                                    f"{', '.join(avail)})")
            panels.append((name, [name]))
    return panels


def plot(logs, panels, out, fmt, n_smooth):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from policyopt.util import atomic_write

    n = len(panels)
    ncols = 1 if n == 1 else 2
    nrows = (n + ncols - 1) // ncols
    fig = Figure(figsize=(6.4 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    mixed = any(lg.bclone for lg in logs) and not all(lg.bclone for lg in logs)
    for ax0, (title, fields) in zip(axes, panels):
        # Behavioural cloning counts Adam steps, GAIL and TRPO iterations: beside other logs,
        # its lines get their own x-axis along the top.
        bc_here = mixed and any(lg.bclone and lg.nrows and any(lg.column(f) is not None
                                                                 for f in fields) for lg in logs)
        ax_bc = ax0.twiny() if bc_here else ax0
        used = []  # the column names actually drawn (trueret and/or ret)
        expert_drawn = False
        for i, lg in enumerate(logs):
            ax = ax_bc if lg.bclone else ax0
            color = colors[i % len(colors)]
            for j, f in enumerate(fields):
                y = lg.column(f)
                if y is None or lg.nrows == 0:
                    continue
                label = lg.label if len(fields) == 1 else f"{lg.label} {f}"
                name = next(c for c in ALIASES.get(f, [f]) if c in lg.columns)
                if name not in used:
                    used.append(name)
                ax.plot(lg.x, smooth(y, n_smooth), color=color,
                        linestyle=LINESTYLES[j % len(LINESTYLES)], linewidth=1.2, label=label)
                std = lg.columns.get("trueret_std") if f in ALIASES["trueret"] else None
                if std is not None and n_smooth <= 1:
                    ax.fill_between(lg.x, y - std, y + std, color=color, alpha=0.15,
                                    linewidth=0)
                if f in ALIASES["trueret"] and lg.expert_return is not None:
                    ax.axhline(lg.expert_return, color=color, linestyle=":", linewidth=1,
                               label=f"{lg.label}: expert data ({lg.expert_return:.1f})"
                               if len(logs) > 1 else
                               f"expert data ({lg.expert_return:.1f})")
                    expert_drawn = True
        ax0.set_title(title if used == [title] else f"{title} ({', '.join(used or fields)})",
                      fontsize=10)
        only_bc = all(lg.bclone for lg in logs)
        ax0.set_xlabel("Adam steps (behavioural cloning)" if only_bc else "iteration")
        if bc_here:
            ax_bc.set_xlabel("Adam steps (behavioural cloning)", fontsize=8)
        ax0.grid(alpha=0.3)
        lines = ax0.lines + (ax_bc.lines if bc_here else [])
        if lines and (len(logs) > 1 or len(fields) > 1 or expert_drawn):
            ax0.legend(lines, [ln.get_label() for ln in lines], fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    if n_smooth > 1:
        fig.suptitle(f"moving average over {n_smooth} iterations", fontsize=9)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=100)


def check_output_path(flag, out, logs):
    """UserError unless `out` can be written: its directory exists, it is not a directory, and
    it is none of the input `logs` (by path or as the same file)."""
    cli.check_writable_output(flag, out)
    for p in logs:
        if os.path.abspath(p) == os.path.abspath(out) or (
                os.path.exists(p) and os.path.exists(out) and os.path.samefile(p, out)):
            raise cli.UserError(f"{flag} {out} is one of the input logs; choose another file")


def write_csv(logs, out):
    """The one log's table as CSV: a header of column names, one row per iteration, floats in
    their shortest exact form (repr)."""
    import csv

    import numpy as np

    from imitation.training import read_log
    from policyopt.util import atomic_write

    if len(logs) != 1:
        raise cli.UserError(f"--csv writes one log's table; got {len(logs)} logs")
    if not out.endswith(".csv"):
        raise cli.UserError(f"--csv {out}: the file name must end in .csv")
    check_output_path("--csv", out, logs)
    data = read_log(logs[0])
    cols = list(data.columns)
    n_rows = len(data.rows[cols[0]]) if cols else 0
    with atomic_write(out) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for i in range(n_rows):
                w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else int(v)
                            for v in (data.rows[c][i] for c in cols)])
    print(f"wrote {out} ({n_rows} rows, {len(cols)} columns)")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.columns:
        from imitation.training import COMPACT_COLUMNS, LOG_COLUMNS

        width = max(map(len, LOG_COLUMNS))
        for name, meaning in LOG_COLUMNS.items():
            mark = "*" if name in COMPACT_COLUMNS else " "
            print(f"{name:<{width}} {mark} {meaning}")
        print("(* shown on the console by default; --verbose shows every column)")
        return
    if not args.logs or not (args.out or args.csv):
        parser.error("the following arguments are required: LOG.h5, and --out or --csv")
    if args.csv:
        write_csv(args.logs, args.csv)
        if not args.out:
            return
    out = args.out
    fmt = OUT_FORMATS.get(os.path.splitext(out)[1].lower())
    if fmt is None:
        raise cli.UserError(f"--out {out}: the extension must be one of "
                            f"{', '.join(OUT_FORMATS)}")
    check_output_path("--out", out, args.logs)
    if args.labels is not None and len(args.labels) != len(args.logs):
        raise cli.UserError(f"--labels: {len(args.labels)} labels for {len(args.logs)} logs")
    labels = args.labels or default_labels(args.logs)
    logs = [Log(p, lab) for p, lab in zip(args.logs, labels)]
    panels = choose_panels(logs, args.fields)
    for lg in logs:
        print(lg.summary())
    plot(logs, panels, out, fmt, args.smooth)
    print(f"wrote {out} ({len(panels)} panels: "
          f"{', '.join(t if fs == [t] else '/'.join(fs) for t, fs in panels)})")


if __name__ == "__main__":
    cli.run_main(main)
