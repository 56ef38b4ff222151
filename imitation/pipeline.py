"""The paper's experimental protocol (design.md section 7) as phases over a YAML spec.

  0_sampletrajs  sample each task's full expert dataset from the expert policy the spec names
  1_train        every task x algorithm x dataset size x run: one `imitate_mj.py` run each
  2_eval         evaluate every trained policy (and a random policy per task); results table
  3_report       the results beside the published ones, normalized scores, and a figure

Training and evaluation jobs are independent processes executed through dask.distributed: a
LocalCluster (one worker per core) by default, an existing scheduler (`--scheduler`), or
PBS/SLURM through dask-jobqueue. A job whose log is already finished is skipped, so an
interrupted phase can simply be run again.
"""
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from imitation.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC_DIR = os.path.join(REPO_ROOT, "imitation", "pipelines")
OWN_EXPERTS_DIR = os.path.join(REPO_ROOT, "expert_trajs", "policies")
PHASES = ("0_sampletrajs", "1_train", "2_eval", "3_report")
# 2_eval's table: the published tables' columns, then the evaluated snapshot and the stochastic
# evaluation the published protocol did not make.
RESULT_COLUMNS = ["task", "alg", "num_trajs", "run", "alg_traj_returns", "alg_traj_lengths",
                  "ex_traj_returns", "ex_traj_lengths", "snapshot",
                  "alg_traj_returns_stochastic", "alg_traj_lengths_stochastic"]
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------ spec

@dataclass
class Task:
    name: str
    env: str                      # environment for the original expert (may be a legacy id)
    expert: str                   # original expert, relative to the experts directory
    own_expert: str = None        # the project's own expert, relative to expert_trajs/policies
    own_env: str = None           # environment for the project's own expert (default: env)
    data_subsamp_freq: int = 20
    favor_zero_expert_reward: int = 0


@dataclass
class Spec:
    suite: str
    tasks: list
    full_num_trajs: int
    num_trajs: list
    runs: int
    algorithms: dict              # name -> list of imitate_mj.py arguments
    eval_num_trajs: int = 50
    deterministic_expert: bool = False
    full_length_only: bool = False  # expert datasets: drop trajectories that end early
    job_num_workers: int = 1      # sampling processes inside each training job
    path: str = ""
    extra: dict = field(default_factory=dict)
    runs_by_alg: dict = field(default_factory=dict)  # algorithm -> runs, overriding `runs`
    run_ids: list = None          # explicit run indices (seeds) for every algorithm, if set
    data_seed: int = 0            # 0_sampletrajs: the seed of the expert's rollouts
    queue: list = field(default_factory=list)   # the `queue` phase's cells, in order

    def runs_of(self, alg):
        """Runs per task x dataset size for one algorithm."""
        return len(self.run_ids) if self.run_ids is not None else \
            self.runs_by_alg.get(alg, self.runs)

    def run_ids_of(self, alg):
        """The run indices (each run's --seed) of one algorithm: `run_ids` when set, else
        0 .. runs_of(alg) - 1."""
        return list(self.run_ids) if self.run_ids is not None else list(range(self.runs_of(alg)))


def resolve_spec_path(spec):
    """A spec file path, or the name of one in imitation/pipelines (e.g. 'classic')."""
    if os.path.exists(spec):
        return spec
    cand = os.path.join(SPEC_DIR, spec if spec.endswith(".yaml") else spec + ".yaml")
    if os.path.exists(cand):
        return cand
    avail = sorted(f[:-5] for f in os.listdir(SPEC_DIR) if f.endswith(".yaml"))
    raise UserError(f"no pipeline spec {spec!r} (a file, or one of: {', '.join(avail)})")


