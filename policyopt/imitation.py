"""Imitation learning: the GAIL discriminator, the apprenticeship-learning rewards,
behavioural cloning, and the GAIL iteration (Ho & Ermon 2016, Algorithm 1).

GAIL alternates a TRPO step on the policy, whose reward is -log(1 - D(s, a)), with an Adam step
on the discriminator D, a classifier of expert (label 1) versus policy (label 0) state-action
pairs.
"""
import numpy as np
import pytensor.tensor as pt

from policyopt import FiniteSpace, RaggedArray, nn, rl, thutil, util
from policyopt.thutil import floatX

# ---------------------------------------------------------------- discriminator (GAIL reward)

class TransitionClassifier(nn.Model):
    """D(s, a) = sigmoid(score(s, a)).

    Continuous actions: standardized [obs, a] (+ t * time_scale) -> network -> one score.
    Discrete actions: standardized obs (+ t * time_scale) -> network -> one score per action;
    the taken action's score is used.

    Loss (expert label 1, policy label 0), one Adam step per `adam_steps`:
        sum_i w_i * (BCE(score_i, label_i) - ent_reg_weight * H_bernoulli(score_i)),
    with w_i = 1/B for the policy batch and 1/B_ex for the expert batch.
    Reward for the policy: -log(1 - sigmoid(score)) (>= 0), or with favor_zero_expert_reward
    log(sigmoid(score)) (<= 0), for tasks that end early on success.
    The input standardizer (when enabled) is updated with every fit's data (policy batch plus
    expert subsample); the 'expertdata' mode merely starts it from the expert statistics.
    """

    def __init__(self, hidden_spec, obsfeat_space, action_space, adam_lr=0.01, adam_steps=1,
                 ent_reg_weight=1e-3, enable_inputnorm=True, include_time=False, time_scale=1.,
                 favor_zero_expert_reward=False, varscope_name="TransitionClassifier"):
        self.obsfeat_space, self.action_space = obsfeat_space, action_space
        self.update_inputnorm_on_fit = enable_inputnorm
        self.discrete = isinstance(action_space, FiniteSpace)
        self.Df, self.Da = obsfeat_space.storage_size, action_space.storage_size
        self.adam_steps, self.ent_reg_weight = adam_steps, ent_reg_weight
        self.include_time, self.time_scale = include_time, time_scale
        self.favor_zero_expert_reward = favor_zero_expert_reward
        with self.building(varscope_name):
            self.obsfeat_B_Df = pt.matrix("obsfeat_B_Df", shape=(None, self.Df))
            a_dtype = "int64" if self.discrete else floatX
            self.a_B_Da = pt.matrix("a_B_Da", dtype=a_dtype, shape=(None, self.Da))
            self.t_B = pt.vector("t_B")
            Din = self.Df if self.discrete else self.Df + self.Da
            with nn.variable_scope("inputnorm"):
                self.inputnorm = (nn.Standardizer(Din) if enable_inputnorm
                                  else nn.NoOpStandardizer(Din))
            x_B_Di = self.obsfeat_B_Df if self.discrete else pt.concatenate(
                [self.obsfeat_B_Df, self.a_B_Da], axis=1)
            x_B_Di = self.inputnorm.standardize_expr(x_B_Di)
            if include_time:
                x_B_Di = pt.concatenate([x_B_Di, (self.t_B * time_scale)[:, None]], axis=1)
                Din += 1
            with nn.variable_scope("hidden"):
                net = nn.FeedforwardNet(x_B_Di, (Din,), hidden_spec)
            with nn.variable_scope("out"):
                n_out = action_space.size if self.discrete else 1
                out = nn.AffineLayer(net.output, net.output_shape, (n_out,), initializer=0.)
        if self.discrete:
            self.scores_B = thutil.select_columns(out.output, self.a_B_Da[:, 0], n_out)
        else:
            self.scores_B = out.output[:, 0]
        self.param_vars = self.get_trainable_variables()

        self.labels_B = pt.vector("labels_B")
        self.weights_B = pt.vector("weights_B")
        losses_B = thutil.sigmoid_cross_entropy_with_logits(self.scores_B, self.labels_B)
        ent_B = thutil.logit_bernoulli_entropy(self.scores_B)
        self.loss = ((losses_B - ent_reg_weight * ent_B) * self.weights_B).sum()
        if favor_zero_expert_reward:
            self.rewards_B = thutil.logsigmoid(self.scores_B)
        else:
            self.rewards_B = -thutil.logsigmoid(-self.scores_B)  # -log(1 - sigmoid(score))
        self.adam_updates = thutil.adam(self.loss, self.param_vars, lr=adam_lr)

    def _inputs(self):
        return [self.obsfeat_B_Df, self.a_B_Da, self.t_B]

    @thutil.lazy_function
    def _compute_scores(self):
        return self._inputs(), self.scores_B

    @thutil.lazy_function
    def _compute_reward(self):
        return self._inputs(), self.rewards_B

    @thutil.lazy_function
    def _adamstep(self):
        return self._inputs() + [self.labels_B, self.weights_B], self.loss, self.adam_updates

    @thutil.lazy_function
    def _compute_loss(self):
        return self._inputs() + [self.labels_B, self.weights_B], self.loss

    @thutil.lazy_function
    def _compute_loss_scores_and_rewards(self):
        return self._inputs() + [self.labels_B, self.weights_B], [self.loss, self.scores_B,
                                                                  self.rewards_B]

    def adam_state_vars(self):
        return thutil.adam_state_vars(self.adam_updates)

    def _cast(self, obsfeat_B_Df, a_B_Da, t_B):
        a = np.asarray(a_B_Da).astype(np.int64 if self.discrete else floatX)
        return (np.asarray(obsfeat_B_Df, dtype=floatX), a.reshape(len(a), self.Da),
                np.asarray(t_B, dtype=floatX))

    def update_inputnorm(self, obsfeat_B_Df, a_B_Da):
        x = obsfeat_B_Df if self.discrete else np.concatenate(
            [obsfeat_B_Df, np.asarray(a_B_Da, dtype=floatX)], axis=1)
        self.inputnorm.update(x)

    def compute_scores(self, obsfeat_B_Df, a_B_Da, t_B):
        return self._compute_scores(*self._cast(obsfeat_B_Df, a_B_Da, t_B))

    def compute_reward(self, obsfeat_B_Df, a_B_Da, t_B):
        return self._compute_reward(*self._cast(obsfeat_B_Df, a_B_Da, t_B))

    def fit(self, obsfeat_B_Df, a_B_Da, t_B, exobs_Bex_Do, exa_Bex_Da, ext_Bex, rng):
        """`adam_steps` Adam updates: the policy batch against an equally sized random
        subsample of the expert pairs. Returns (log fields (rloss, racc, raccpi, raccex),
        rewards_B): rewards_B is compute_reward() of the policy batch under the parameters and
        input standardizer the fit leaves, which the value step needs; it comes out of the
        fit's final forward pass at no extra cost.

        The subsample is drawn with replacement when the expert has fewer pairs than the batch
        (typically 50,000 draws from a few hundred pairs); each distinct expert pair then enters
        the graph once, weighted by its count / B — the same loss and gradient as the repeated
        rows, at a fraction of the cost.
        """
        B = len(obsfeat_B_Df)
        N_ex = len(exobs_Bex_Do)
        ex_idx = rng.choice(N_ex, size=B, replace=B > N_ex)
        a_pi = np.asarray(a_B_Da).reshape(B, -1)
        exa = np.asarray(exa_Bex_Da).reshape(N_ex, -1)
        if self.update_inputnorm_on_fit:
            self.update_inputnorm(np.concatenate([obsfeat_B_Df, exobs_Bex_Do[ex_idx]]),
                                  np.concatenate([a_pi, exa[ex_idx]]))
        uniq, counts = np.unique(ex_idx, return_counts=True)
        U = len(uniq)
        obs = np.concatenate([obsfeat_B_Df, exobs_Bex_Do[uniq]], axis=0)
        a = np.concatenate([a_pi, exa[uniq]], axis=0)
        t = np.concatenate([t_B, ext_Bex[uniq]])
        labels = np.concatenate([np.zeros(B), np.ones(U)])
        weights = np.concatenate([np.full(B, 1. / B), counts / B])
        inputs = self._cast(obs, a, t)
        for _ in range(self.adam_steps):
            self._adamstep(*inputs, labels, weights)
        loss, scores, rewards = self._compute_loss_scores_and_rewards(*inputs, labels, weights)
        accpi = float(np.mean(scores[:B] < 0))
        accex = float(np.sum(counts * (scores[B:] > 0)) / B)
        return [("rloss", loss), ("racc", 0.5 * (accpi + accex)), ("raccpi", accpi),
                ("raccex", accex)], rewards[:B]


