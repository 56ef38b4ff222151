"""Reinforcement learning: stochastic policies, the value function, TRPO, GAE, and the
sampling optimizer that ties them together.

A policy maps observation features through a standardizer and a network to the parameters of
an action distribution (`actiondist_B_Pa`). All learning maths are PyTensor graphs built once
per model; each graph is compiled on first use (`thutil.lazy_function`).
"""
import numpy as np
import pytensor.tensor as pt

from policyopt import ContinuousSpace, FiniteSpace, RaggedArray, nn, optim, thutil, util
from policyopt.optim import HVP_MODES, check_hvp_mode  # noqa: F401 (re-exported)
from policyopt.thutil import floatX

# ------------------------------------------------------------------------------------ Policy

class Policy(nn.Model):
    """obs features -> standardizer -> network -> action-distribution parameters.

    Graphs (inputs are batches; `proposal` is the distribution the data was sampled from):
      surrogate obj = mean(exp(logp_new - logp_proposal) * advantage)
      kl            = mean KL(proposal || new)
      objgrad_P     = d obj / d params
      hvp_P         = d (klgrad_P . v_P) / d params   (double gradient: exact everywhere)
      gnvp_P        = J^T H_raw J v_P                 (Gauss-Newton: exact at new = proposal,
                                                       where TRPO evaluates it; ~1.6x cheaper)
      bclone loss   = -mean logp(expert action)
    The network's output `raw_B_R` determines the distribution through the parameter-free map
    `_actiondist_from_raw`, which is where the Gauss-Newton split is made.
    """

    def __init__(self, obsfeat_space, action_space, num_actiondist_params, enable_obsnorm,
                 varscope_name):
        self.obsfeat_space, self.action_space = obsfeat_space, action_space
        self.Df = obsfeat_space.storage_size
        self.Da = action_space.storage_size
        self.Pa = num_actiondist_params
        with self.building(varscope_name):
            self.obsfeat_B_Df = pt.matrix("obsfeat_B_Df", shape=(None, self.Df))
            with nn.variable_scope("obsnorm"):
                self.obsnorm = (nn.Standardizer(self.Df) if enable_obsnorm
                                else nn.NoOpStandardizer(self.Df))
            normalized_B_Df = self.obsnorm.standardize_expr(self.obsfeat_B_Df)
            self.raw_B_R = self._make_raw_ops(normalized_B_Df)
        self.actiondist_B_Pa = self._actiondist_from_raw(self.raw_B_R)
        self.param_vars = self.get_trainable_variables()
        self.P = self.get_num_params()

        a_dtype = "int64" if isinstance(action_space, FiniteSpace) else floatX
        self.a_B_Da = pt.matrix("a_B_Da", dtype=a_dtype, shape=(None, self.Da))
        self.proposal_actiondist_B_Pa = pt.matrix("proposal_actiondist_B_Pa",
                                                  shape=(None, self.Pa))
        self.advantage_B = pt.vector("advantage_B")
        self.v_P = pt.vector("v_P", shape=(self.P,))

        logprobs_B = self._make_actiondist_logprob_ops(self.actiondist_B_Pa, self.a_B_Da)
        proposal_logprobs_B = self._make_actiondist_logprob_ops(self.proposal_actiondist_B_Pa,
                                                                self.a_B_Da)
        self.logprobs_B = logprobs_B
        impweight_B = pt.exp(logprobs_B - proposal_logprobs_B)
        self.obj = (impweight_B * self.advantage_B).mean()
        self.objgrad_P = thutil.flatgrad(self.obj, self.param_vars)
        self.kl = self._make_actiondist_kl_ops(self.proposal_actiondist_B_Pa,
                                               self.actiondist_B_Pa).mean()
        klgrad_P = thutil.flatgrad(self.kl, self.param_vars)
        self.hvp_P = thutil.flatgrad((klgrad_P * self.v_P).sum(), self.param_vars)
        self.gnvp_P = thutil.gauss_newton_vector_product(self.kl, self.raw_B_R, self.param_vars,
                                                         self.v_P)
        self.bclone_loss = -logprobs_B.mean()
        self.activations = [normalized_B_Df] + self.net_activations + [self.raw_B_R]

    # subclasses: distribution maths
    def _make_raw_ops(self, obsfeat_B_Df):
        """Build the network (creating its variables); return its output raw_B_R."""
        raise NotImplementedError

    def _actiondist_from_raw(self, raw_B_R):
        """Parameter-free map from the network output to actiondist_B_Pa."""
        raise NotImplementedError

    def _make_actiondist_logprob_ops(self, actiondist_B_Pa, a_B_Da):
        raise NotImplementedError

    def _make_actiondist_kl_ops(self, proposal_actiondist_B_Pa, actiondist_B_Pa):
        raise NotImplementedError

    def _sample_from_actiondist(self, actiondist_B_Pa, deterministic, rng):
        raise NotImplementedError

    def _compute_actiondist_entropy(self, actiondist_B_Pa):
        raise NotImplementedError

    # compiled graphs
    @thutil.sampling_function
    def _compute_actiondist_params(self):
        return [self.obsfeat_B_Df], self.actiondist_B_Pa

    @thutil.lazy_function
    def _compute_action_logprobs(self):
        return [self.obsfeat_B_Df, self.a_B_Da], self.logprobs_B

    @thutil.lazy_function
    def compute_obj_and_kl(self):
        return ([self.obsfeat_B_Df, self.a_B_Da, self.proposal_actiondist_B_Pa,
                 self.advantage_B], [self.obj, self.kl])

    @thutil.lazy_function
    def compute_obj_and_grad(self):
        return ([self.obsfeat_B_Df, self.a_B_Da, self.proposal_actiondist_B_Pa,
                 self.advantage_B], [self.obj, self.objgrad_P])

    @thutil.lazy_function
    def compute_obj_kl_and_grad(self):
        return ([self.obsfeat_B_Df, self.a_B_Da, self.proposal_actiondist_B_Pa,
                 self.advantage_B], [self.obj, self.kl, self.objgrad_P])

    @thutil.lazy_function
    def compute_hvp(self):
        return [self.obsfeat_B_Df, self.proposal_actiondist_B_Pa, self.v_P], self.hvp_P

    @thutil.lazy_function
    def compute_gnvp(self):
        return [self.obsfeat_B_Df, self.proposal_actiondist_B_Pa, self.v_P], self.gnvp_P

    @thutil.lazy_function
    def compute_activations(self):
        return [self.obsfeat_B_Df], self.activations

    @thutil.lazy_function
    def compute_gnvp_from_activations(self):
        cached, (gnvp_P,) = thutil.cut_forward([self.gnvp_P], self.activations)
        return cached + [self.proposal_actiondist_B_Pa, self.v_P], gnvp_P

    @thutil.lazy_function
    def compute_bclone_loss(self):
        return [self.obsfeat_B_Df, self.a_B_Da], self.bclone_loss

    def bclone_step_function(self, lr):
        """Compiled Adam step on the behavioural-cloning loss (returns the loss before it)."""
        key = ("_bclone_step", lr)
        if key not in self.__dict__:
            self._bclone_updates = thutil.adam(self.bclone_loss, self.param_vars, lr=lr)
            self.__dict__[key] = thutil.function([self.obsfeat_B_Df, self.a_B_Da],
                                                 self.bclone_loss, updates=self._bclone_updates)
        return self.__dict__[key]

    def bclone_adam_state_vars(self):
        updates = getattr(self, "_bclone_updates", None)
        return thutil.adam_state_vars(updates) if updates else []

    # numeric API
    def compute_actiondist_params(self, obsfeat_B_Df):
        return self._compute_actiondist_params(np.asarray(obsfeat_B_Df, dtype=floatX))

    def sample_actions(self, obsfeat_B_Df, rng, deterministic=False):
        """(actions_B_Da, actiondist_B_Pa) for a batch of observation features."""
        actiondist_B_Pa = self.compute_actiondist_params(obsfeat_B_Df)
        return self._sample_from_actiondist(actiondist_B_Pa, deterministic, rng), actiondist_B_Pa

    def compute_action_logprobs(self, obsfeat_B_Df, a_B_Da):
        return self._compute_action_logprobs(np.asarray(obsfeat_B_Df, dtype=floatX),
                                             self.cast_actions(a_B_Da))

    def compute_entropy(self, actiondist_B_Pa):
        return self._compute_actiondist_entropy(actiondist_B_Pa)

    def update_obsnorm(self, obs_B_Do):
        self.obsnorm.update(obs_B_Do)

    def cast_actions(self, a_B_Da):
        a = np.asarray(a_B_Da)
        return a.astype(np.int64 if isinstance(self.action_space, FiniteSpace) else floatX)


