"""One TRPO policy step and one GAIL discriminator fit, per compile backend (C, Numba, JAX).

Builds, for every selected backend (`policyopt.backend.set_backend`), the models that
``scripts/imitate_mj.py --mode ga`` builds with its defaults for Hopper sizes (11 observation
features, 3 actions): the GaussianPolicy fc100-tanh-fc100-tanh with TRPO(max_kl 0.01,
damping 0.1), and the TransitionClassifier discriminator (fc100-tanh-fc100-tanh, Adam lr 0.01,
one Adam step per fit, entropy regularisation 0.001, input standardizer), with the same seed, so
every backend starts from the same weights. On a synthetic batch of `--rows` policy rows
(random observations, actions drawn from the policy, random advantages) and 200 expert rows
(4 Hopper trajectories of 1,000 steps subsampled every 20th, as GAIL's default dataset), it
times per backend and batch size:

  trpo_step  rl.TRPO(0.01, 0.1)(policy, obs, a, adist, adv, rng): the whole policy step
             (surrogate, KL and gradient, up to 10 conjugate-gradient iterations of Gauss-Newton
             products on a 10% subsample, line search)
  disc_fit   TransitionClassifier.fit(obs, a, t, ex_obs, ex_a, ex_t, rng): one discriminator
             fit as GAIL does once per iteration (input-standardizer update, one Adam step,
             loss and accuracies)

Compilation is excluded: every backend compiles and runs both once per batch size before the
clock starts (JAX compiles once per input shape). Every timed call starts from the same
parameters, optimizer state and random seed, so all backends and repeats do the same work.
When JAX runs on a GPU its figures are labelled jax_gpu: that is the issue's GPU-JAX vs CPU-C
comparison.

Output: one ``name: value`` line per figure; ``*_vs_c`` is the backend's time / the C time
(median over repeats of the ratio within each repeat; < 1 means faster than C).

    python benchmarks/bench_backends.py [--rows 50000[,1000000]] [--backends c,numba,jax]
                                        [--repeats 3]
"""
import argparse
import gc
import os
import sys
import time

import numpy as np

from policyopt import ContinuousSpace, backend, blas, imitation, nn, rl

OBS_DIM, ACT_DIM = 11, 3   # Hopper
HORIZON = 1000             # Hopper's time limit: the discriminator's time_scale is 1/horizon
EXPERT_ROWS = 200          # 4 trajectories x 1,000 steps, every 20th pair (GAIL's default)


def jax_platform():
    """'gpu' when JAX's first device is a GPU, else its platform ('cpu', 'tpu')."""
    import jax

    platform = jax.devices()[0].platform
    return "gpu" if platform in ("gpu", "cuda", "rocm") else platform


def label(name, jax_dev):
    return f"jax_{jax_dev}" if name == "jax" else name


# ------------------------------------------------------------------------------------ data

class Problem:
    """Synthetic inputs of one batch size, shared by every backend."""

    def __init__(self, rows, seed):
        rng = np.random.default_rng(seed)
        # Observations with non-trivial location and scale, the expert's a shifted copy (the
        # discriminator then has something to separate).
        loc = rng.normal(scale=2., size=OBS_DIM)
        scale = rng.uniform(0.2, 3., size=OBS_DIM)
        self.obs = loc + scale * rng.standard_normal((rows, OBS_DIM))
        self.noise = rng.standard_normal((rows, ACT_DIM))  # actions = mean + stdev * noise
        self.adv = rng.standard_normal(rows)
        self.t = rng.integers(0, HORIZON, size=rows).astype(np.float64)
        self.ex_obs = loc + 0.3 * scale + scale * rng.standard_normal((EXPERT_ROWS, OBS_DIM))
        self.ex_a = np.clip(rng.normal(0.3, 0.5, size=(EXPERT_ROWS, ACT_DIM)), -1., 1.)
        self.ex_t = rng.integers(0, HORIZON, size=EXPERT_ROWS).astype(np.float64)
        self.rows = rows


