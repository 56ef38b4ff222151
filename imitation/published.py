"""The published GAIL results (Ho & Ermon 2016) and the comparison with the project's own.

`imitation/reference/gail_published_results.csv`, shipped with the package (the regression is
made of it), has one row per suite x task x algorithm x dataset size x run: the mean/std of that
run's evaluation returns and the expert's, read from the original repository's
``results/*_results.h5`` tables (openai/imitation at the commit `imitation.original_experts`
pins). Scores are normalized as in
the paper's Figure 1: (return - random) / (expert - random), with the random policy's return
measured by the project (the published tables do not record it).
"""
import os

import numpy as np

ALG_LABELS = {"bclone": "Behavioral cloning", "ga": "GAIL", "fem": "FEM",
              "simplex": "GTAL", "ga_entreg0": "GAIL, entropy reg. 0",
              "ga_entreg-1": "GAIL, entropy reg. 0.1", "ga_entreg-2": "GAIL, entropy reg. 0.01",
              "ga_entreg-3": "GAIL, entropy reg. 0.001"}
ALG_ORDER = ("bclone", "fem", "simplex", "ga", "ga_entreg0", "ga_entreg-1", "ga_entreg-2",
             "ga_entreg-3")


def default_published_csv():
    """The published results table shipped inside the package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference",
                        "gail_published_results.csv")


def load_published(path=None):
    """The published per-run summary as a pandas DataFrame."""
    import pandas as pd

    from imitation.errors import UserError

    path = path or default_published_csv()
    if not os.path.isfile(path):
        raise UserError(f"published results {path} not found (pass --published PATH)")
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError) as e:
        raise UserError(f"--published {path} is not a readable CSV table "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    need = {"task", "alg", "num_trajs", "run", "alg_return_mean", "expert_return_mean"}
    missing = need - set(df.columns)
    if missing:
        raise UserError(f"{path} lacks columns {', '.join(sorted(missing))}")
    for col in ("num_trajs", "run", "alg_return_mean", "expert_return_mean"):
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise UserError(f"{path}: column {col} is not numeric")
    return df


def run_statistics(run_means, seed=0):
    """Mean, standard deviation (over runs), 95% bootstrap confidence interval of the mean
    (SciPy's BCa bootstrap; NaN with fewer than 3 runs, whose resamples are too few to mean
    anything; a point when all runs agree) and the interquartile mean (from 4 runs up, else
    NaN) of per-run mean returns."""
    from scipy import stats

    x = np.asarray(run_means, dtype=float)
    lo = hi = np.nan
    if len(x) >= 3:
        if np.ptp(x) == 0:
            lo = hi = x[0]
        else:
            ci = stats.bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=9999,
                                 random_state=np.random.default_rng(seed)).confidence_interval
            lo, hi = ci.low, ci.high
    iqm = stats.trim_mean(x, 0.25) if len(x) >= 4 else np.nan
    return dict(mean=x.mean(), std=x.std(), ci_low=lo, ci_high=hi, iqm=iqm, min=x.min(),
                max=x.max())


def summarize_ours(results):
    """Per task x alg x num_trajs, over the runs' mean returns: mean, std across runs, 95%
    bootstrap CI of the mean, interquartile mean, range, number of runs; the mean of the
    stochastic evaluations where the table has them; the mean expert return. `results` is the
    2_eval table."""
    import pandas as pd

    rows = []
    for (task, alg, n), g in results.groupby(["task", "alg", "num_trajs"]):
        run_means = np.array([np.mean(r) for r in g["alg_traj_returns"]])
        ex = np.concatenate([np.asarray(r, dtype=float) for r in g["ex_traj_returns"]])
        st = run_statistics(run_means)
        stoch = np.nan
        if "alg_traj_returns_stochastic" in g:
            stoch = np.mean([np.mean(r) for r in g["alg_traj_returns_stochastic"]])
        rows.append(dict(task=task, alg=alg, num_trajs=int(n), ours_mean=st["mean"],
                         ours_std=st["std"], ours_ci_low=st["ci_low"], ours_ci_high=st["ci_high"],
                         ours_iqm=st["iqm"], ours_min=st["min"], ours_max=st["max"],
                         ours_runs=len(run_means), ours_stoch_mean=stoch, ours_expert=ex.mean()))
    return pd.DataFrame(rows)


def summarize_published(pub):
    import pandas as pd

    rows = []
    for (task, alg, n), g in pub.groupby(["task", "alg", "num_trajs"]):
        m = g["alg_return_mean"].to_numpy(float)
        rows.append(dict(task=task, alg=alg, num_trajs=int(n), pub_mean=m.mean(),
                         pub_std=m.std(), pub_runs=len(m),
                         pub_expert=float(g["expert_return_mean"].mean())))
    cols = ["task", "alg", "num_trajs", "pub_mean", "pub_std", "pub_runs", "pub_expert"]
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[3:]})


def compare(results, pub, random_returns):
    """Join the project's and the published summaries; add normalized scores and, per row, the
    regression check, which depends on what was published:
    - several published runs (classic, Reacher): `within` when our mean lies within the
      published runs' mean +/- 2 std or within 5% of the expert-random range, whichever is
      wider (test 'spread'); `ratio_to_pub` = our normalized score / the published one (the
      returns of these tasks are negative, where a ratio of returns reads upside down);
    - one published run (MuJoCo): `within` when the published value lies inside the range of
      our runs' means (test 'range'); `ratio_to_pub` = our mean return / the published one
      tells how far. With a single run of ours too there is no range to test (test 'ratio'):
      only the ratio is reported, and `within` is False."""
    ours = summarize_ours(results)
    p = summarize_published(pub)
    table = ours.merge(p, on=["task", "alg", "num_trajs"], how="left")
    rnd = table["task"].map(random_returns).astype(float)
    table["random"] = rnd
    table["ours_norm"] = (table["ours_mean"] - rnd) / (table["ours_expert"] - rnd)
    table["pub_norm"] = (table["pub_mean"] - rnd) / (table["pub_expert"] - rnd)
    tol = np.maximum(2 * table["pub_std"].fillna(0.),
                     0.05 * (table["pub_expert"] - rnd).abs())
    table["tolerance"] = tol
    single = table["pub_runs"] == 1
    one_each = single & (table["ours_runs"] < 2)
    table["test"] = np.where(table["pub_mean"].isna(), "",
                             np.where(one_each, "ratio",
                                      np.where(single, "range", "spread")))
    in_spread = (table["ours_mean"] - table["pub_mean"]).abs() <= tol
    in_range = (table["ours_min"] <= table["pub_mean"]) & (table["pub_mean"] <= table["ours_max"])
    table["within"] = np.where(single, in_range & ~one_each, in_spread)
    table["ratio_to_pub"] = np.where(single, table["ours_mean"] / table["pub_mean"],
                                     table["ours_norm"] / table["pub_norm"])
    order = {a: i for i, a in enumerate(ALG_ORDER)}
    table["_o"] = table["alg"].map(lambda a: order.get(a, 99))
    return table.sort_values(["task", "_o", "num_trajs"]).drop(columns="_o").reset_index(
        drop=True)


def _num(x, fmt="9.1f"):
    return "-" if x is None or np.isnan(x) else format(x, fmt)


def format_table(table):
    """A plain-text table of the comparison: our runs (deterministic evaluation, as published:
    mean +/- std over runs, 95% bootstrap CI of the mean, interquartile mean from 4 runs, the
    stochastic evaluation's mean), the published runs, normalized scores, ours / published and
    the verdict of the row's test (see `compare`)."""
    head = (f"{'task':<12}{'alg':<12}{'n':>4}{'runs':>5}  {'ours (deterministic)':>19}  "
            f"{'95% CI of mean':>19}  {'IQM':>9}  {'stochastic':>10}  "
            f"{'published':>17}{'runs':>5}  {'norm ours':>9}  {'norm pub':>8}  "
            f"{'ours/pub':>8}  {'test':>6}  {'within':>6}")
    lines = [head, "-" * len(head)]
    for r in table.itertuples():
        ci = "-" if np.isnan(r.ours_ci_low) else f"[{r.ours_ci_low:.1f}, {r.ours_ci_high:.1f}]"
        if np.isnan(r.pub_mean):          # no published run for this cell
            pub, pruns, ratio, test, within = "-", "-", "-", "-", "-"
        else:
            pub = (f"{r.pub_mean:9.1f} ± {r.pub_std:6.1f}" if r.pub_runs > 1
                   else f"{r.pub_mean:9.1f}")
            pruns, test = str(int(r.pub_runs)), r.test
            ratio, within = f"{r.ratio_to_pub:.3f}", "yes" if r.within else "NO"
            if r.test == "ratio":          # one run on each side: nothing to test
                within = "-"
        # one run has no spread over runs: no "± 0.0"
        ours = (f"{r.ours_mean:9.1f} ± {r.ours_std:7.1f}" if r.ours_runs > 1
                else f"{r.ours_mean:9.1f}{'':10}")
        lines.append(f"{r.task:<12}{r.alg:<12}{r.num_trajs:>4}{r.ours_runs:>5}  "
                     f"{ours}  {ci:>19}  {_num(r.ours_iqm)}  "
                     f"{_num(r.ours_stoch_mean, '10.1f')}  {pub:>17}{pruns:>5}  "
                     f"{r.ours_norm:9.3f}  {r.pub_norm:8.3f}  {ratio:>8}  {test:>6}  "
                     f"{within:>6}")
    return "\n".join(lines)


def summarize_checks(table):
    """Lines that say what the regression checks tested and how many cells pass, per
    algorithm and test."""
    lines = []
    for test, what in (("spread", "our mean within the published runs' mean ± 2 std (or 5% of "
                                  "the expert-random range); ours/pub is the ratio of "
                                  "normalized scores"),
                       ("range", "the single published run inside the range of our runs' "
                                 "means; ours/pub is the ratio of mean returns"),
                       ("ratio", "one published run and one of ours: no test, only ours/pub, "
                                 "the ratio of mean returns")):
        t = table[table["test"] == test]
        if t.empty:
            continue
        lines.append(f"test '{test}': {what}")
        for alg in list(dict.fromkeys(t["alg"])):
            a = t[t["alg"] == alg]
            ratios = (f"ours / published {a['ratio_to_pub'].min():.2f}-"
                      f"{a['ratio_to_pub'].max():.2f}")
            if test == "ratio":
                lines.append(f"  {ALG_LABELS.get(alg, alg)}: {len(a)} cells; {ratios}")
                continue
            extra = f"; {ratios}" if test == "range" else ""
            lines.append(f"  {ALG_LABELS.get(alg, alg)}: {int(a['within'].sum())} of {len(a)} "
                         f"cells{extra}")
    return lines


def qualitative_findings(table):
    """The paper's qualitative result, checked per task at the smallest dataset size: GAIL far
    above behavioural cloning, FEM and GTAL below GAIL (normalized scores)."""
    lines = []
    for task in dict.fromkeys(table["task"]):
        t = table[table["task"] == task]
        n = t["num_trajs"].min()
        norm = {r.alg: r.ours_norm for r in t[t["num_trajs"] == n].itertuples()}
        if "ga" not in norm:
            continue
        parts = []
        if "bclone" in norm:
            gap = norm["ga"] - norm["bclone"]
            parts.append(f"GAIL {norm['ga']:.2f} vs behavioural cloning {norm['bclone']:.2f} "
                         f"({'GAIL above' if gap > 0.1 else 'NOT clearly above'})")
        for alg in ("fem", "simplex"):
            if alg in norm:
                parts.append(f"{ALG_LABELS[alg]} {norm[alg]:.2f} "
                             f"({'below GAIL' if norm[alg] < norm['ga'] else 'NOT below GAIL'})")
        if parts:
            size = f"{n} trajector{'y' if n == 1 else 'ies'}"
            lines.append(f"  {task}, {size} (normalized): " + "; ".join(parts))
        lines += _gaps_by_size(task, t)
    return lines


def _gaps_by_size(task, t):
    """The paper's other two lines, per task over every size both sides have: behavioural
    cloning closing on GAIL as the datasets grow (GAIL's lead at the largest size under half
    its lead at the smallest, or under 0.1), and FEM/GTAL at or below GAIL at every size."""
    by = {(r.alg, r.num_trajs): r.ours_norm for r in t.itertuples()}
    sizes = sorted(set(t["num_trajs"]))
    lines = []
    both = [n for n in sizes if ("ga", n) in by and ("bclone", n) in by]
    if len(both) >= 2:
        gaps = {n: by["ga", n] - by["bclone", n] for n in both}
        first, last = gaps[both[0]], gaps[both[-1]]
        closes = last < 0.1 or last < first / 2
        lines.append(f"  {task}, GAIL's lead over behavioural cloning by size: "
                     + ", ".join(f"{n}: {g:+.2f}" for n, g in gaps.items())
                     + (" (behavioural cloning closes on GAIL)" if closes
                        else " (behavioural cloning does NOT close on GAIL)"))
    for alg in ("fem", "simplex"):
        common = [n for n in sizes if ("ga", n) in by and (alg, n) in by]
        if len(common) >= 2:   # one size is the smallest-size line's
            above = [n for n in common if by[alg, n] > by["ga", n]]
            lines.append(f"  {task}, {ALG_LABELS[alg]} against GAIL at {len(common)} sizes: "
                         + ("at or below GAIL at every size" if not above
                            else f"NOT below GAIL at {above}"))
    return lines


ENTREG_ALGS = {"ga_entreg0": "0", "ga_entreg-3": "0.001", "ga_entreg-2": "0.01",
               "ga_entreg-1": "0.1"}


def entropy_study(table):
    """The Reacher entropy-regularization study: per task and dataset size, the mean return of
    GAIL under each policy entropy weight, ours beside the published mean, and which weight
    does best on each side."""
    lines = []
    t = table[table["alg"].isin(list(ENTREG_ALGS))]
    for (task, n), g in t.groupby(["task", "num_trajs"], sort=True):
        by = {r.alg: r for r in g.itertuples()}
        algs = [a for a in ENTREG_ALGS if a in by]
        parts = [f"{ENTREG_ALGS[a]}: {by[a].ours_mean:.1f} ("
                 f"{'-' if np.isnan(by[a].pub_mean) else format(by[a].pub_mean, '.1f')})"
                 for a in algs]
        best = max(algs, key=lambda a: by[a].ours_mean)
        line = (f"  {task}, {n} trajectories, ours (published): " + ", ".join(parts)
                + f"; best: {ENTREG_ALGS[best]}")
        pub = [a for a in algs if not np.isnan(by[a].pub_mean)]
        if pub:
            line += f" (published: {ENTREG_ALGS[max(pub, key=lambda a: by[a].pub_mean)]})"
        lines.append(line)
    return lines


def plot_figure(table, out_png, title=None):
    """The paper's Figure 1 layout: normalized performance vs number of expert trajectories,
    one panel per task, one colour per algorithm; solid = this project, dashed = published."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(4 * len(tasks), 7), 4.2),
                             squeeze=False)
    colors = {"bclone": "tab:orange", "fem": "tab:green", "simplex": "tab:purple",
              "ga": "tab:blue", "ga_entreg0": "tab:blue", "ga_entreg-1": "tab:red",
              "ga_entreg-2": "tab:brown", "ga_entreg-3": "tab:cyan"}
    for ax, task in zip(axes[0], tasks):
        t = table[table["task"] == task]
        for alg in ALG_ORDER:
            a = t[t["alg"] == alg].sort_values("num_trajs")
            if a.empty:
                continue
            c = colors.get(alg)
            ax.plot(a["num_trajs"], a["ours_norm"], "-o", color=c, label=ALG_LABELS[alg])
            if a["ours_ci_low"].notna().any():   # our runs' 95% CI of the mean, normalized
                scale = a["ours_expert"] - a["random"]
                ax.fill_between(a["num_trajs"], (a["ours_ci_low"] - a["random"]) / scale,
                                (a["ours_ci_high"] - a["random"]) / scale, color=c, alpha=0.15,
                                lw=0)
            if a["pub_norm"].notna().any():
                ax.plot(a["num_trajs"], a["pub_norm"], "--x", color=c, alpha=0.6)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.0, color="gray", lw=0.8, ls=":")
        _clip_far_below_random(ax, t, colors)
        ax.set_title(task)
        ax.set_xlabel("number of expert trajectories")
        ax.set_xticks(sorted(t["num_trajs"].unique()))
    axes[0][0].set_ylabel("performance (expert = 1, random = 0)")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    handles += [plt.Line2D([], [], color="k", marker="o"),
                plt.Line2D([], [], color="k", ls="--", marker="x", alpha=0.6)]
    labels += ["this project", "published (Ho & Ermon 2016)"]
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.2, 1, 0.93 if title else 1))
    # "tight" grows the canvas to the legend, which is wider than a single panel (Reacher)
    fig.savefig(out_png, dpi=120, bbox_inches="tight")
    plt.close(fig)


FLOOR = -1.0
"""Lowest normalized score drawn to scale: one expert-random range below random."""


def _clip_far_below_random(ax, t, colors):
    """Keep the panel readable when a cell lies far below random (Reacher with entropy weight
    0.1 reaches -21): the axis stops just under FLOOR and each point below it is written at the
    bottom edge, in its algorithm's colour ('pub' for the published one), so the other
    algorithms are not squashed into a line near 1."""
    below = [(r.num_trajs, r.alg, col, getattr(r, col)) for r in t.itertuples()
             for col in ("ours_norm", "pub_norm") if getattr(r, col) < FLOOR]
    if not below:
        return
    top = max(1.1, np.nanmax(t[["ours_norm", "pub_norm"]].to_numpy()) + 0.05)
    bottom = FLOOR - 0.15
    ax.set_ylim(bottom, top)
    stacked = {}
    for n, alg, col, v in below:
        k = stacked[n] = stacked.get(n, -1) + 1
        text = f"{v:.1f}" + (" pub" if col == "pub_norm" else "")
        ax.annotate(text, (n, bottom), xytext=(0, 2 + 9 * k), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, color=colors.get(alg))