class GaussianPolicy(Policy):
    """Diagonal Gaussian: mean from the network, log standard deviations a free parameter
    `logstdevs_1_Da` (init 0); stdev = min_stdev + exp(logstdev).
    actiondist_B_Pa = [means_B_Da, stdevs_B_Da]."""

    def __init__(self, hidden_spec, obsfeat_space, action_space, min_stdev=0., init_logstdev=0.,
                 enable_obsnorm=True, varscope_name="GaussianPolicy"):
        if not isinstance(action_space, ContinuousSpace):
            raise TypeError("GaussianPolicy needs a continuous action space")
        self.hidden_spec, self.min_stdev = hidden_spec, min_stdev
        self.init_logstdev = init_logstdev
        Da = action_space.storage_size
        super().__init__(obsfeat_space, action_space, 2 * Da, enable_obsnorm, varscope_name)

    def _make_raw_ops(self, obsfeat_B_Df):
        Da = self.action_space.storage_size
        with nn.variable_scope("hidden"):
            net = nn.FeedforwardNet(obsfeat_B_Df, (self.Df,), self.hidden_spec)
        with nn.variable_scope("out"):
            out = nn.AffineLayer(net.output, net.output_shape, (Da,), initializer=0.)
        self.net_activations = [l.output for l in net.layers] + [out.output]
        means_B_Da = out.output
        self.logstdevs_1_Da = nn.get_variable("logstdevs_1_Da",
                                              np.full((1, Da), self.init_logstdev))
        # Broadcast to the batch by arithmetic, not by an Alloc (ones_like / broadcast_to):
        # the derivative of an Alloc builds its shape with SetSubtensor, which JAX cannot trace
        # to a concrete shape, so Hessian-vector products would not compile under JAX.
        logstdevs_B_Da = 0. * means_B_Da + self.logstdevs_1_Da
        return pt.concatenate([means_B_Da, logstdevs_B_Da], axis=1)

    def _actiondist_from_raw(self, raw_B_R):
        means_B_Da, logstdevs_B_Da = self._split(raw_B_R)
        return pt.concatenate([means_B_Da, self.min_stdev + pt.exp(logstdevs_B_Da)], axis=1)

    def _split(self, actiondist_B_Pa):
        Da = self.action_space.storage_size
        return actiondist_B_Pa[:, :Da], actiondist_B_Pa[:, Da:]

    def _make_actiondist_logprob_ops(self, actiondist_B_Pa, a_B_Da):
        means, stdevs = self._split(actiondist_B_Pa)
        return thutil.gaussian_log_density(means, stdevs, a_B_Da)

    def _make_actiondist_kl_ops(self, proposal_actiondist_B_Pa, actiondist_B_Pa):
        return thutil.gaussian_kl(*self._split(proposal_actiondist_B_Pa),
                                  *self._split(actiondist_B_Pa))

    def _sample_from_actiondist(self, actiondist_B_Pa, deterministic, rng):
        means, stdevs = self._split(actiondist_B_Pa)
        if deterministic:
            return means.copy()
        return means + stdevs * rng.standard_normal(means.shape)

    def _compute_actiondist_entropy(self, actiondist_B_Pa):
        return util.gaussian_entropy(self._split(actiondist_B_Pa)[1])