class Models:
    """The policy, its TRPO step and the discriminator, built and compiled for one backend."""

    def __init__(self, name, seed, param_seed):
        backend.set_backend(name)   # every graph of these models compiles with `name`
        self.name = name
        hidden_spec = nn.DEFAULT_HIDDEN_SPEC
        obs_space, act_space = ContinuousSpace(OBS_DIM), ContinuousSpace(ACT_DIM)
        nn.seed_initializers(seed)
        self.policy = rl.GaussianPolicy(hidden_spec, obs_space, act_space, enable_obsnorm=True)
        # a trained-looking policy (non-zero output layer, stdev != 1), the same in every backend
        prng = np.random.default_rng(param_seed)
        params = prng.normal(scale=0.1, size=self.policy.P)
        params[-ACT_DIM:] = -0.5  # logstdevs_1_Da
        self.policy.set_params(params)
        self.step = rl.TRPO(max_kl=0.01, damping=0.1)
        self.reward = imitation.TransitionClassifier(
            hidden_spec=hidden_spec, obsfeat_space=obs_space, action_space=act_space,
            adam_lr=0.01, adam_steps=1, ent_reg_weight=0.001, enable_inputnorm=True,
            include_time=False, time_scale=1. / HORIZON, favor_zero_expert_reward=False)
        self.obsnorm_init = self.policy.obsnorm.get_state()
        self.inputnorm_init = self.reward.inputnorm.get_state()
        self.data = None

    def set_problem(self, prob):
        """Standardizers from the expert data (imitate_mj's default obsnorm_mode
        'expertdata'), the policy's action distribution and actions on the batch, and the
        state every timed call starts from."""
        backend.set_backend(self.name)  # graphs compiled from here on (first use) use it
        self.policy.obsnorm.set_state(self.obsnorm_init)
        self.policy.update_obsnorm(prob.ex_obs)
        self.reward.inputnorm.set_state(self.inputnorm_init)
        self.reward.update_inputnorm(prob.ex_obs, prob.ex_a)
        adist = self.policy.compute_actiondist_params(prob.obs)
        a = adist[:, :ACT_DIM] + adist[:, ACT_DIM:] * prob.noise
        self.data = (prob.obs, a, adist, prob.adv)
        self.prob = prob
        self.params0 = self.policy.get_params().copy()
        self.reward_state0 = self.reward.get_state()
        self.adam0 = [(v, v.get_value().copy()) for v in self.reward.adam_state_vars()]

    def reset(self):
        backend.set_backend(self.name)
        self.policy.set_params(self.params0)
        self.reward.set_state(self.reward_state0)
        for v, val in self.adam0:
            v.set_value(val.copy())

    def run_trpo(self, seed):
        obs, a, adist, adv = self.data
        return self.step(self.policy, obs, a, adist, adv, np.random.default_rng(seed))

    def run_disc(self, seed):
        p = self.prob
        return self.reward.fit(p.obs, self.data[1], p.t, p.ex_obs, p.ex_a, p.ex_t,
                               np.random.default_rng(seed))


def linkers(*models):
    """Linker class of every graph the models have compiled so far (proof of the backend)."""
    out = set()
    for model in models:
        for key, fn in vars(model).items():
            if key.startswith("_compiled_"):
                out.add(f"{key[len('_compiled_'):]}={type(fn.fn.maker.linker).__name__}")
    return ", ".join(sorted(out))


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def parse_rows(text):
    try:
        rows = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rows wants integers like 50000,1000000: {text!r}")
    if not rows or min(rows) < 2:
        raise argparse.ArgumentTypeError("--rows wants one or more batch sizes >= 2")
    return rows