# ------------------------------------------------------------ apprenticeship-learning rewards

class LinearReward(nn.Model):
    """Linear reward w . phi(s, a) for the apprenticeship-learning baselines.

    Features of standardized (obs, a): [o, a, (0.01 o)^2, (0.01 a)^2, (t, t^2, t^3 when time
    is included), 1]; for discrete actions the obs features sit in the taken action's block.
    `l2ball` (feature expectation matching): w = (mu_E - mu_pi) / ||mu_E - mu_pi||.
    `simplex` (game-theoretic AL): features extended with their negatives; w picks the single
    feature with the largest expert-minus-policy gap.
    Rewards are shifted by a running bound so that they stay >= 0 (<= 0 with
    favor_zero_expert_reward).
    """

    def __init__(self, obsfeat_space, action_space, mode, enable_inputnorm=True,
                 favor_zero_expert_reward=False, include_time=False, time_scale=1.,
                 varscope_name="LinearReward"):
        if mode not in ("l2ball", "simplex"):
            raise ValueError(f"unknown LinearReward mode {mode!r}")
        self.mode = mode
        self.update_inputnorm_on_fit = enable_inputnorm
        self.obsfeat_space, self.action_space = obsfeat_space, action_space
        self.discrete = isinstance(action_space, FiniteSpace)
        self.Df, self.Da = obsfeat_space.storage_size, action_space.storage_size
        self.favor_zero_expert_reward = favor_zero_expert_reward
        self.include_time, self.time_scale = include_time, time_scale
        Din = self.Df if self.discrete else self.Df + self.Da
        with self.building(varscope_name):
            with nn.variable_scope("inputnorm"):
                self.inputnorm = (nn.Standardizer(Din) if enable_inputnorm
                                  else nn.NoOpStandardizer(Din))
            n_feat = self.features(np.zeros((1, self.Df)), np.zeros((1, self.Da)),
                                   np.zeros(1)).shape[1]
            n_w = 2 * n_feat if mode == "simplex" else n_feat
            self.w = nn.get_variable("w", np.zeros(n_w), trainable=False)
            # running bound on the rewards under the current w; bound_valid = 0: none yet
            self.bound = nn.get_variable("bound", np.array(0.), trainable=False)
            self.bound_valid = nn.get_variable("bound_valid", np.array(0.), trainable=False)

    def update_inputnorm(self, obsfeat_B_Df, a_B_Da):
        x = obsfeat_B_Df if self.discrete else np.concatenate(
            [obsfeat_B_Df, np.asarray(a_B_Da, dtype=floatX)], axis=1)
        self.inputnorm.update(x)

    def features(self, obsfeat_B_Df, a_B_Da, t_B):
        B = len(obsfeat_B_Df)
        obsfeat_B_Df = np.asarray(obsfeat_B_Df, dtype=floatX)
        parts = []
        if self.discrete:
            z_B_Df = self.inputnorm.standardize(obsfeat_B_Df)
            base_B_F = np.concatenate([z_B_Df, np.square(0.01 * z_B_Df)], axis=1)
            a_B = np.asarray(a_B_Da).reshape(B, -1)[:, 0].astype(np.int64)
            blocks = np.zeros((B, self.action_space.size, base_B_F.shape[1]))
            blocks[np.arange(B), a_B] = base_B_F
            parts.append(blocks.reshape(B, -1))
        else:
            z = self.inputnorm.standardize(np.concatenate(
                [obsfeat_B_Df, np.asarray(a_B_Da, dtype=floatX)], axis=1))
            zo, za = z[:, :self.Df], z[:, self.Df:]
            parts += [zo, za, np.square(0.01 * zo), np.square(0.01 * za)]
        if self.include_time:
            ts = np.asarray(t_B, dtype=floatX)[:, None] * self.time_scale
            parts += [ts, ts ** 2, ts ** 3]
        parts.append(np.ones((B, 1)))
        return np.concatenate(parts, axis=1)

    def _raw_reward(self, obsfeat_B_Df, a_B_Da, t_B):
        phi = self.features(obsfeat_B_Df, a_B_Da, t_B)
        if self.mode == "simplex":
            phi = np.concatenate([phi, -phi], axis=1)
        return phi @ self.w.get_value()

    def compute_reward(self, obsfeat_B_Df, a_B_Da, t_B):
        r_B = self._raw_reward(obsfeat_B_Df, a_B_Da, t_B)
        if len(r_B) == 0:
            return r_B
        extreme = r_B.max() if self.favor_zero_expert_reward else r_B.min()
        if self.bound_valid.get_value():
            old = float(self.bound.get_value())
            bound = max(old, extreme) if self.favor_zero_expert_reward else min(old, extreme)
        else:
            bound = extreme
        self.bound.set_value(np.array(bound))
        self.bound_valid.set_value(np.array(1.))
        return r_B - bound

    def fit(self, obsfeat_B_Df, a_B_Da, t_B, exobs_Bex_Do, exa_Bex_Da, ext_Bex, rng=None):
        """Set w from the expert and policy feature expectations. Returns (log fields, rewards_B):
        rloss is the expert-minus-policy margin w . (mu_E - mu_pi) under the new w; rewards_B
        is compute_reward() of the policy batch under the new w and running bound."""
        if self.update_inputnorm_on_fit:
            self.update_inputnorm(np.concatenate([obsfeat_B_Df, exobs_Bex_Do]),
                                  np.concatenate([np.asarray(a_B_Da).reshape(len(obsfeat_B_Df),
                                                                             -1),
                                                  np.asarray(exa_Bex_Da).reshape(len(exobs_Bex_Do),
                                                                                 -1)]))
        mu_pi = self.features(obsfeat_B_Df, a_B_Da, t_B).mean(axis=0)
        mu_ex = self.features(exobs_Bex_Do, exa_Bex_Da, ext_Bex).mean(axis=0)
        gap = mu_ex - mu_pi
        if self.mode == "l2ball":
            norm = np.linalg.norm(gap)
            w = gap / norm if norm > 0 else np.zeros_like(gap)
        else:
            ext = np.concatenate([gap, -gap])
            w = np.zeros_like(ext)
            w[int(np.argmax(ext))] = 1.
        self.w.set_value(w)
        self.bound_valid.set_value(np.array(0.))
        # Start the running bound from both data sets so expert pairs also respect the sign.
        self.compute_reward(exobs_Bex_Do, exa_Bex_Da, ext_Bex)
        rewards_B = self.compute_reward(obsfeat_B_Df, a_B_Da, t_B)
        margin = float(w @ (np.concatenate([gap, -gap]) if self.mode == "simplex" else gap))
        return [("rloss", margin), ("racc", np.nan), ("raccpi", np.nan),
                ("raccex", np.nan)], rewards_B