class GibbsPolicy(Policy):
    """Categorical distribution: actiondist_B_Pa = log-softmax of the network's outputs."""

    def __init__(self, hidden_spec, obsfeat_space, action_space, enable_obsnorm=True,
                 varscope_name="GibbsPolicy"):
        if not isinstance(action_space, FiniteSpace):
            raise TypeError("GibbsPolicy needs a finite action space")
        self.hidden_spec = hidden_spec
        super().__init__(obsfeat_space, action_space, action_space.size, enable_obsnorm,
                         varscope_name)

    def _make_raw_ops(self, obsfeat_B_Df):
        with nn.variable_scope("hidden"):
            net = nn.FeedforwardNet(obsfeat_B_Df, (self.Df,), self.hidden_spec)
        with nn.variable_scope("out"):
            out = nn.AffineLayer(net.output, net.output_shape, (self.action_space.size,),
                                 initializer=0.)
        self.net_activations = [l.output for l in net.layers]
        return out.output  # scores

    def _actiondist_from_raw(self, scores_B_Pa):
        return scores_B_Pa - thutil.logsumexp(scores_B_Pa, axis=1, keepdims=True)

    def _make_actiondist_logprob_ops(self, actiondist_B_Pa, a_B_Da):
        return thutil.select_columns(actiondist_B_Pa, a_B_Da[:, 0], self.action_space.size)

    def _make_actiondist_kl_ops(self, proposal_actiondist_B_Pa, actiondist_B_Pa):
        return thutil.categorical_kl(proposal_actiondist_B_Pa, actiondist_B_Pa)

    def _sample_from_actiondist(self, actiondist_B_Pa, deterministic, rng):
        if deterministic:
            return actiondist_B_Pa.argmax(axis=1)[:, None]
        probs_B_A = np.exp(actiondist_B_Pa)
        cum_B_A = np.cumsum(probs_B_A, axis=1)
        u_B_1 = rng.random((probs_B_A.shape[0], 1)) * cum_B_A[:, -1:]
        return np.minimum((cum_B_A <= u_B_1).sum(axis=1), probs_B_A.shape[1] - 1)[:, None]

    def _compute_actiondist_entropy(self, actiondist_B_Pa):
        return util.categorical_entropy(np.exp(actiondist_B_Pa))


