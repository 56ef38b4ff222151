"""The published GAIL results (Ho & Ermon 2016) and the comparison with the project's own.

`../shared/published/gail_published_results.csv` has one row per task x algorithm x dataset size
x run: the mean/std of that run's evaluation returns and the expert's. Scores are normalized as in
the paper's Figure 1: (return - random) / (expert - random), with the random policy's return
measured by the project (the published tables do not record it).
"""
import os

import numpy as np

ALG_LABELS = {"bclone": "Behavioral cloning", "ga": "GAIL", "fem": "FEM",
              "simplex": "GTAL"}
ALG_ORDER = ("bclone", "fem", "simplex", "ga")


def default_published_csv():
    """../shared/published/gail_published_results.csv next to the repository, if present."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.normpath(os.path.join(here, "..", "shared", "published",
                                         "gail_published_results.csv"))


def load_published(path=None):
    """The published per-run summary as a pandas DataFrame."""
    import pandas as pd

    path = path or default_published_csv()
    if not os.path.exists(path):
        from imitation.cli import UserError

        raise UserError(f"published results {path} not found (pass --published PATH)")
    df = pd.read_csv(path)
    need = {"task", "alg", "num_trajs", "run", "alg_return_mean", "expert_return_mean"}
    missing = need - set(df.columns)
    if missing:
        from imitation.cli import UserError

        raise UserError(f"{path} lacks columns {', '.join(sorted(missing))}")
    return df


def summarize_ours(results):
    """Per task x alg x num_trajs: mean over runs of each run's mean return, the std across
    runs, the number of runs, and the mean expert return. `results` is the 2_eval table."""
    import pandas as pd

    rows = []
    for (task, alg, n), g in results.groupby(["task", "alg", "num_trajs"]):
        run_means = np.array([np.mean(r) for r in g["alg_traj_returns"]])
        ex = np.concatenate([np.asarray(r, dtype=float) for r in g["ex_traj_returns"]])
        rows.append(dict(task=task, alg=alg, num_trajs=int(n), ours_mean=run_means.mean(),
                         ours_std=run_means.std(), ours_runs=len(run_means),
                         ours_expert=ex.mean()))
    return pd.DataFrame(rows)


def summarize_published(pub):
    import pandas as pd

    rows = []
    for (task, alg, n), g in pub.groupby(["task", "alg", "num_trajs"]):
        m = g["alg_return_mean"].to_numpy(float)
        rows.append(dict(task=task, alg=alg, num_trajs=int(n), pub_mean=m.mean(),
                         pub_std=m.std(), pub_runs=len(m),
                         pub_expert=float(g["expert_return_mean"].mean())))
    return pd.DataFrame(rows)


def compare(results, pub, random_returns):
    """Join the project's and the published summaries; add normalized scores and, per row, the
    regression check: within mean +/- 2 std of the published runs or within 5% of the
    expert-random range, whichever is wider."""
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
    table["within"] = (table["ours_mean"] - table["pub_mean"]).abs() <= tol
    table["ratio_to_pub"] = table["ours_mean"] / table["pub_mean"]
    order = {a: i for i, a in enumerate(ALG_ORDER)}
    table["_o"] = table["alg"].map(lambda a: order.get(a, 99))
    return table.sort_values(["task", "_o", "num_trajs"]).drop(columns="_o").reset_index(
        drop=True)


def format_table(table):
    """A plain-text table of the comparison."""
    head = (f"{'task':<12}{'alg':<9}{'n':>4}  {'ours':>17}  {'published':>17}  "
            f"{'norm ours':>9}  {'norm pub':>8}  {'ours/pub':>8}  {'within':>6}")
    lines = [head, "-" * len(head)]
    for r in table.itertuples():
        if np.isnan(r.pub_mean):          # no published run for this cell
            pub, ratio, within = "-", "-", "-"
        else:
            pub = f"{r.pub_mean:9.1f} ± {r.pub_std:6.1f}"
            ratio, within = f"{r.ratio_to_pub:.3f}", "yes" if r.within else "NO"
        lines.append(f"{r.task:<12}{r.alg:<9}{r.num_trajs:>4}  "
                     f"{r.ours_mean:9.1f} ± {r.ours_std:6.1f}  {pub:>17}  "
                     f"{r.ours_norm:9.3f}  {r.pub_norm:8.3f}  {ratio:>8}  {within:>6}")
    return "\n".join(lines)


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
              "ga": "tab:blue"}
    for ax, task in zip(axes[0], tasks):
        t = table[table["task"] == task]
        for alg in ALG_ORDER:
            a = t[t["alg"] == alg].sort_values("num_trajs")
            if a.empty:
                continue
            c = colors.get(alg)
            ax.plot(a["num_trajs"], a["ours_norm"], "-o", color=c, label=ALG_LABELS[alg])
            if a["pub_norm"].notna().any():
                ax.plot(a["num_trajs"], a["pub_norm"], "--x", color=c, alpha=0.6)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.0, color="gray", lw=0.8, ls=":")
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
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
