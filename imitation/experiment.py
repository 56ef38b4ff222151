"""Building an experiment: typed configurations and the builders that turn one into a run.

This is the project's Python API, and what `scripts/imitate_mj.py`, `scripts/run_rl_mj.py`,
the benchmarks and the tests all use, so that each of them builds exactly what users run::

    from imitation.experiment import ImitationConfig, build_imitation

    exp = build_imitation(ImitationConfig(mode="ga", data="expert_trajs/cartpole.h5",
                                          min_total_sa=5000))
    exp.run(max_iter=301, log="runs/cartpole_gail.h5")

A config holds every setting of a run (the scripts' flags, with the original's defaults); a
builder resolves what the config leaves open (the environment from the dataset, the network
spec, the worker count) and wires the models in the order the original did, so a seed gives the
same run whichever way it was built. `Experiment.run` iterates, logs and snapshots
(`imitation.training`), and resumes a killed run exactly.
"""
import os
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from imitation.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_MAX_ITER = {"ga": 501, "bclone": 20001, "trpo": 500}


@dataclass
class ImitationConfig:
    """A run of `imitate_mj.py`: GAIL, the apprenticeship-learning baselines, or behavioural
    cloning on an expert dataset (defaults as in the original, design.md section 5)."""

    mode: str = "ga"
    """ga: policy optimisation against a learned reward; bclone: behavioural cloning."""
    data: str = None
    """Expert dataset (HDF5, `imitation.data`)."""
    limit_trajs: int = None
    """Use the first N trajectories (None: all)."""
    data_subsamp_freq: int = None
    """Keep every k-th expert pair (None: the dataset's attribute, else 20)."""
    env_name: str = None
    """Environment (None: the dataset's env_name)."""
    obs_adapter: str = None
    """Legacy observation adapter (None: the dataset's, unless env_name is given)."""
    env_kwargs: str = None
    """JSON object of keyword arguments for gymnasium.make (None: the dataset's, unless
    env_name is given)."""
    max_traj_len: int = None
    """Episode length limit replacing the environment's time limit (None: the environment's)."""
    policy_hidden_spec: str = None
    """JSON layer list of the policy, value function and discriminator (None: fc100-tanh x2,
    or fc64-tanh x2 with tiny_policy)."""
    tiny_policy: bool = False
    """fc64-tanh-fc64-tanh networks."""
    obsnorm_mode: str = "expertdata"
    """expertdata: standardizers start from the expert data; online: running only; none: off."""
    bclone_lr: float = 1e-3
    """Behavioural cloning: Adam learning rate."""
    bclone_batch_size: int = 128
    """Behavioural cloning: minibatch size."""
    bclone_eval_ntrajs: int = 20
    """Behavioural cloning: episodes per evaluation."""
    bclone_eval_freq: int = 1000
    """Behavioural cloning: Adam steps between evaluations (and snapshots)."""
    bclone_train_frac: float = 0.7
    """Behavioural cloning: share of the expert pairs trained on (the rest validate)."""
    discount: float = 0.995
    """Discount of the returns."""
    lam: float = 0.97
    """GAE lambda."""
    policy_max_kl: float = 0.01
    """TRPO's trust region: mean KL per step."""
    policy_cg_damping: float = 0.1
    """Damping of the KL Hessian in the conjugate-gradient solve."""
    no_vf: int = 0
    """1: no value-function baseline."""
    vf_max_kl: float = 0.01
    """The value function's trust region."""
    vf_cg_damping: float = 0.1
    """Damping of the value function's natural-gradient step."""
    policy_ent_reg: float = 0.
    """Weight of the policy-entropy bonus in the reward."""
    reward_type: str = "nn"
    """nn: GAIL's discriminator; l2ball: FEM; simplex: GTAL."""
    reward_lr: float = 0.01
    """The discriminator's Adam learning rate."""
    reward_steps: int = 1
    """Discriminator Adam steps per iteration."""
    reward_ent_reg_weight: float = 0.001
    """The discriminator's entropy regularisation."""
    reward_include_time: int = 0
    """1: the reward also sees the time step."""
    sim_batch_size: int = None
    """Environments stepped together per sampling worker (None: automatic)."""
    min_total_sa: int = 50000
    """Transitions sampled per iteration."""
    favor_zero_expert_reward: int = 0
    """1: reward log D (<= 0), for tasks that end early on success."""
    seed: int = 0
    """Seed of every random stream (expert subsampling keeps the original's fixed offsets)."""
    num_workers: int = None
    """Sampling worker processes (None: one per core; 0: in this process)."""


