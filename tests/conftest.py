import os

import numpy as np
import pytest

from imitation.experts import sample_dataset
from imitation.original_experts import find_experts_dir


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def collect_minari():
    """A function that makes a Minari dataset of random-policy episodes with Minari's own
    DataCollector: collect(dataset_id, env_id, episodes, seed, **make_kwargs)."""
    pytest.importorskip("minari")

    def collect(dataset_id, env_id, episodes, seed, **make_kwargs):
        import warnings

        import gymnasium as gym
        from minari import DataCollector

        env = DataCollector(gym.make(env_id, **make_kwargs))
        env.action_space.seed(seed)
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            done = False
            while not done:
                _, _, term, trunc, _ = env.step(env.action_space.sample())
                done = term or trunc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = env.create_dataset(dataset_id, algorithm_name="random", ref_min_score=0.,
                                    ref_max_score=1.)
        env.close()
        return ds

    return collect


# --------------------------------------------------------------- expert datasets (imitation)
# Small datasets sampled once per session from the original experts (../shared beside the
# repository root, $POLICYOPT_EXPERTS_DIR, or a `scripts/fetch_experts.py` copy); tests that
# need them are skipped when none is on the machine.

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERT_POLICIES_DIR = find_experts_dir() or os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "expert_policies"))


def _expert_file(*parts):
    path = os.path.join(EXPERT_POLICIES_DIR, *parts)
    if not os.path.exists(path):
        pytest.skip(f"expert policy {path} not found (tests that sample expert data need the "
                    "original experts: ../shared, $POLICYOPT_EXPERTS_DIR or "
                    "scripts/fetch_experts.py)")
    return path


@pytest.fixture(scope="session")
def cartpole_expert_data(tmp_path_factory):
    """10 trajectories of the original CartPole-v0 expert (GibbsPolicy, stochastic, seed 0)."""
    policy = _expert_file("classic", "CartPole-v0.h5")
    out = str(tmp_path_factory.mktemp("expert_data") / "cartpole_10.h5")
    sample_dataset(policy, out, 10, seed=0, num_workers=0, verbose=False)
    return out


@pytest.fixture(scope="session")
def hopper_expert_data(tmp_path_factory):
    """4 trajectories of the original Hopper expert (iteration 500) on Hopper-v5, seed 0."""
    path = _expert_file("modern", "log_Hopper-v0_3.h5")
    out = str(tmp_path_factory.mktemp("expert_data") / "hopper_4.h5")
    sample_dataset(path + "/snapshots/iter0000500", out, 4, env_name="Hopper-v5", seed=0,
                   num_workers=0, verbose=False)
    return out


@pytest.fixture(scope="session")
def cartpole_expert_data_deterministic(tmp_path_factory):
    """10 trajectories of the CartPole-v0 expert acting with its mode (argmax), seed 0: unlike
    the stochastic expert (whose own argmax matches only ~80% of its sampled actions), these
    actions are a function of the state, so a cloned policy can reach ~100% accuracy."""
    policy = _expert_file("classic", "CartPole-v0.h5")
    out = str(tmp_path_factory.mktemp("expert_data") / "cartpole_10_det.h5")
    sample_dataset(policy, out, 10, seed=0, num_workers=0, deterministic=True, verbose=False)
    return out