def select_backends(text, ap):
    asked = [b.strip().lower() for b in text.split(",") if b.strip()] if text else list(
        backend.BACKENDS)
    bad = [b for b in asked if b not in backend.BACKENDS]
    if bad or not asked:
        ap.error(f"--backends: unknown {', '.join(bad) or '(none given)'}; "
                 f"choose from {','.join(backend.BACKENDS)}")
    chosen = []
    for name in [b for b in backend.BACKENDS if b in asked]:  # c first: the reference
        try:
            backend.check_backend_available(name)
        except RuntimeError as e:
            print(f"skipping backend {name}: {e}", file=sys.stderr, flush=True)
            continue
        chosen.append(name)
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints `name: value` lines; *_vs_c = backend time / C "
                                        "time (median of per-repeat ratios). The issue's "
                                        "1,000,000 rows: --rows 50000,1000000 (needs several "
                                        "GB of RAM per backend).")
    ap.add_argument("--rows", type=parse_rows, default=[50000],
                    help="policy batch sizes, comma-separated (default 50000; the issue's "
                         "pair is 50000,1000000)")
    ap.add_argument("--backends", default=None,
                    help="comma-separated subset of c,numba,jax (default: every installed one; "
                         "missing ones are skipped with a note on stderr)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed repeats; medians are reported (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="data/parameter seed (default 0)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    names = select_backends(args.backends, ap)
    if not names:
        ap.error("none of the requested backends is available")
    jax_dev = jax_platform() if "jax" in names else None
    labels = {n: label(n, jax_dev) for n in names}
    print(f"backends {', '.join(labels[n] for n in names)}; rows {args.rows}; "
          f"{EXPERT_ROWS} expert rows; {args.repeats} repeats", file=sys.stderr, flush=True)

    models = {}
    for n in names:
        t0 = time.perf_counter()
        models[n] = Models(n, args.seed, args.seed + 1)
        print(f"{labels[n]}: models built in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)

    trpo_seed, disc_seed = args.seed + 2, args.seed + 3
    times = {}  # (kind, name, rows) -> list of seconds
    out = []
    for rows in args.rows:
        prob = Problem(rows, args.seed)
        # ---- warm-up: compile (first use; JAX again for every new input shape) and run once
        results = {}
        for n in names:
            m = models[n]
            m.set_problem(prob)
            m.reset()
            t_trpo, info = timed(m.run_trpo, trpo_seed)
            x1 = m.policy.get_params().copy()
            t_disc, fields = timed(m.run_disc, disc_seed)
            results[n] = (x1, m.reward.get_params().copy())
            print(f"{labels[n]} rows {rows}: first calls (compilation included) trpo_step "
                  f"{t_trpo:.2f} s, disc_fit {t_disc:.2f} s; step kl {info.kl1:.3g} "
                  f"bt {info.bt} accepted {info.accepted}; disc "
                  + " ".join(f"{k} {v:.4g}" for k, v in fields), file=sys.stderr, flush=True)
            if rows == args.rows[0]:
                print(f"{labels[n]} graphs: {linkers(m.policy, m.reward)}", file=sys.stderr,
                      flush=True)
        if "c" in results:  # the backends should take the same step (last-bit differences)
            for n in names:
                if n == "c":
                    continue
                diffs = [float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300))
                         for got, ref in zip(results[n], results["c"])]
                print(f"{labels[n]} rows {rows}: max relative difference to c after the "
                      f"step {diffs[0]:.1e}, after the fit {diffs[1]:.1e}", file=sys.stderr,
                      flush=True)
        # ---- timing: every repeat runs every backend, in an order rotated between repeats
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            row = []
            for n in order:
                m = models[n]
                for kind, fn, seed in (("trpo_step", m.run_trpo, trpo_seed),
                                       ("disc_fit", m.run_disc, disc_seed)):
                    m.reset()
                    gc.collect()
                    gc.disable()
                    try:
                        dt, _ = timed(fn, seed)
                    finally:
                        gc.enable()
                    times.setdefault((kind, n, rows), []).append(dt)
                    row.append(f"{kind}_{labels[n]} {1e3 * dt:.0f}")
            print(f"rows {rows} repeat {r}: " + ", ".join(row) + " ms", file=sys.stderr,
                  flush=True)
        for m in models.values():
            m.data = m.prob = None
        del prob
        gc.collect()

        for kind in ("trpo_step", "disc_fit"):
            for n in names:
                out.append((f"{kind}_ms_{labels[n]}_{rows}",
                            f"{1e3 * np.median(times[(kind, n, rows)]):.1f}"))
            if "c" in names:
                ref = np.array(times[(kind, "c", rows)])
                for n in names:
                    if n != "c":
                        ratio = np.median(np.array(times[(kind, n, rows)]) / ref)
                        out.append((f"{kind}_{n}_vs_c_{rows}", f"{ratio:.3f}"))

    out += [
        ("jax_device", jax_dev if jax_dev is not None else "not run"),
        ("backends", ",".join(names)),
        ("rows", ",".join(str(r) for r in args.rows)),
        ("expert_rows", str(EXPERT_ROWS)),
        ("repeats", str(args.repeats)),
        ("blas", blas.blas_status.source),
        ("load_avg_1min", f"{os.getloadavg()[0]:.2f}"),
    ]
    for name, value in out:
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
