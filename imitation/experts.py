"""Expert datasets from expert policies: roll a policy snapshot out in its environment and
write the trajectories in the dataset format (`imitation.data`). Used by
`scripts/sample_expert.py`, the pipeline's 0_sampletrajs phase and the tests."""


def sample_dataset(policy_string, out, num_trajs, env_name=None, obs_adapter=None,
                   max_traj_len=None, deterministic=False, seed=0, num_workers=None,
                   data_subsamp_freq=None, full_length_only=False, verbose=True,
                   env_kwargs=None):
    """Roll out a snapshot and write the dataset; returns the sampled TrajBatch.

    With `full_length_only`, trajectories that end before the time limit are dropped and
    sampling goes on until `num_trajs` full-length ones are kept, in the order sampled.
    """
    import numpy as np

    from imitation.data import command_line, write_dataset
    from imitation.envs import GymMDP
    from imitation.snapshots import check_policy_fits, load_policy_for_env

    given_env = env_name
    policy, key, run_args, env_name = load_policy_for_env(policy_string, env_name)
    if env_kwargs is None and not given_env:
        env_kwargs = run_args.get("env_kwargs")  # the environment the policy trained in
    mdp = GymMDP(env_name, obs_adapter=obs_adapter, max_traj_len=max_traj_len,
                 num_workers=num_workers, env_kwargs=env_kwargs)
    try:
        check_policy_fits(policy, mdp)
        batch, n_dropped = _sample_trajs(mdp, policy, num_trajs, np.random.default_rng(seed),
                                         deterministic, full_length_only, max_traj_len,
                                         "sampling expert trajectories" if verbose else None)
    finally:
        mdp.close()
    rets = batch.returns
    write_dataset(out, batch, {
        "expert_trained_with": policy_file_attr(policy_string, "trained_with"),
        "env_name": env_name, "obs_adapter": mdp.spec.adapter.name if mdp.spec.adapter else None,
        "gym_id": mdp.spec.gym_id, "source_policy": policy_string, "seed": int(seed),
        "env_kwargs": env_kwargs or None,
        "deterministic": int(deterministic), "num_trajs": int(len(batch)),
        "return_mean": float(rets.mean()), "return_std": float(rets.std()),
        "data_subsamp_freq": data_subsamp_freq, "command": command_line(),
        "full_length_only": int(full_length_only), "dropped_trajs": int(n_dropped)})
    if verbose:
        dropped = f" ({n_dropped} shorter ones dropped)" if full_length_only else ""
        print(f"wrote {out}: {len(batch)} trajectories{dropped}, {batch.num_sa} transitions, "
              f"return {rets.mean():.2f} +/- {rets.std():.2f}")
    return batch


# Give up on full-length trajectories when fewer than one in this many reaches the time limit.
MAX_DROP_RATIO = 10


def _sample_trajs(mdp, policy, num_trajs, rng, deterministic, full_length_only, max_traj_len,
                  progress):
    """(TrajBatch of num_trajs trajectories, number of early-ended ones dropped)."""
    from imitation.envs import NO_TIME_LIMIT
    from imitation.errors import UserError
    from policyopt import SimConfig, TrajBatch

    def sample(n):
        return mdp.sim_mp(policy, None, SimConfig(min_num_trajs=n, min_total_sa=-1), rng,
                          deterministic=deterministic, progress=progress)

    if not full_length_only:
        return sample(num_trajs), 0
    horizon = mdp.horizon(max_traj_len)
    if horizon >= NO_TIME_LIMIT:
        raise UserError(f"--full_length_only: {mdp.spec.env_name} has no time limit; "
                        "pass --max_traj_len")
    kept, n_sampled = [], 0
    while len(kept) < num_trajs:
        if n_sampled >= MAX_DROP_RATIO * num_trajs:
            raise UserError(f"--full_length_only: only {len(kept)} of {n_sampled} trajectories "
                            f"reached the time limit of {horizon} steps")
        batch = sample(num_trajs - len(kept))
        n_sampled += len(batch)
        kept += [t for t in batch.trajs if len(t.obs_T_Do) == horizon]
    return TrajBatch.from_trajs(kept[:num_trajs]), n_sampled - len(kept)


def policy_file_attr(policy_string, name):
    """A root attribute of the policy's file (e.g. how the expert was trained), or None."""
    from imitation.snapshots import open_h5, parse_policy_string

    with open_h5(parse_policy_string(policy_string)[0]) as f:
        v = f.attrs.get(name)
    return v.decode() if isinstance(v, bytes) else v
