#!/usr/bin/env python
"""The paper's experimental protocol, phase by phase (design.md section 7).

    python scripts/im_pipeline.py classic 0_sampletrajs     # expert datasets
    python scripts/im_pipeline.py classic 1_train           # every task x alg x size x run
    python scripts/im_pipeline.py classic 2_eval            # 50 episodes per policy, acting
                                                            # deterministically (and again
                                                            # stochastically)
    python scripts/im_pipeline.py classic 3_report          # beside the published results
    python scripts/im_pipeline.py classic all               # all four in order
    python scripts/im_pipeline.py mujoco queue              # the spec's queue of cells, in
                                                            # order: each trained, evaluated
                                                            # and reported as it finishes

SPEC is a YAML file or the name of one in imitation/pipelines (classic, mujoco, smoke).
--experts original (default): the original authors' experts, from $POLICYOPT_EXPERTS_DIR,
../shared/expert_policies beside the repository, or where `scripts/fetch_experts.py` put them
(~/.cache/policyopt/expert_policies); own: the project's own experts (expert_trajs/policies,
nothing to fetch); or a directory. The published results the report compares with ship with the
package (imitation/reference/). Jobs run on a dask LocalCluster (one worker per core),
an existing scheduler (--scheduler tcp://HOST:PORT), or PBS/SLURM (--cluster pbs|slurm, needs
dask-jobqueue). Finished jobs are skipped, so an interrupted phase can be re-run.
"""
import argparse
import os

from imitation import cli

PHASES = ("0_sampletrajs", "1_train", "2_eval", "3_report", "all", "queue")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="pipeline spec: a YAML file, or classic / mujoco / smoke")
    p.add_argument("phase", choices=PHASES)
    p.add_argument("--experts", default="original",
                   help="original | own | DIR: where the expert policies named by the spec are")
    p.add_argument("--out", default=None,
                   help="output directory (default: runs/<suite>_<experts>)")
    p.add_argument("--published", default=None,
                   help="published results CSV (default: the table shipped in "
                        "imitation/reference/)")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the spec's tasks")
    p.add_argument("--algs", default=None, help="comma-separated subset of the algorithms")
    p.add_argument("--runs", type=cli.positive_int, default=None,
                   help="runs per setting for every algorithm (default: the spec's runs and "
                        "runs_by_alg)")
    p.add_argument("--run_ids", default=None,
                   help="comma-separated run indices (each run's --seed), e.g. 1,2: only these "
                        "runs, for every algorithm")
    p.add_argument("--data_seed", type=cli.nonneg_int, default=0,
                   help="0_sampletrajs: seed of the expert's rollouts (default 0; another "
                        "seed is another dataset draw: use its own --out)")
    p.add_argument("--num_trajs", default=None,
                   help="comma-separated subset of the spec's dataset sizes")
    p.add_argument("--full_length_only", action="store_true",
                   help="0_sampletrajs keeps only expert trajectories that reach the time limit "
                        "(the spec's datasets.full_length_only): the original MuJoCo experts "
                        "fall in some episodes on the v5 environments; use its own --out")
    p.add_argument("--partial", action="store_true",
                   help="2_eval: evaluate the finished runs and leave out the unfinished ones "
                        "(default: stop when any run is unfinished)")
    g = p.add_argument_group("execution (dask.distributed)")
    g.add_argument("--scheduler", default=None, help="address of a running dask scheduler")
    g.add_argument("--n_workers", type=cli.positive_int, default=None,
                   help="LocalCluster workers (default: one per core)")
    g.add_argument("--cluster", choices=["pbs", "slurm"], default=None,
                   help="submit workers as PBS or SLURM jobs (dask-jobqueue)")
    g.add_argument("--cluster_jobs", type=cli.positive_int, default=1,
                   help="batch jobs to start with --cluster")
    g.add_argument("--cluster_queue", default=None)
    g.add_argument("--cluster_walltime", default=None, help="e.g. 24:00:00")
    g.add_argument("--cluster_memory", default=None, help="e.g. 4GB")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from imitation.pipeline import Pipeline, load_spec

    spec = load_spec(args.spec)
    if args.runs:
        spec.runs, spec.runs_by_alg = args.runs, {}
    if args.run_ids:
        try:
            spec.run_ids = sorted({int(r) for r in args.run_ids.split(",")})
        except ValueError:
            raise cli.UserError(f"--run_ids {args.run_ids!r}: expected integers like 1,2")
        if min(spec.run_ids) < 0:
            raise cli.UserError("--run_ids must be >= 0")
    spec.data_seed = args.data_seed
    if args.num_trajs:
        try:
            sizes = [int(n) for n in args.num_trajs.split(",")]
        except ValueError:
            raise cli.UserError(f"--num_trajs {args.num_trajs!r}: expected integers like 4,11")
        bad = [n for n in sizes if n not in spec.num_trajs]
        if bad:
            raise cli.UserError(f"--num_trajs: {bad} not among the spec's sizes {spec.num_trajs}")
        spec.num_trajs = sizes
    if args.full_length_only:
        spec.full_length_only = True
    experts_tag = args.experts if args.experts in ("original", "own") else "custom"
    out = os.path.abspath(args.out or os.path.join("runs", f"{spec.suite}_{experts_tag}"))
    client_kwargs = dict(scheduler=args.scheduler, cluster=args.cluster,
                         n_workers=args.n_workers, cluster_jobs=args.cluster_jobs,
                         cluster_kwargs=dict(queue=args.cluster_queue,
                                             walltime=args.cluster_walltime,
                                             memory=args.cluster_memory))
    pipe = Pipeline(spec, out, experts=args.experts, published=args.published,
                    client_kwargs=client_kwargs,
                    tasks=args.tasks.split(",") if args.tasks else None,
                    algs=args.algs.split(",") if args.algs else None)
    phases = {"all": PHASES[:4], "queue": ("1_train", "2_eval", "3_report")}.get(
        args.phase, (args.phase,))
    pipe.check_inputs(phases)
    if args.phase == "queue":
        phases = ("queue",)
    try:
        for phase in phases:
            print(f"=== {phase} ({spec.suite}, experts: {args.experts}) -> {out}", flush=True)
            {"0_sampletrajs": pipe.sample_trajs, "1_train": pipe.train,
             "2_eval": lambda: pipe.evaluate(partial=args.partial),
             "3_report": pipe.report, "queue": pipe.run_queue}[phase]()
    finally:
        pipe.close()


if __name__ == "__main__":
    cli.run_main(main)