# ------------------------------------------------------------------------- returns and GAE

def compute_qvals(r, discount):
    """Discounted returns-to-go of every trajectory: q_t = sum_{k>=t} discount^(k-t) r_k.
    `r` is a RaggedArray of rewards; returns a RaggedArray."""
    q_B_T = util.discount(r.padded(fill=0.), discount)
    return RaggedArray.from_padded(q_B_T, r.lengths)


def compute_advantage(r, obsfeat, time, value_func, discount, lam):
    """GAE(discount, lam) advantages with the value after each trajectory's last step taken as 0.

    delta_t = r_t + discount * V(s_{t+1}) - V(s_t);  A_t = sum_k (discount*lam)^k delta_{t+k}.
    Returns (advantages, qvals, vf_r2, tbase_r2): R^2 of the value function and of a time-only
    baseline (the mean return-to-go at each time step) against the Q values.
    """
    q = compute_qvals(r, discount)
    lengths = r.lengths
    if value_func is None:
        v_stacked = np.zeros_like(q.stacked)
    else:
        v_stacked = value_func.evaluate(obsfeat.stacked, time.stacked)
    v = RaggedArray(stacked=v_stacked, lengths=lengths)
    r_B_T, v_B_T = r.padded(fill=0.), v.padded(fill=0.)
    vnext_B_T = np.zeros_like(v_B_T)
    vnext_B_T[:, :-1] = v_B_T[:, 1:]  # padding beyond the end is 0: V after the last step = 0
    delta_B_T = r_B_T + discount * vnext_B_T - v_B_T
    mask_B_T = np.arange(r_B_T.shape[1])[None, :] < lengths[:, None]
    adv_B_T = util.discount(np.where(mask_B_T, delta_B_T, 0.), discount * lam)
    adv = RaggedArray.from_padded(adv_B_T, lengths)

    q_B_T = q.padded(fill=0.)
    alive_T = mask_B_T.sum(axis=0)
    tbase_T = (q_B_T * mask_B_T).sum(axis=0) / np.maximum(alive_T, 1)
    tbase_stacked = tbase_T[time.stacked.astype(np.int64)]
    vf_r2 = util.explained_variance(v_stacked, q.stacked)
    tbase_r2 = util.explained_variance(tbase_stacked, q.stacked)
    return adv, q, vf_r2, tbase_r2