def load_spec(spec):
    path = resolve_spec_path(spec)
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {str(e).splitlines()[0]}")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    try:
        tasks = []
        for name, t in raw["tasks"].items():
            unknown = set(t) - set(Task.__dataclass_fields__)
            if unknown:
                raise UserError(f"{path}: task {name}: unknown keys {sorted(unknown)}")
            tasks.append(Task(name=name, **t))
        ds, tr = raw["datasets"], raw["training"]
        algs = {name: str(a).split() for name, a in tr["algorithms"].items()}
        spec = Spec(suite=raw["suite"], tasks=tasks, full_num_trajs=int(ds["full_num_trajs"]),
                    num_trajs=[int(n) for n in ds["num_trajs"]], runs=int(tr["runs"]),
                    algorithms=algs,
                    eval_num_trajs=int(raw.get("evaluation", {}).get("num_trajs", 50)),
                    deterministic_expert=bool(ds.get("deterministic_expert", False)),
                    full_length_only=bool(ds.get("full_length_only", False)),
                    job_num_workers=int(tr.get("job_num_workers", 1)), path=path,
                    runs_by_alg={a: int(r) for a, r in (tr.get("runs_by_alg") or {}).items()},
                    queue=[_queue_entry(path, i, e, tasks, algs)
                           for i, e in enumerate(raw.get("queue") or [])])
        unknown = set(spec.runs_by_alg) - set(algs)
        if unknown:
            raise UserError(f"{path}: runs_by_alg names unknown algorithms {sorted(unknown)}")
    except KeyError as e:
        raise UserError(f"{path}: missing key {e}")
    except (TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{path}: malformed spec ({e})")
    if max(spec.num_trajs) > spec.full_num_trajs:
        raise UserError(f"{path}: dataset sizes exceed full_num_trajs {spec.full_num_trajs}")
    return spec


def _queue_entry(path, i, entry, tasks, algs):
    """One cell group of a spec's `queue`: {tasks, algs, num_trajs, runs | run_ids}, checked
    against the spec's tasks and algorithms."""
    where = f"{path}: queue entry {i + 1}"
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a mapping")
    unknown = set(entry) - {"tasks", "algs", "num_trajs", "runs", "run_ids"}
    if unknown:
        raise UserError(f"{where}: unknown keys {sorted(unknown)}")
    out = dict(tasks=list(entry.get("tasks") or [t.name for t in tasks]),
               algs=list(entry.get("algs") or list(algs)),
               num_trajs=[int(n) for n in entry.get("num_trajs") or []] or None,
               run_ids=None)
    if "run_ids" in entry:
        out["run_ids"] = [int(r) for r in entry["run_ids"]]
    elif "runs" in entry:
        out["run_ids"] = list(range(int(entry["runs"])))
    bad = [t for t in out["tasks"] if t not in {t.name for t in tasks}]
    bad += [a for a in out["algs"] if a not in algs]
    if bad:
        raise UserError(f"{where}: unknown tasks or algorithms {bad}")
    return out


# ------------------------------------------------------------------------------ executors

def make_client(scheduler=None, cluster=None, n_workers=None, cluster_jobs=1,
                cluster_kwargs=None):
    """A dask.distributed Client: an existing scheduler, a PBS/SLURM cluster
    (dask-jobqueue), or a LocalCluster with one single-threaded worker per core."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s")
    if cluster in ("pbs", "slurm"):
        try:
            import dask_jobqueue
        except ImportError:
            raise UserError("--cluster needs dask-jobqueue: pip install dask-jobqueue")
        cls = dask_jobqueue.PBSCluster if cluster == "pbs" else dask_jobqueue.SLURMCluster
        kw = dict(cores=1, processes=1, memory="4GB", walltime="24:00:00")
        kw.update({k: v for k, v in (cluster_kwargs or {}).items() if v is not None})
        c = cls(**kw)
        c.scale(jobs=cluster_jobs)
        return Client(c)
    from imitation.sampler import default_num_workers

    # The scheduler's HTTP server starts whatever dashboard_address says (None means
    # ":8787", and a warning when another cluster holds that port): any free port, quietly.
    lc = LocalCluster(n_workers=n_workers or default_num_workers(), threads_per_worker=1,
                      processes=True, dashboard_address=":0")
    return Client(lc)


def run_jobs(fn, jobs, client, desc):
    """Run fn(job) for every job on the dask client, with a progress bar; results in order."""
    from dask.distributed import as_completed
    from tqdm import tqdm

    if not jobs:
        return []
    futures = client.map(fn, jobs, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(jobs)
    with tqdm(total=len(jobs), desc=desc, unit="job", file=sys.stderr) as bar:
        for fut in as_completed(futures):
            results[index[fut.key]] = fut.result()
            bar.update(1)
    return results


# ----------------------------------------------------------------------------------- jobs

def log_is_finished(path):
    """True when a training log exists and its run ran to the end."""
    if not os.path.exists(path):
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("finished", 0))
    except OSError:
        return False


def run_train_job(job):
    """One imitate_mj.py run (in a subprocess); its output goes to <log>.out. A log left by an
    interrupted run is continued with --resume (or restarted when it cannot be)."""
    log = job["log"]
    if log_is_finished(log):
        return dict(name=job["name"], status="skipped", seconds=0.)
    cmd = [sys.executable, os.path.join(REPO_ROOT, "scripts", "imitate_mj.py")] + job["args"]
    t0 = time.time()

    # One BLAS thread per job: jobs already fill the cores, and OpenBLAS threads spinning
    # against another job's slow both down several times. The job runs this checkout's package
    # (a worktree's, not whichever one pip installed).
    env = dict(os.environ, **SINGLE_THREAD_ENV,
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT,
                                                        os.environ.get("PYTHONPATH")])))

    def run(extra, mode):
        with open(log + ".out", mode) as out:
            return subprocess.call(cmd + extra, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT, env=env)

    rc = None
    if os.path.exists(log):
        rc = run(["--resume"], "a")
        if rc != 0 and not log_is_finished(log):
            os.unlink(log)  # not resumable: start again
            rc = None
    if rc is None:
        rc = run([], "w")
    status = "ok" if rc == 0 and log_is_finished(log) else f"failed (exit {rc})"
    return dict(name=job["name"], status=status, seconds=time.time() - t0)


def select_snapshot(log):
    """(snapshot key, run args): the snapshot the original protocol evaluates. Behavioural
    cloning: the evaluation with the highest `valacc` (the lowest `valloss` where no accuracy
    was logged); every other algorithm: the last snapshot."""
    import h5py

    from imitation.training import read_log

    run = read_log(log)
    args, rows = run.args, run.rows
    if args.get("mode") == "bclone":
        acc = rows["valacc"]
        if np.all(np.isnan(acc)):
            best = int(np.nanargmin(rows["valloss"]))
        else:
            best = int(np.nanargmax(acc))
        return f"snapshots/iter{rows['iter'][best]:07d}", args
    with h5py.File(log, "r") as f:
        last = sorted(f["snapshots"].keys())[-1]
    return "snapshots/" + last, args


# Bumped when what an evaluation measures changes, so that older cached evaluations are redone.
EVAL_PROTOCOL = "deterministic+stochastic-1"


def env_identity(env_name, obs_adapter=None, env_kwargs=None):
    """What the environment an evaluation runs in resolves to today: Gymnasium id, make
    kwargs (time limit included) and adapter. A change in the mapping of an original id (such
    as Acrobot-v0's 200-step limit) then redoes the evaluations that ran under the old one."""
    from imitation.envs import resolve_env

    spec = resolve_env(env_name, obs_adapter, env_kwargs=env_kwargs)
    return dict(gym_id=spec.gym_id, make_kwargs=spec.make_kwargs,
                adapter=spec.adapter.name if spec.adapter else None)


def eval_identity(job):
    """What an evaluation depends on: the log file (its size and modification time), the
    environment it resolves to, the number of episodes, the seed and the protocol version."""
    if job.get("random"):
        return dict(protocol=EVAL_PROTOCOL, env=job["env"], num_trajs=job["num_trajs"],
                    seed=job["seed"], resolved=env_identity(job["env"], job.get("obs_adapter")))
    import h5py

    from imitation.snapshots import read_args

    st = os.stat(job["log"])
    with h5py.File(job["log"], "r") as f:
        args = read_args(f)
    return dict(protocol=EVAL_PROTOCOL, log=os.path.abspath(job["log"]), size=st.st_size,
                mtime_ns=st.st_mtime_ns, num_trajs=job["num_trajs"], seed=job["seed"],
                resolved=env_identity(args["env_name"], args.get("obs_adapter"),
                                      args.get("env_kwargs")))


def cached_eval(job):
    """The stored result of this evaluation job, or None when it has to be (re)done."""
    try:
        with open(job["cache"]) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved if saved.get("identity") == eval_identity(job) else None


def run_eval_job(job):
    """Evaluate one policy as the original did: `num_trajs` episodes acting deterministically
    (the mean action; argmax for discrete actions), then as many acting stochastically, an
    extra column. A trained policy's evaluated snapshot is also exported to job['policy_out'].
    With job['random'], a uniformly random policy instead. The result is stored as JSON in
    job['cache'] (so a re-run skips it) and returned."""
    from policyopt.util import atomic_write

    if job.get("random"):
        from imitation.envs import sample_random_returns

        rets, lens = sample_random_returns(job["env"], job.get("obs_adapter"), job["num_trajs"],
                                           job["seed"])
        res = dict(alg_traj_returns=rets.tolist(), alg_traj_lengths=lens.tolist())
    else:
        from imitation.envs import GymMDP
        from imitation.snapshots import export_policy, load_policy
        from policyopt import SimConfig

        key, args = select_snapshot(job["log"])
        policy, _, _ = load_policy(f"{job['log']}/{key}")
        # in-process sampling: dask worker processes are daemons and cannot fork
        mdp = GymMDP(args["env_name"], obs_adapter=args.get("obs_adapter"), num_workers=0,
                     env_kwargs=args.get("env_kwargs"))
        cfg = SimConfig(min_num_trajs=job["num_trajs"])
        try:
            det = mdp.sim_mp(policy, None, cfg, np.random.default_rng(job["seed"]),
                             deterministic=True)
            sto = mdp.sim_mp(policy, None, cfg, np.random.default_rng(job["seed"] + 1),
                             deterministic=False)
        finally:
            mdp.close()
        os.makedirs(os.path.dirname(job["policy_out"]), exist_ok=True)
        export_policy(f"{job['log']}/{key}", job["policy_out"],
                      extra_attrs=dict(evaluated_as=EVAL_PROTOCOL))
        res = dict(snapshot=key, alg_traj_returns=det.returns.tolist(),
                   alg_traj_lengths=det.obs.lengths.tolist(),
                   alg_traj_returns_stochastic=sto.returns.tolist(),
                   alg_traj_lengths_stochastic=sto.obs.lengths.tolist())
    res["identity"] = eval_identity(job)
    os.makedirs(os.path.dirname(job["cache"]), exist_ok=True)
    with atomic_write(job["cache"]) as tmp:
        with open(tmp, "w") as f:
            json.dump(res, f)
    return res


# ------------------------------------------------------------------------------- pipeline

class Pipeline:
    """Runs the phases of a spec, writing under `out_dir`:
    data/<task>.h5, logs/<task>/<alg>_n<N>_run<R>.h5, results.h5, report.txt, figure.png."""

    def __init__(self, spec, out_dir, experts="original", published=None, client_kwargs=None,
                 tasks=None, algs=None):
        self.spec, self.out_dir, self.published = spec, out_dir, published
        self.client_kwargs = client_kwargs or {}
        self._client = None
        self._datasets = {}
        self.tasks = [t for t in spec.tasks if not tasks or t.name in tasks]
        if tasks and len(self.tasks) != len(set(tasks)):
            raise UserError(f"--tasks: unknown task in {tasks} (spec has "
                            f"{', '.join(t.name for t in spec.tasks)})")
        self.algs = {a: v for a, v in spec.algorithms.items() if not algs or a in algs}
        if algs and len(self.algs) != len(set(algs)):
            raise UserError(f"--algs: unknown algorithm in {algs} (spec has "
                            f"{', '.join(spec.algorithms)})")
        self.experts = experts
        if experts == "original":
            # resolved when a phase needs them (0_sampletrajs, 2_eval's random policies'
            # environments do not): a clone without them can still train on sampled datasets
            self.experts_dir, self.own = None, False
        elif experts == "own":
            self.experts_dir, self.own = OWN_EXPERTS_DIR, True
        else:
            self.experts_dir, self.own = os.path.abspath(experts), None
            if not os.path.isdir(self.experts_dir):
                raise UserError(f"experts directory {experts} does not exist (--experts "
                                "original, own, or a directory)")
        # Absolute: the jobs run with the repository as their working directory.
        self.out_dir = out_dir = os.path.abspath(out_dir)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise UserError(f"--out {out_dir} exists and is not a directory")
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise UserError(f"--out {out_dir}: cannot create the directory ({e.strerror})")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise UserError(f"--out {out_dir}: the directory is not writable")
        from imitation import locks

        # one pipeline per output directory: two would train the same jobs into the same logs
        locks.lock_output(out_dir, "--out")
        locks.remove_stale_temporaries(os.path.join(out_dir, "results.h5"))

    # paths
    def data_path(self, task):
        return os.path.join(self.out_dir, "data", f"{task.name}.h5")

    def log_path(self, task, alg, n, run):
        return os.path.join(self.out_dir, "logs", task.name, f"{alg}_n{n}_run{run}.h5")

    @property
    def results_path(self):
        return os.path.join(self.out_dir, "results.h5")

    def original_experts_dir(self):
        """The directory of the original experts (`imitation.original_experts`), or a
        UserError that says how to get them."""
        if self.experts_dir is None:
            from imitation.original_experts import require_experts_dir

            self.experts_dir = os.path.abspath(require_experts_dir())
        return self.experts_dir

    def _uses_own_expert(self, task):
        from imitation.snapshots import parse_policy_string

        if self.own is None:  # a directory: the task's own expert when it holds that file
            return bool(task.own_expert) and os.path.exists(parse_policy_string(
                os.path.join(self.experts_dir, task.own_expert))[0])
        return self.own

    def env_of(self, task):
        """The environment the task's expert (and so its dataset) runs in."""
        return (task.own_env or task.env) if self._uses_own_expert(task) else task.env

    def expert_of(self, task):
        """(policy string, env name) for the task under the chosen experts."""
        if self._uses_own_expert(task):
            if not task.own_expert:
                raise UserError(f"task {task.name} names no own_expert")
            return os.path.join(self.experts_dir, task.own_expert), self.env_of(task)
        return os.path.join(self.original_experts_dir(), task.expert), task.env

    def check_inputs(self, phases, partial=False):
        """Before the first job of `phases` starts: every input they will read that no earlier
        phase in `phases` writes is there (the experts of datasets still to sample, datasets,
        the published table), so a run does not stop with a missing file hours in."""
        if "0_sampletrajs" in phases:
            for task in self.tasks:
                if os.path.exists(self.data_path(task)):
                    continue
                policy, _ = self.expert_of(task)
                from imitation.snapshots import parse_policy_string

                path = parse_policy_string(policy)[0]
                if not os.path.isfile(path):
                    hint = ""
                    if not self._uses_own_expert(task):
                        from imitation.original_experts import HOW_TO_GET
                        hint = f" ({HOW_TO_GET})"
                    raise UserError(f"task {task.name}: expert policy {path} not found{hint}")
        elif {"1_train", "2_eval"} & set(phases):
            for task in self.tasks:
                if not os.path.exists(self.data_path(task)):
                    raise UserError(f"{self.data_path(task)} is missing: run phase "
                                    "0_sampletrajs first")
        if "3_report" in phases:
            from imitation import published as pub

            pub.load_published(self.published)
            if "2_eval" not in phases and not os.path.exists(self.results_path):
                raise UserError(f"{self.results_path} is missing: run phase 2_eval first")

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(**self.client_kwargs)
        return self._client

    def close(self):
        if self._client is not None:
            cluster = self._client.cluster
            self._client.close()
            if cluster is not None:
                cluster.close()
            self._client = None

    # phases
    def sample_trajs(self):
        """Phase 0: each task's full dataset (skipped when it exists)."""
        from tqdm import tqdm

        from imitation.experts import sample_dataset
        os.makedirs(os.path.join(self.out_dir, "data"), exist_ok=True)
        for task in tqdm(self.tasks, desc="0_sampletrajs", unit="task", file=sys.stderr):
            out = self.data_path(task)
            if os.path.exists(out):
                self._check_dataset_setting(out)
                continue
            policy, env = self.expert_of(task)
            sample_dataset(policy, out, self.spec.full_num_trajs, env_name=env,
                               deterministic=self.spec.deterministic_expert,
                               seed=self.spec.data_seed,
                               data_subsamp_freq=task.data_subsamp_freq,
                               full_length_only=self.spec.full_length_only, verbose=False)

    def _check_dataset_setting(self, path):
        """An existing dataset is reused only when it was sampled with the same
        full_length_only setting (older files without the attribute count as off) and the
        same --data_seed (its `seed` attribute)."""
        import h5py

        with h5py.File(path, "r") as f:
            had = bool(f.attrs.get("full_length_only", 0))
            seed = int(f.attrs.get("seed", 0))
        if had != self.spec.full_length_only:
            raise UserError(f"{path} was sampled with full_length_only={had}, the spec now says "
                            f"{self.spec.full_length_only}: use another --out")
        if seed != self.spec.data_seed:
            raise UserError(f"{path} was sampled with seed {seed}, not --data_seed "
                            f"{self.spec.data_seed}: use another --out for another draw")

    def train_jobs(self):
        jobs = []
        for task in self.tasks:
            data = self.data_path(task)
            if not os.path.exists(data):
                raise UserError(f"{data} is missing: run phase 0_sampletrajs first")
            for alg, alg_args in self.algs.items():
                for n in self.spec.num_trajs:
                    for run in self.spec.run_ids_of(alg):
                        log = self.log_path(task, alg, n, run)
                        args = list(alg_args) + [
                            "--data", data, "--limit_trajs", str(n),
                            "--data_subsamp_freq", str(task.data_subsamp_freq),
                            "--favor_zero_expert_reward", str(task.favor_zero_expert_reward),
                            "--seed", str(run), "--log", log,
                            "--num_workers", str(self.spec.job_num_workers),
                            "--print_freq", "10"]
                        jobs.append(dict(name=f"{task.name}/{alg}_n{n}_run{run}", log=log,
                                         args=args))
        return jobs

    def train(self):
        """Phase 1: every training job (finished logs are skipped)."""
        jobs = self.train_jobs()
        for job in jobs:
            os.makedirs(os.path.dirname(job["log"]), exist_ok=True)
        todo = [j for j in jobs if not log_is_finished(j["log"])]
        print(f"1_train: {len(jobs)} jobs, {len(jobs) - len(todo)} already finished",
              file=sys.stderr)
        results = run_jobs(run_train_job, todo, self.client, "1_train")
        failed = [r for r in results if not r["status"].startswith(("ok", "skipped"))]
        for r in failed:
            print(f"  {r['name']}: {r['status']}; see its log's .out file", file=sys.stderr)
        if failed:
            raise UserError(f"{len(failed)} of {len(todo)} training jobs failed")
        return results

    def run_queue(self):
        """The `queue` phase: the spec's queue entries in order, each trained (finished runs
        skipped, interrupted ones resumed), then evaluated (`2_eval --partial` over the
        entry's cells) and reported, so every finished cell's artifacts are ready to commit
        as soon as it is done. Run it again to continue."""
        import dataclasses

        if not self.spec.queue:
            raise UserError(f"{self.spec.path} has no queue")
        full_spec, full_tasks, full_algs = self.spec, self.tasks, self.algs
        try:
            for i, entry in enumerate(full_spec.queue):
                self.spec = dataclasses.replace(
                    full_spec, num_trajs=entry["num_trajs"] or full_spec.num_trajs,
                    run_ids=entry["run_ids"] if entry["run_ids"] is not None
                    else full_spec.run_ids)
                self.tasks = [t for t in full_tasks if t.name in entry["tasks"]]
                self.algs = {a: v for a, v in full_algs.items() if a in entry["algs"]}
                if not self.tasks or not self.algs:
                    continue  # outside this invocation's --tasks/--algs
                what = (f"{','.join(t.name for t in self.tasks)} x {','.join(self.algs)} x "
                        f"{self.spec.num_trajs} trajectories, runs "
                        f"{self.spec.run_ids_of(next(iter(self.algs)))}")
                print(f"=== queue {i + 1}/{len(full_spec.queue)}: {what}", flush=True)
                self.train()
                self.evaluate(partial=True)
                self.report()
        finally:
            self.spec, self.tasks, self.algs = full_spec, full_tasks, full_algs

    def eval_cache_path(self, task, alg, n, run):
        return os.path.join(self.out_dir, "evals", task, f"{alg}_n{n}_run{run}.json")

    def policy_path(self, task, alg, n, run):
        """Where 2_eval exports the evaluated snapshot of a run (one small HDF5 file)."""
        return os.path.join(self.out_dir, "policies", f"{alg}_{task}_n{n}_run{run}.h5")

    def evaluate(self, partial=False):
        """Phase 2: every trained policy over `eval_num_trajs` episodes, deterministic (the
        published protocol) and stochastic (an extra column), plus a random policy per task.
        Evaluations whose log, settings and protocol are unchanged are not redone. With
        `partial`, runs not finished yet are left out instead of stopping the phase. Writes
        the results table (published columns first) to results.h5; results of cells outside
        this selection (other tasks, algorithms or sizes) already in results.h5 are kept, so
        evaluating one task does not drop the others from the report."""
        import pandas as pd

        jobs, missing = [], []
        for task in self.tasks:
            for alg in self.algs:
                for n in self.spec.num_trajs:
                    for run in self.spec.run_ids_of(alg):
                        log = self.log_path(task, alg, n, run)
                        if not log_is_finished(log):
                            missing.append(log)
                            continue
                        jobs.append(dict(task=task.name, alg=alg, num_trajs_data=n, run=run,
                                         log=log, num_trajs=self.spec.eval_num_trajs,
                                         seed=10_000 + run,
                                         cache=self.eval_cache_path(task.name, alg, n, run),
                                         policy_out=self.policy_path(task.name, alg, n, run)))
        if missing and not partial:
            raise UserError(f"{len(missing)} training logs are missing or unfinished (e.g. "
                            f"{missing[0]}): run phase 1_train first, or pass --partial to "
                            "evaluate the finished ones")
        if missing:
            print(f"2_eval: leaving out {len(missing)} unfinished runs", file=sys.stderr)
        for task in self.tasks:
            jobs.append(dict(task=task.name, random=True, env=self.env_of(task),
                             num_trajs=self.spec.eval_num_trajs, seed=20_000,
                             cache=os.path.join(self.out_dir, "evals", task.name,
                                                "random.json")))
        cached = [cached_eval(j) for j in jobs]
        todo = [j for j, c in zip(jobs, cached) if c is None]
        print(f"2_eval: {len(jobs)} policies, {len(jobs) - len(todo)} already evaluated",
              file=sys.stderr)
        fresh = iter(run_jobs(run_eval_job, todo, self.client, "2_eval"))
        res = [dict(j, **(c if c is not None else next(fresh))) for j, c in zip(jobs, cached)]
        rows = []
        for r in res:
            if r.get("random"):
                continue
            ex_rets, ex_lens = self.expert_returns(r["task"], r["num_trajs_data"])
            rows.append(dict(task=r["task"], alg=r["alg"], num_trajs=r["num_trajs_data"],
                             run=r["run"], alg_traj_returns=np.asarray(r["alg_traj_returns"]),
                             alg_traj_lengths=np.asarray(r["alg_traj_lengths"]),
                             ex_traj_returns=ex_rets, ex_traj_lengths=ex_lens,
                             snapshot=r["snapshot"],
                             alg_traj_returns_stochastic=np.asarray(
                                 r["alg_traj_returns_stochastic"]),
                             alg_traj_lengths_stochastic=np.asarray(
                                 r["alg_traj_lengths_stochastic"])))
        results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
        random = pd.DataFrame([dict(task=r["task"],
                                    return_mean=float(np.mean(r["alg_traj_returns"])),
                                    return_std=float(np.std(r["alg_traj_returns"])))
                               for r in res if r.get("random")],
                              columns=["task", "return_mean", "return_std"])
        results, random = self._keep_unselected_results(results, random)
        from policyopt.util import atomic_write

        with atomic_write(self.results_path) as tmp:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas: object columns are pickled
                results.to_hdf(tmp, key="results", mode="w", complevel=9)
                random.to_hdf(tmp, key="random", mode="a", complevel=9)
        return results, random

    def _keep_unselected_results(self, results, random):
        """Add the rows of an existing results.h5 that this evaluation did not select (a task,
        algorithm or dataset size left out by --tasks/--algs/--num_trajs); the selected cells
        are replaced by what was just evaluated."""
        import pandas as pd

        if not os.path.exists(self.results_path):
            return results, random
        old = pd.read_hdf(self.results_path, "results")
        old_random = pd.read_hdf(self.results_path, "random")
        tasks = {t.name for t in self.tasks}
        selected = (old["task"].isin(tasks) & old["alg"].isin(list(self.algs))
                    & old["num_trajs"].isin(list(self.spec.num_trajs)))
        if self.spec.run_ids is not None:
            # explicit run indices (--run_ids, a queue entry's run_ids): the cell's other runs
            # stay, e.g. a committed earlier run whose log is on another machine
            selected &= np.array([r.run in self.spec.run_ids for r in old.itertuples()],
                                 dtype=bool)
        kept = old[~selected]
        if len(kept):
            print(f"2_eval: keeping {len(kept)} results of cells outside this selection from "
                  f"{self.results_path}", file=sys.stderr)
            results = pd.concat([results, kept.reindex(columns=RESULT_COLUMNS)],
                                ignore_index=True)
        kept_random = old_random[~old_random["task"].isin(tasks)]
        if len(kept_random):
            random = pd.concat([random, kept_random[list(random.columns)]], ignore_index=True)
        return results, random

    def expert_returns(self, task_name, n):
        """Returns and lengths of the first n trajectories of a task's expert dataset."""
        from imitation.data import load_dataset

        if task_name not in self._datasets:
            task = next(t for t in self.tasks if t.name == task_name)
            self._datasets[task_name] = load_dataset(self.data_path(task))
        data = self._datasets[task_name]
        return data.returns_B[:n], data.len_B[:n]

    def report(self):
        """Phase 3: print the comparison with the published results, write report.txt and
        figure.png."""
        import pandas as pd

        from imitation import published as pub

        if not os.path.exists(self.results_path):
            raise UserError(f"{self.results_path} is missing: run phase 2_eval first")
        results = pd.read_hdf(self.results_path, "results")
        random = pd.read_hdf(self.results_path, "random")
        table = pub.compare(results, pub.load_published(self.published),
                            dict(zip(random["task"], random["return_mean"])))
        text = pub.format_table(table)
        rnd = ", ".join(f"{t} {m:.1f}" for t, m in zip(random["task"], random["return_mean"]))
        lines = [text, "", f"Evaluation as published: {self.spec.eval_num_trajs} episodes per "
                 "run acting deterministically (mean action / argmax); 'stochastic' samples "
                 "actions instead. Behavioural cloning: the snapshot with the best validation "
                 "accuracy; the others: the last.", ""] + pub.summarize_checks(table)
        qual = pub.qualitative_findings(table)
        if qual:
            lines += ["", "The paper's qualitative result, per task (normalized scores): GAIL "
                      "far above behavioural cloning with the fewest trajectories, behavioural "
                      "cloning closing as they grow, FEM and GTAL below GAIL:"] + qual
        ent = pub.entropy_study(table)
        if ent:
            lines += ["", "GAIL's return by policy entropy weight (--policy_ent_reg):"] + ent
        out = "\n".join(lines) + f"\nrandom policy: {rnd}\n"
        print(out)
        with open(os.path.join(self.out_dir, "report.txt"), "w") as f:
            f.write(out)
        table.to_csv(os.path.join(self.out_dir, "report.csv"), index=False)
        png = os.path.join(self.out_dir, "figure.png")
        pub.plot_figure(table, png, title=f"{self.spec.suite}: this project (solid) vs "
                                         "published (dashed)")
        print(f"wrote {png}")
        return table