@dataclass
class RLConfig:
    """A run of `run_rl_mj.py`: TRPO with a value-function baseline (e.g. to train an
    expert)."""

    env_name: str = None
    """Gymnasium id, or an original id such as Hopper-v1."""
    obs_adapter: str = None
    """Legacy observation adapter."""
    env_kwargs: str = None
    """JSON object of keyword arguments for gymnasium.make."""
    max_traj_len: int = None
    """Episode length limit replacing the environment's time limit."""
    policy_hidden_spec: str = None
    """JSON layer list of the policy and value function (None: fc100-tanh x2)."""
    tiny_policy: bool = False
    """fc64-tanh-fc64-tanh networks."""
    enable_obsnorm: int = 1
    """Standardize observations with running statistics."""
    discount: float = 0.995
    """Discount of the returns."""
    lam: float = 0.97
    """GAE lambda."""
    policy_max_kl: float = 0.01
    """TRPO's trust region: mean KL per step."""
    policy_cg_damping: float = 0.1
    """Damping of the KL Hessian in the conjugate-gradient solve."""
    vf_max_kl: float = 0.01
    """The value function's trust region."""
    vf_cg_damping: float = 0.1
    """Damping of the value function's natural-gradient step."""
    min_total_sa: int = 50000
    """Transitions sampled per iteration."""
    sim_batch_size: int = None
    """Environments stepped together per sampling worker (None: automatic)."""
    seed: int = 0
    """Seed of every random stream."""
    num_workers: int = None
    """Sampling worker processes (None: one per core; 0: in this process)."""


def config_from(cls, namespace):
    """A config of class `cls` from an object with one attribute per field (parsed args)."""
    return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})


def resolve_hidden_spec(spec, tiny):
    """The network spec a config asks for, validated (UserError naming the problem)."""
    from policyopt import nn

    if tiny and spec and spec != nn.TINY_HIDDEN_SPEC:
        raise UserError("--tiny_policy and --policy_hidden_spec are mutually exclusive")
    spec = nn.TINY_HIDDEN_SPEC if tiny else (spec or nn.DEFAULT_HIDDEN_SPEC)
    try:
        nn.parse_hidden_spec(spec)
    except ValueError as e:
        raise UserError(f"--policy_hidden_spec: {e}")
    return spec


def make_policy(hidden_spec, mdp, enable_obsnorm):
    """The policy class the action space calls for: GibbsPolicy (discrete) or GaussianPolicy."""
    from policyopt import FiniteSpace, rl

    cls = rl.GibbsPolicy if isinstance(mdp.action_space, FiniteSpace) else rl.GaussianPolicy
    return cls(hidden_spec, mdp.obs_space, mdp.action_space, enable_obsnorm=enable_obsnorm)