# ---------------------------------------------------------------------------- value function

class ValueFunc(nn.Model):
    """V(s, t): network on [standardized obs, t * time_scale], output in the units of a target
    standardizer (vnorm). Fitted by a natural-gradient step with obj = -mean (v - target)^2 and
    "KL" = mean (v_old - v)^2 (both in standardized units)."""

    def __init__(self, hidden_spec, obsfeat_space, enable_obsnorm, enable_vnorm, max_kl, damping,
                 time_scale, varscope_name="ValueFunc", hvp_mode="gauss_newton"):
        self.Df = obsfeat_space.storage_size
        self.hvp_mode = check_hvp_mode(hvp_mode)
        self.max_kl, self.damping, self.time_scale = max_kl, damping, time_scale
        self.update_obsnorm_on_fit = enable_obsnorm
        with self.building(varscope_name):
            self.obsfeat_B_Df = pt.matrix("obsfeat_B_Df", shape=(None, self.Df))
            self.t_B = pt.vector("t_B")
            with nn.variable_scope("obsnorm"):
                self.obsnorm = (nn.Standardizer(self.Df) if enable_obsnorm
                                else nn.NoOpStandardizer(self.Df))
            with nn.variable_scope("vnorm"):
                self.vnorm = nn.Standardizer(1) if enable_vnorm else nn.NoOpStandardizer(1)
            net_input = pt.concatenate([self.obsnorm.standardize_expr(self.obsfeat_B_Df),
                                        (self.t_B * time_scale)[:, None]], axis=1)
            with nn.variable_scope("hidden"):
                net = nn.FeedforwardNet(net_input, (self.Df + 1,), hidden_spec)
            with nn.variable_scope("out"):
                out = nn.AffineLayer(net.output, net.output_shape, (1,), initializer=0.)
        self.val_B = out.output[:, 0]
        self.activations = [net_input] + [l.output for l in net.layers] + [self.val_B]
        self.param_vars = self.get_trainable_variables()
        self.P = self.get_num_params()
        self.target_val_B = pt.vector("target_val_B")
        self.old_val_B = pt.vector("old_val_B")
        self.v_P = pt.vector("v_P", shape=(self.P,))
        self.obj = -pt.sqr(self.val_B - self.target_val_B).mean()
        self.objgrad_P = thutil.flatgrad(self.obj, self.param_vars)
        self.kl = pt.sqr(self.old_val_B - self.val_B).mean()
        klgrad_P = thutil.flatgrad(self.kl, self.param_vars)
        self.hvp_P = thutil.flatgrad((klgrad_P * self.v_P).sum(), self.param_vars)
        self.gnvp_P = thutil.gauss_newton_vector_product(self.kl, self.val_B, self.param_vars,
                                                         self.v_P)
        self._ngstep = optim.make_ngstep_func(self, max_kl, damping, self.hvp_mode)

    @thutil.lazy_function
    def _evaluate_raw(self):
        return [self.obsfeat_B_Df, self.t_B], self.val_B

    @thutil.lazy_function
    def compute_obj_and_kl(self):
        return ([self.obsfeat_B_Df, self.t_B, self.target_val_B, self.old_val_B],
                [self.obj, self.kl])

    @thutil.lazy_function
    def compute_val_obj_and_grad(self):
        # at x0 the old values are the current ones (and the "KL" is 0): one forward pass
        return [self.obsfeat_B_Df, self.t_B, self.target_val_B], [self.val_B, self.obj,
                                                                  self.objgrad_P]

    @thutil.lazy_function
    def compute_hvp(self):
        return [self.obsfeat_B_Df, self.t_B, self.old_val_B, self.v_P], self.hvp_P

    @thutil.lazy_function
    def compute_gnvp(self):
        return [self.obsfeat_B_Df, self.t_B, self.old_val_B, self.v_P], self.gnvp_P

    @thutil.lazy_function
    def compute_activations(self):
        return [self.obsfeat_B_Df, self.t_B], self.activations

    @thutil.lazy_function
    def compute_gnvp_from_activations(self):
        cached, (gnvp_P,) = thutil.cut_forward([self.gnvp_P], self.activations)
        return cached + [self.old_val_B, self.v_P], gnvp_P

    def evaluate(self, obsfeat_B_Df, t_B):
        """V for a batch, in the units of the targets."""
        raw_B = self._evaluate_raw(np.asarray(obsfeat_B_Df, dtype=floatX),
                                   np.asarray(t_B, dtype=floatX))
        return self.vnorm.unstandardize(raw_B[:, None])[:, 0]

    def fit(self, obsfeat_B_Df, t_B, y_B, rng, hvp_subsample=0.1):
        """One natural-gradient step towards the targets y_B. Returns the NGStepInfo."""
        obsfeat_B_Df = np.asarray(obsfeat_B_Df, dtype=floatX)
        t_B = np.asarray(t_B, dtype=floatX)
        if self.update_obsnorm_on_fit:
            self.obsnorm.update(obsfeat_B_Df)
        self.vnorm.update(np.asarray(y_B, dtype=floatX)[:, None])
        ynorm_B = self.vnorm.standardize(np.asarray(y_B)[:, None])[:, 0]
        old_val_B, obj0, grad_P = self.compute_val_obj_and_grad(obsfeat_B_Df, t_B, ynorm_B)
        sub = subsample_indices(len(t_B), hvp_subsample, rng)
        return self._ngstep((obsfeat_B_Df, t_B, ynorm_B, old_val_B), (obj0, 0.), grad_P,
                            (obsfeat_B_Df[sub], t_B[sub]), (old_val_B[sub],))


