import os

import numpy as np
import pytest

from imitation.experts import sample_dataset


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --------------------------------------------------------------- expert datasets (imitation)
# Small datasets sampled once per session from the original experts in ../shared (the directory
# beside the repository root); tests that need them are skipped when ../shared is absent.

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERT_POLICIES_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "expert_policies"))


def _expert_file(*parts):
    path = os.path.join(EXPERT_POLICIES_DIR, *parts)
    if not os.path.exists(path):
        pytest.skip(f"expert policy {path} not found (../shared/expert_policies beside the "
                    f"repository root is needed for tests that sample expert data)")
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