@dataclass
class Experiment:
    """A built run: call `run()`; `close()` (or the context manager) ends its sampler."""

    config: object
    """The config, with everything the builder resolved filled in."""
    mdp: object
    """The environment (`imitation.envs.GymMDP`)."""
    policy: object
    """The policy being trained."""
    optimizer: object
    """ImitationOptimizer, BehavioralCloningOptimizer or SamplingPolicyOptimizer."""
    models: list
    """The models each snapshot saves."""
    state: object
    """`imitation.training.RunState`: what a resume restores."""
    step: object
    """One iteration: returns the log row."""
    default_max_iter: int
    """Iterations (or behavioural-cloning evaluations' Adam steps) when run() is given none."""
    summary: str
    """One line describing the run."""
    bclone_steps: list = None
    """Behavioural cloning: Adam steps done at each logged evaluation."""
    bclone_max_steps: int = None
    """Behavioural cloning: the Adam steps run() was asked for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.mdp.close()

    def run(self, max_iter=None, log=None, save_freq=20, print_freq=1, resume=False,
            attrs=None, verbose=False, tensorboard=None):
        """Train for `max_iter` iterations (GAIL/TRPO) or Adam steps (behavioural cloning),
        printing rows every `print_freq`; with `log` (a path), write rows, `attrs` (the run's
        arguments; default: the config) and snapshots every `save_freq` iterations to it.
        `resume`: continue the run logged in `log`. The console shows the compact columns
        (training.COMPACT_COLUMNS) unless `verbose`; the log holds all. `tensorboard`: a
        directory where every row's fields also go as TensorBoard scalars. Returns False when
        a resumed run had nothing left to do. Holds the log's exclusive lock
        (`imitation.locks`) while it runs."""
        from imitation import locks

        locked_here = bool(log) and locks.lock_output(log, "log")
        if log and not resume and os.path.exists(log):
            if locked_here:
                locks.release_output(log)
            raise UserError(f"log {log} already exists; pass resume=True to continue that run, "
                            "or choose a new file")
        try:
            return self._run(max_iter, log, save_freq, print_freq, resume, attrs, verbose,
                             tensorboard)
        finally:
            if locked_here:
                locks.release_output(log)

    def _run(self, max_iter, log, save_freq, print_freq, resume, attrs, verbose, tensorboard):
        from imitation.training import (
            COMPACT_COLUMNS,
            TensorBoardWriter,
            TrainingLog,
            read_log,
            train_loop,
        )

        max_iter = max_iter or self.default_max_iter
        bclone = self.bclone_steps is not None
        if bclone:   # one logged row per evaluation block
            cfg = self.config
            n_iter, save_freq = (max_iter - 1) // cfg.bclone_eval_freq + 1, 1
            self.bclone_max_steps = max_iter
        else:
            n_iter = max_iter
        start = 0
        if resume:
            start = self.state.load(log) + 1
            if start >= n_iter:
                print(f"{log} already holds iterations 0..{start - 1} (--max_iter {max_iter}); "
                      "nothing to do: pass a larger --max_iter to continue it")
                return False
            print(f"resuming {log} at iteration {start}", flush=True)
            earlier_rows = read_log(log).rows
            if bclone:
                self.bclone_steps.extend(int(i) for i in earlier_rows["iter"])
        if bclone:
            label, last = (lambda it: self.bclone_steps[it]), (lambda: len(self.bclone_steps) - 1)
        else:
            label, last = None, (lambda: self.optimizer.curr_iter - 1)
        train_log = TrainingLog(log, attrs=asdict(self.config) if attrs is None else attrs,
                                print_columns=None if verbose else COMPACT_COLUMNS)
        board = TensorBoardWriter(tensorboard) if tensorboard else None
        returns = []
        earlier = []  # a resumed run's rows so far: its closing "best" covers the whole run
        if resume:
            col = next((c for c in ("trueret", "ret") if c in earlier_rows.dtype.names), None)
            if col is not None:
                earlier = [(int(i), float(r))
                           for i, r in zip(earlier_rows["iter"], earlier_rows[col])]

        def step():
            row = self.step()
            fields = dict(row)
            returns.append((fields.get("iter"), fields.get("trueret", fields.get("ret"))))
            if board is not None:
                board.write(row)
            return row

        t0 = time.time()
        try:
            train_loop(step, train_log, self.models, n_iter, save_freq, print_freq,
                       start_iter=start, extra_state=self.state.saver(last),
                       snapshot_label=label)
        finally:
            if board is not None:
                board.close()
        print(closing_summary(returns, time.time() - t0, log, self.script, max_iter,
                              label(n_iter - 1) if label else n_iter - 1, earlier=earlier),
              flush=True)
        return True

    @property
    def script(self):
        """The script that runs this kind of experiment."""
        return "run_rl_mj.py" if isinstance(self.config, RLConfig) else "imitate_mj.py"


def script_command(script):
    """How to run one of the project's scripts from the current directory: ``python
    scripts/X`` in the repository root, the script's absolute path elsewhere."""
    path = os.path.join(REPO_ROOT, "scripts", script)
    try:
        if os.path.samefile(os.getcwd(), REPO_ROOT):
            return f"python scripts/{script}"
    except OSError:
        pass
    return f"python {path}"


