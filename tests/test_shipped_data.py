"""The shipped expert datasets (expert_trajs/*.h5) and policies (expert_trajs/policies/*.h5):
design.md section 6 format, attributes that say how they were made, returns recomputed from the
rewards, and the issue's quality target: within 10% of the original expert's published return
(`expert_return_mean` in ../shared/published/gail_published_results.csv)."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from imitation.data import load_dataset
from imitation.envs import resolve_env

REPO = Path(__file__).resolve().parents[1]
PUBLISHED_CSV = REPO.parent / "shared" / "published" / "gail_published_results.csv"

# dataset -> (environment, trajectories, subsampling the protocol uses)
SHIPPED = {
    "cartpole": ("CartPole-v0", 10, 10),
    "mountaincar": ("MountainCar-v0", 10, 5),
    "acrobot": ("Acrobot-v1", 10, 5),
    "hopper": ("Hopper-v5", 25, 20),
    "halfcheetah": ("HalfCheetah-v5", 25, 20),
    "walker": ("Walker2d-v5", 25, 20),
    "ant": ("Ant-v5", 25, 20),
}


def dataset_path(task):
    return REPO / "expert_trajs" / f"{task}.h5"


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_dataset_format_and_provenance(task):
    env_name, n_trajs, freq = SHIPPED[task]
    data = load_dataset(str(dataset_path(task)))
    assert data.env_name == env_name
    assert data.num_trajs == n_trajs
    assert int(data.attrs["data_subsamp_freq"]) == freq
    assert int(data.attrs["deterministic"]) == 0   # stochastic expert, as the paper sampled
    for key in ("command", "expert_trained_with", "source_policy"):
        assert str(data.attrs[key]).strip()
    assert str(data.attrs["command"]).startswith("python scripts/sample_expert.py")
    # The recorded return is the mean of the per-trajectory reward sums (rows are zero-padded).
    with h5py.File(dataset_path(task), "r") as f:
        r_B_T, len_B = f["r_B_T"][:], f["len_B"][:]
        obs_B_T_Do = f["obs_B_T_Do"][:]
    assert np.all(len_B >= 1)
    T = r_B_T.shape[1]
    pad_B_T = np.arange(T)[None, :] >= len_B[:, None]
    assert not np.any(r_B_T[pad_B_T]) and not np.any(obs_B_T_Do[pad_B_T])
    assert np.all(np.isfinite(obs_B_T_Do))
    np.testing.assert_allclose(data.attrs["return_mean"], r_B_T.sum(1).mean(), rtol=1e-9)
    np.testing.assert_allclose(data.attrs["return_std"], r_B_T.sum(1).std(), rtol=1e-9)
    # The observations are those of the environment the dataset names.
    spec = resolve_env(env_name)
    env = spec.make()
    try:
        obs, _ = env.reset(seed=0)
        assert obs_B_T_Do.shape[2] == spec.adapt(obs).shape[-1]
    finally:
        env.close()


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_expert_policy_is_shipped_with_its_training_command(task):
    path = REPO / "expert_trajs" / "policies" / f"{task}.h5"
    with h5py.File(path, "r") as f:
        trained_with = str(f.attrs["trained_with"])
        json.loads(f.attrs["args"])
        (snapshot,) = f["snapshots"].keys()    # one snapshot: a small file
    assert trained_with.startswith("python scripts/run_rl_mj.py")
    assert snapshot.startswith("iter") and path.stat().st_size < 200_000
    # The dataset was sampled from this very policy file.
    with h5py.File(dataset_path(task), "r") as f:
        assert f.attrs["source_policy"] == f"expert_trajs/policies/{task}.h5"
        assert f.attrs["expert_trained_with"] == trained_with


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_expert_return_within_10_percent_of_the_original(task):
    if not PUBLISHED_CSV.exists():
        pytest.skip(f"{PUBLISHED_CSV} is absent")
    import pandas as pd

    published = pd.read_csv(PUBLISHED_CSV)
    original = published.loc[published.task == task, "expert_return_mean"].unique()
    assert len(original) == 1
    with h5py.File(dataset_path(task), "r") as f:
        ours = float(f["r_B_T"][:].sum(1).mean())
    assert abs(ours - original[0]) <= 0.1 * abs(original[0]), (ours, original[0])