def subsample_indices(n, frac, rng):
    """Sorted random subset of range(n) of size max(1, round(frac*n)) (all when frac >= 1)."""
    if frac >= 1. or n <= 1:
        return np.arange(n)
    k = max(1, int(round(frac * n)))
    return np.sort(rng.choice(n, size=k, replace=False))


# -------------------------------------------------------------------------------------- TRPO

class TRPO:
    """Trust-region policy step: standardize advantages, then one natural-gradient step on the
    surrogate objective under mean KL(old || new) <= max_kl, with Hessian-vector products on a
    random `hvp_subsample` fraction of the batch (see check_hvp_mode for `hvp_mode`)."""

    def __init__(self, max_kl, damping, hvp_subsample=0.1, hvp_mode="gauss_newton"):
        self.max_kl, self.damping, self.hvp_subsample = max_kl, damping, hvp_subsample
        self.hvp_mode = check_hvp_mode(hvp_mode)

    def __call__(self, policy, obsfeat_B_Df, a_B_Da, adist_B_Pa, adv_B, rng):
        obsfeat_B_Df = np.asarray(obsfeat_B_Df, dtype=floatX)
        a_B_Da = policy.cast_actions(a_B_Da)
        adist_B_Pa = np.asarray(adist_B_Pa, dtype=floatX)
        adv_B = np.asarray(adv_B, dtype=floatX)
        adv_B = (adv_B - adv_B.mean()) / (adv_B.std() + 1e-8)
        obj0, kl0, grad_P = policy.compute_obj_kl_and_grad(obsfeat_B_Df, a_B_Da, adist_B_Pa,
                                                           adv_B)
        sub = subsample_indices(len(adv_B), self.hvp_subsample, rng)
        step = optim.make_ngstep_func(policy, self.max_kl, self.damping, self.hvp_mode)
        return step((obsfeat_B_Df, a_B_Da, adist_B_Pa, adv_B), (obj0, kl0), grad_P,
                    (obsfeat_B_Df[sub],), (adist_B_Pa[sub],))