def closing_summary(returns, seconds, log, script, max_iter, last_label, earlier=()):
    """What a finished run prints last: how long, the true return at the end and at its best
    (over the whole run, `earlier` holding the (iter, return) rows before a resume), and where
    the log is, with the commands that evaluate, resume and plot it."""
    m, s = divmod(int(round(seconds)), 60)
    lines = [f"done: {len(returns)} iterations in {m}m{s:02d}s"]
    if earlier:
        lines[0] += f" (resumed after {len(earlier)})"
    finite = [(i, r) for i, r in list(earlier) + list(returns)
              if r is not None and np.isfinite(r)]
    if finite:
        best = max(finite, key=lambda x: x[1])
        lines[0] += (f"; true return {finite[-1][1]:.2f} at the end (iter {finite[-1][0]}), "
                     f"best {best[1]:.2f} (iter {best[0]})")
    if not log:
        lines.append("no --log: nothing was saved (rerun with --log FILE to keep the policy, "
                     "evaluate, resume and plot it)")
        return "\n".join(lines)
    stem = os.path.splitext(log)[0]
    lines += [f"log: {log} (last snapshot {log}/snapshots/iter{last_label:07d})",
              f"  evaluate: {script_command('eval_policy.py')} {log} --deterministic",
              f"  resume:   {script_command(script)} --resume --log {log} --max_iter "
              f"{2 * max_iter - 1}",
              f"  plot:     {script_command('showlog.py')} {log} --out {stem}.png"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- imitation

def build_imitation(cfg):
    """GAIL (reward_type nn), FEM (l2ball), GTAL (simplex) or behavioural cloning
    (mode bclone) from an ImitationConfig. The config's open fields come back resolved in
    `Experiment.config` (a copy)."""
    from dataclasses import replace

    from imitation.data import check_fits_mdp, load_dataset, subsample
    from imitation.envs import GymMDP
    from policyopt import nn

    if cfg.mode not in ("ga", "bclone"):
        raise UserError(f"mode must be ga or bclone, got {cfg.mode!r}")
    if not cfg.data:
        raise UserError("an imitation run needs an expert dataset (data)")
    cfg = replace(cfg, policy_hidden_spec=resolve_hidden_spec(cfg.policy_hidden_spec,
                                                              cfg.tiny_policy))
    data = load_dataset(cfg.data)
    env_name = cfg.env_name or data.env_name
    if not env_name:
        raise UserError(f"{cfg.data} records no env_name; pass --env_name")
    obs_adapter = cfg.obs_adapter or (data.obs_adapter if not cfg.env_name else None)
    env_kwargs = cfg.env_kwargs or (data.attrs.get("env_kwargs") if not cfg.env_name else None)
    freq = cfg.data_subsamp_freq
    if freq is None:
        stored = data.attrs.get("data_subsamp_freq") or 20
        try:
            freq = int(stored)
        except (TypeError, ValueError):
            freq = 0
        if freq <= 0 or freq != stored:
            raise UserError(f"{cfg.data}: attribute data_subsamp_freq {stored!r} is not a "
                            "positive integer; pass --data_subsamp_freq")
    mdp = GymMDP(env_name, obs_adapter=obs_adapter, max_traj_len=cfg.max_traj_len,
                 num_workers=cfg.num_workers, env_kwargs=env_kwargs)
    # recorded resolved: a resume samples with the same worker count and environment
    cfg = replace(cfg, env_name=env_name, obs_adapter=obs_adapter, env_kwargs=env_kwargs or None,
                  data_subsamp_freq=freq,
                  num_workers=mdp.num_workers)
    try:
        check_fits_mdp(data, mdp)
        # offsets from RandomState(0) whatever the seed, as the original
        ex_obs, ex_a, ex_t = subsample(data, cfg.limit_trajs, freq)
        summary = (f"{cfg.mode} on {mdp.spec.gym_id}: {cfg.limit_trajs or data.num_trajs} "
                   f"expert trajectories (return {data.returns_B[:cfg.limit_trajs].mean():.2f}), "
                   f"{len(ex_obs)} pairs after subsampling every {freq}; {mdp.num_workers} "
                   "sampling workers")
        nn.seed_initializers(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        enable_obsnorm = cfg.obsnorm_mode != "none"
        policy = make_policy(cfg.policy_hidden_spec, mdp, enable_obsnorm)
        if cfg.obsnorm_mode == "expertdata":
            policy.update_obsnorm(ex_obs)
        build = _build_bclone if cfg.mode == "bclone" else _build_gail
        exp = build(cfg, mdp, policy, rng, ex_obs, ex_a, ex_t, summary)
        # a resume checks it: a file replaced at the same path must not continue silently
        from policyopt.util import file_sha256

        exp.state.fingerprints["data"] = file_sha256(cfg.data)
        return exp
    except BaseException:
        mdp.close()
        raise


def _build_bclone(cfg, mdp, policy, rng, ex_obs, ex_a, ex_t, summary):
    from imitation.training import RunState
    from policyopt import SimConfig, imitation

    opt = imitation.BehavioralCloningOptimizer(
        mdp, policy, lr=cfg.bclone_lr, batch_size=cfg.bclone_batch_size, obsfeat_fn=None,
        ex_obs=ex_obs, ex_a=ex_a,
        eval_sim_cfg=SimConfig(min_num_trajs=cfg.bclone_eval_ntrajs, min_total_sa=-1,
                               batch_size=cfg.sim_batch_size, max_traj_len=cfg.max_traj_len),
        eval_freq=cfg.bclone_eval_freq, train_frac=cfg.bclone_train_frac, rng=rng)
    exp = Experiment(cfg, mdp, policy, opt, [policy], None, None, DEFAULT_MAX_ITER["bclone"],
                     summary, bclone_steps=[])

    def block():
        # Block k ends after Adam step k * eval_freq + 1 (block 0: after the first step); its
        # log row and snapshot are both labelled with the number of steps done.
        target = len(exp.bclone_steps) * cfg.bclone_eval_freq + 1
        while opt.total_steps < min(target, exp.bclone_max_steps):
            opt.step()
        exp.bclone_steps.append(opt.total_steps)
        return opt.evaluate()

    exp.step = block
    exp.state = RunState([policy], shared_vars=policy.bclone_adam_state_vars(), rng=rng,
                         counters={"steps": (opt, "total_steps")})
    return exp


def _build_gail(cfg, mdp, policy, rng, ex_obs, ex_a, ex_t, summary):
    from imitation.training import RunState
    from policyopt import SimConfig, imitation, rl

    enable_obsnorm = cfg.obsnorm_mode != "none"
    time_scale = 1. / mdp.horizon(cfg.max_traj_len)
    if cfg.reward_type == "nn":
        reward = imitation.TransitionClassifier(
            hidden_spec=cfg.policy_hidden_spec, obsfeat_space=mdp.obs_space,
            action_space=mdp.action_space, adam_lr=cfg.reward_lr, adam_steps=cfg.reward_steps,
            ent_reg_weight=cfg.reward_ent_reg_weight, enable_inputnorm=enable_obsnorm,
            include_time=bool(cfg.reward_include_time), time_scale=time_scale,
            favor_zero_expert_reward=bool(cfg.favor_zero_expert_reward))
    elif cfg.reward_type in ("l2ball", "simplex"):
        reward = imitation.LinearReward(
            obsfeat_space=mdp.obs_space, action_space=mdp.action_space, mode=cfg.reward_type,
            enable_inputnorm=enable_obsnorm,
            favor_zero_expert_reward=bool(cfg.favor_zero_expert_reward),
            include_time=bool(cfg.reward_include_time), time_scale=time_scale)
    else:
        raise UserError(f"reward_type must be nn, l2ball or simplex, got {cfg.reward_type!r}")
    vf = None if cfg.no_vf else rl.ValueFunc(
        cfg.policy_hidden_spec, mdp.obs_space, enable_obsnorm=enable_obsnorm, enable_vnorm=True,
        max_kl=cfg.vf_max_kl, damping=cfg.vf_cg_damping, time_scale=time_scale)
    if cfg.obsnorm_mode == "expertdata":
        reward.update_inputnorm(ex_obs, ex_a)
        if vf is not None:
            vf.obsnorm.update(ex_obs)
    opt = imitation.ImitationOptimizer(
        mdp=mdp, discount=cfg.discount, lam=cfg.lam, policy=policy,
        sim_cfg=SimConfig(min_num_trajs=-1, min_total_sa=cfg.min_total_sa,
                          batch_size=cfg.sim_batch_size, max_traj_len=cfg.max_traj_len),
        step_func=rl.TRPO(max_kl=cfg.policy_max_kl, damping=cfg.policy_cg_damping),
        reward_func=reward, value_func=vf, policy_obsfeat_fn=None, reward_obsfeat_fn=None,
        policy_ent_reg=cfg.policy_ent_reg, ex_obs=ex_obs, ex_a=ex_a, ex_t=ex_t, rng=rng)
    models = [policy, reward] + ([vf] if vf is not None else [])
    shared = reward.adam_state_vars() if cfg.reward_type == "nn" else []
    state = RunState(models, shared_vars=shared, rng=rng, counters={"iter": (opt, "curr_iter")})
    return Experiment(cfg, mdp, policy, opt, models, state, opt.step, DEFAULT_MAX_ITER["ga"],
                      summary)


# ------------------------------------------------------------------------------------ TRPO

def build_trpo(cfg):
    """TRPO with a value-function baseline from an RLConfig (`run_rl_mj.py`)."""
    from dataclasses import replace

    from imitation.envs import GymMDP
    from imitation.training import RunState
    from policyopt import SimConfig, nn, rl

    if not cfg.env_name:
        raise UserError("a TRPO run needs an environment (env_name)")
    cfg = replace(cfg, policy_hidden_spec=resolve_hidden_spec(cfg.policy_hidden_spec,
                                                              cfg.tiny_policy))
    mdp = GymMDP(cfg.env_name, obs_adapter=cfg.obs_adapter, max_traj_len=cfg.max_traj_len,
                 num_workers=cfg.num_workers, env_kwargs=cfg.env_kwargs)
    cfg = replace(cfg, num_workers=mdp.num_workers)  # a resume samples the same way
    try:
        nn.seed_initializers(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        policy = make_policy(cfg.policy_hidden_spec, mdp, bool(cfg.enable_obsnorm))
        vf = rl.ValueFunc(cfg.policy_hidden_spec, mdp.obs_space,
                          enable_obsnorm=bool(cfg.enable_obsnorm), enable_vnorm=True,
                          max_kl=cfg.vf_max_kl, damping=cfg.vf_cg_damping,
                          time_scale=1. / mdp.horizon(cfg.max_traj_len))
        opt = rl.SamplingPolicyOptimizer(
            mdp, cfg.discount, cfg.lam, policy,
            SimConfig(min_num_trajs=-1, min_total_sa=cfg.min_total_sa,
                      batch_size=cfg.sim_batch_size, max_traj_len=cfg.max_traj_len),
            rl.TRPO(cfg.policy_max_kl, cfg.policy_cg_damping), vf, rng)
    except BaseException:
        mdp.close()
        raise
    summary = (f"TRPO on {mdp.spec.gym_id}: obs {mdp.obs_space.storage_size}, actions "
               f"{mdp.action_space}, policy {policy.get_num_params()} params, "
               f"{mdp.num_workers} sampling workers")
    state = RunState([policy, vf], rng=rng, counters={"iter": (opt, "curr_iter")})
    return Experiment(cfg, mdp, policy, opt, [policy, vf], state, opt.step,
                      DEFAULT_MAX_ITER["trpo"], summary)