# ---------------------------------------------------------------------- behavioural cloning

class BehavioralCloningOptimizer:
    """Supervised learning of the policy on expert pairs: 70/30 train/validation split,
    Adam (lr 1e-3) on -mean log pi(a|s) over minibatches of 128 pairs drawn with replacement
    (as the original, also when fewer than 128 training pairs exist). Every `eval_freq` steps:
    validation loss, validation accuracy (as the original: -NLL for discrete actions, -squared
    error of the mean action for continuous ones), and rollouts for the true return."""

    def __init__(self, mdp, policy, lr, batch_size, obsfeat_fn, ex_obs, ex_a, eval_sim_cfg,
                 eval_freq, train_frac, rng):
        self.mdp, self.policy, self.batch_size = mdp, policy, batch_size
        self.obsfeat_fn, self.eval_sim_cfg, self.eval_freq = obsfeat_fn, eval_sim_cfg, eval_freq
        self.rng = rng
        feats = ex_obs if obsfeat_fn is None else obsfeat_fn(ex_obs)
        n = len(feats)
        perm = rng.permutation(n)
        n_train = max(1, min(n - 1, int(round(train_frac * n)))) if n > 1 else n
        self.train_obs, self.train_a = feats[perm[:n_train]], ex_a[perm[:n_train]]
        self.val_obs, self.val_a = feats[perm[n_train:]], ex_a[perm[n_train:]]
        self.step_fn = policy.bclone_step_function(lr)
        self.total_steps = 0

    def step(self):
        """One Adam step on a random minibatch; returns the minibatch loss."""
        n = len(self.train_obs)
        # With replacement, as the original (np.random.choice(n, size=128)): on a small
        # dataset every minibatch is a different resample, not the whole training set, which
        # overfits noisy labels sooner.
        idx = self.rng.choice(n, size=self.batch_size, replace=True)
        loss = self.step_fn(np.asarray(self.train_obs[idx], dtype=floatX),
                            self.policy.cast_actions(self.train_a[idx]))
        self.total_steps += 1
        return loss

    def validation(self):
        """(validation loss, validation accuracy) on the held-out pairs, with the original's
        accuracy: discrete actions -(validation NLL); continuous actions minus the mean over
        pairs of sum_d (mean action - expert action)^2. The pipeline evaluates the snapshot
        where it is highest."""
        if len(self.val_obs) == 0:
            return np.nan, np.nan
        loss = self.policy.compute_bclone_loss(np.asarray(self.val_obs, dtype=floatX),
                                                self.policy.cast_actions(self.val_a))
        if isinstance(self.policy.action_space, FiniteSpace):
            acc = -float(loss)
        else:
            Da = self.policy.action_space.dim
            means_B_Da = self.policy.compute_actiondist_params(self.val_obs)[:, :Da]
            acc = -float(np.mean(np.sum(np.square(means_B_Da - self.val_a), axis=1)))
        return loss, acc

    def evaluate(self, deterministic=True):
        """Log fields at an evaluation point: losses, accuracy, rollouts' true return."""
        valloss, valacc = self.validation()
        trainloss = self.policy.compute_bclone_loss(
            np.asarray(self.train_obs, dtype=floatX), self.policy.cast_actions(self.train_a))
        with util.Timer() as t_sim:
            batch = self.mdp.sim_mp(self.policy, self.obsfeat_fn, self.eval_sim_cfg, self.rng,
                                    deterministic=deterministic)
        return [("iter", self.total_steps), ("trueret", float(batch.returns.mean())),
                ("trueret_std", float(batch.returns.std())),
                ("avglen", int(round(batch.obs.lengths.mean()))), ("trainloss", trainloss),
                ("valloss", valloss), ("valacc", valacc), ("tsamp", t_sim.dt)]