def check_finite(model, what, iteration):
    """Raise DivergedError when a model's variables hold NaN/inf (the last snapshot, written
    before this iteration, stays the last good one)."""
    for v in model.get_variables():
        if not np.all(np.isfinite(v.get_value(borrow=True))):
            kept = ("the last snapshot in the log is the last good state" if iteration > 0
                    else "nothing was saved")
            raise optim.DivergedError(f"the {what}'s {v.name} became NaN/inf at iteration "
                                      f"{iteration}; {kept}")


def warn_nonfinite(info, what, iteration):
    """One stderr line when a natural-gradient step's candidates were NaN/inf (rejected: the
    parameters stay as they were)."""
    if info is not None and info.nonfinite:
        import sys

        print(f"warning: iteration {iteration}: {info.nonfinite} {what} step candidate(s) had "
              f"NaN/inf values and were rejected", file=sys.stderr, flush=True)


def ngstep_log_fields(info, prefix=""):
    """The log columns of one natural-gradient step: dl, kl, gnorm, bt (and dx for policies)."""
    fields = [(prefix + "dl", info.dl), (prefix + "kl", info.kl1), (prefix + "gnorm", info.gnorm),
              (prefix + "bt", int(info.bt))]
    return fields if prefix else [("dx", info.dx)] + fields


# ------------------------------------------------------------------------ sampling optimizer

class SamplingPolicyOptimizer:
    """One RL iteration: sample with the current policy, GAE advantages with the value
    function, a policy step (TRPO), update the policy's observation standardizer, fit the value
    function to the Q values. `step()` returns the iteration's log fields."""

    def __init__(self, mdp, discount, lam, policy, sim_cfg, step_func, value_func, rng,
                 obsfeat_fn=None):
        self.mdp, self.discount, self.lam, self.policy = mdp, discount, lam, policy
        self.sim_cfg, self.step_func, self.value_func = sim_cfg, step_func, value_func
        self.obsfeat_fn, self.rng = obsfeat_fn, rng
        self.total_num_sa = 0
        self.total_time = 0.
        self.curr_iter = 0

    def step(self):
        with util.Timer() as t_all:
            with util.Timer() as t_sample:
                batch = self.mdp.sim_mp(self.policy, self.obsfeat_fn, self.sim_cfg, self.rng)
            with util.Timer() as t_adv:
                adv, q, vf_r2, tbase_r2 = compute_advantage(batch.r, batch.obsfeat, batch.time,
                                                            self.value_func, self.discount,
                                                            self.lam)
            with util.Timer() as t_step:
                info = self.step_func(self.policy, batch.obsfeat.stacked, batch.a.stacked,
                                      batch.adist.stacked, adv.stacked, self.rng)
                self.policy.update_obsnorm(batch.obsfeat.stacked)
            with util.Timer() as t_vf:
                vf_info = None
                if self.value_func is not None:
                    vf_info = self.value_func.fit(batch.obsfeat.stacked, batch.time.stacked,
                                                  q.stacked, self.rng)
        warn_nonfinite(info, "policy", self.curr_iter)
        warn_nonfinite(vf_info, "value function", self.curr_iter)
        check_finite(self.policy, "policy", self.curr_iter)
        if self.value_func is not None:
            check_finite(self.value_func, "value function", self.curr_iter)
        self.total_num_sa += batch.num_sa
        self.total_time += t_all.dt
        fields = [("iter", self.curr_iter), ("ret", float(batch.returns.mean())),
                  ("avglen", int(round(batch.obs.lengths.mean()))), ("nsa", batch.num_sa),
                  ("ent", float(self.policy.compute_entropy(batch.adist.stacked).mean())),
                  ("vf_r2", vf_r2), ("tbase_r2", tbase_r2)]
        fields += ngstep_log_fields(info)
        if vf_info is not None:
            fields += ngstep_log_fields(vf_info, prefix="vf_")
        fields += [("tsamp", t_sample.dt), ("tadv", t_adv.dt), ("tstep", t_step.dt),
                   ("tvf", t_vf.dt), ("ttotal", t_all.dt)]
        self.curr_iter += 1
        return fields