# ---------------------------------------------------------------------------- the GAIL loop

class ImitationOptimizer:
    """One iteration of GAIL (or of an apprenticeship-learning baseline), in this order:

    1. sample trajectories with the current policy;
    2. rewards from the current reward function (+ policy entropy bonus -policy_ent_reg*logp);
    3. GAE advantages with the value function;
    4. TRPO step on the policy, then update the policy's observation standardizer;
    5. fit the reward (discriminator): policy batch vs expert pairs;
    6. recompute rewards with the updated reward function, recompute Q, fit the value function.
    """

    def __init__(self, mdp, discount, lam, policy, sim_cfg, step_func, reward_func, value_func,
                 policy_obsfeat_fn, reward_obsfeat_fn, policy_ent_reg, ex_obs, ex_a, ex_t, rng):
        self.mdp, self.discount, self.lam, self.policy = mdp, discount, lam, policy
        self.sim_cfg, self.step_func = sim_cfg, step_func
        self.reward_func, self.value_func = reward_func, value_func
        self.policy_obsfeat_fn, self.reward_obsfeat_fn = policy_obsfeat_fn, reward_obsfeat_fn
        self.policy_ent_reg = policy_ent_reg
        self.ex_obs, self.ex_a, self.ex_t = ex_obs, ex_a, ex_t
        self.ex_rfeat = ex_obs if reward_obsfeat_fn is None else reward_obsfeat_fn(ex_obs)
        self.rng = rng
        self.curr_iter = 0

    def _rewards(self, batch, rfeat_N, r_N=None):
        """Rewards of `batch` (r_N: the reward function's part, when it is already known)."""
        if r_N is None:
            r_N = self.reward_func.compute_reward(rfeat_N, batch.a.stacked, batch.time.stacked)
        if self.policy_ent_reg:
            logp_N = self.policy.compute_action_logprobs(batch.obsfeat.stacked, batch.a.stacked)
            r_N = r_N - self.policy_ent_reg * logp_N
        return RaggedArray(stacked=r_N, lengths=batch.obs.lengths)

    def step(self):
        with util.Timer() as t_all:
            with util.Timer() as t_sample:
                batch = self.mdp.sim_mp(self.policy, self.policy_obsfeat_fn, self.sim_cfg,
                                        self.rng)
            rfeat_N = (batch.obs.stacked if self.reward_obsfeat_fn is None
                       else self.reward_obsfeat_fn(batch.obs.stacked))
            with util.Timer() as t_adv:
                rewards = self._rewards(batch, rfeat_N)
                adv, _, vf_r2, tbase_r2 = rl.compute_advantage(
                    rewards, batch.obsfeat, batch.time, self.value_func, self.discount, self.lam)
            with util.Timer() as t_step:
                info = self.step_func(self.policy, batch.obsfeat.stacked, batch.a.stacked,
                                      batch.adist.stacked, adv.stacked, self.rng)
                self.policy.update_obsnorm(batch.obsfeat.stacked)
            with util.Timer() as t_reward:
                reward_fields, fit_r_N = self.reward_func.fit(
                    rfeat_N, batch.a.stacked, batch.time.stacked, self.ex_rfeat, self.ex_a,
                    self.ex_t, self.rng)
            with util.Timer() as t_vf:
                vf_info = None
                if self.value_func is not None:
                    # the reward's fit already scored this batch with its new weights
                    new_rewards = self._rewards(batch, rfeat_N, fit_r_N)
                    q = rl.compute_qvals(new_rewards, self.discount)
                    vf_info = self.value_func.fit(batch.obsfeat.stacked, batch.time.stacked,
                                                  q.stacked, self.rng)
        rl.warn_nonfinite(info, "policy", self.curr_iter)
        rl.warn_nonfinite(vf_info, "value function", self.curr_iter)
        rl.check_finite(self.policy, "policy", self.curr_iter)
        rl.check_finite(self.reward_func, "reward function (discriminator)", self.curr_iter)
        if self.value_func is not None:
            rl.check_finite(self.value_func, "value function", self.curr_iter)
        fields = [("iter", self.curr_iter), ("trueret", float(batch.returns.mean())),
                  ("iret", float(np.bincount(rewards.row_index[0], weights=rewards.stacked,
                                             minlength=len(rewards)).mean())),
                  ("avglen", int(round(batch.obs.lengths.mean()))), ("nsa", batch.num_sa),
                  ("ent", float(self.policy.compute_entropy(batch.adist.stacked).mean())),
                  ("vf_r2", vf_r2), ("tbase_r2", tbase_r2)]
        fields += rl.ngstep_log_fields(info)
        fields += reward_fields
        if vf_info is not None:
            fields += rl.ngstep_log_fields(vf_info, prefix="vf_")
        fields += [("tsamp", t_sample.dt), ("tadv", t_adv.dt), ("tstep", t_step.dt),
                   ("treward", t_reward.dt), ("tvf", t_vf.dt), ("ttotal", t_all.dt)]
        self.curr_iter += 1
        return fields
