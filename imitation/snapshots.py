"""Policy snapshots: ``FILE.h5/snapshots/iterNNNNNNN`` strings, loading a policy from one (the
project's own logs or the original authors' checkpoints), and checking it fits an environment.
"""
import json
import os
import re

import numpy as np

from imitation.errors import UserError
from policyopt import ContinuousSpace, FiniteSpace, nn, rl

POLICY_CLASSES = ("GaussianPolicy", "GibbsPolicy")


def parse_policy_string(s):
    """'FILE.h5/snapshots/iter0000500' -> ('FILE.h5', 'snapshots/iter0000500').
    'FILE.h5' alone -> ('FILE.h5', None) (the last snapshot)."""
    m = re.match(r"^(.*?\.(?:h5|hdf5|hdf))(?:/(.*))?$", s)
    if not m:
        if os.path.exists(s):
            return s, None
        raise UserError(f"{s!r} is not a policy string of the form FILE.h5/snapshots/iterNNNNNNN")
    return m.group(1), (m.group(2).strip("/") or None) if m.group(2) else None


def open_h5(path):
    """Open an HDF5 file for reading, with one-line errors for missing or non-HDF5 files."""
    import h5py

    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path} is not a readable HDF5 file ({str(e).split('(')[0].strip()})")


def read_args(f):
    """The run arguments stored as JSON in the root attribute `args` ({} if absent)."""
    raw = f.attrs.get("args")
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def list_snapshots(f):
    if "snapshots" not in f:
        return []
    return sorted(k for k in f["snapshots"].keys() if re.match(r"^iter\d+$", k))


def load_policy(policy_string, enable_obsnorm=None):
    """Build the policy a snapshot describes and load its parameters.

    Returns (policy, key, args) with args the run arguments stored in the file.
    """
    path, key = parse_policy_string(policy_string)
    with open_h5(path) as f:
        snaps = list_snapshots(f)
        if key is None:
            if not snaps:
                raise UserError(f"{path} holds no policy snapshots (no group snapshots/iter*)")
            key = "snapshots/" + snaps[-1]
        if key not in f:
            avail = ", ".join(snaps[-5:]) if snaps else "none"
            raise UserError(f"{path} has no snapshot {key!r} (last snapshots: {avail})")
        group = f[key]
        classes = [c for c in POLICY_CLASSES if c in group]
        if not classes:
            raise UserError(f"{path}/{key} holds no GaussianPolicy or GibbsPolicy")
        cls_name = classes[0]
        g = group[cls_name]
        args = read_args(f)
        try:
            out_W = g["out/AffineLayer/W"].shape
            hidden = g["hidden/FeedforwardNet"]
            first = sorted(hidden.keys(), key=lambda k: int(k.split("_")[1]))[0]
            obs_dim = hidden[first]["AffineLayer/W"].shape[0]
        except KeyError as e:
            raise UserError(f"{path}/{key}/{cls_name} is missing {e}")
        has_obsnorm = "obsnorm" in g and "Standardizer" in g["obsnorm"]
        spec = args.get("policy_hidden_spec")
        if spec is None:
            raise UserError(f"{path}: attribute args has no policy_hidden_spec")
        try:
            spec = nn.parse_hidden_spec(spec)
        except ValueError as e:
            raise UserError(f"{path}: policy_hidden_spec: {e}")
        obs_space = ContinuousSpace(obs_dim)
        use_obsnorm = has_obsnorm if enable_obsnorm is None else enable_obsnorm
        if cls_name == "GaussianPolicy":
            policy = rl.GaussianPolicy(spec, obs_space, ContinuousSpace(out_W[1]),
                                       enable_obsnorm=use_obsnorm)
        else:
            policy = rl.GibbsPolicy(spec, obs_space, FiniteSpace(out_W[1]),
                                    enable_obsnorm=use_obsnorm)
        try:
            policy.load_h5(f, key)
        except (KeyError, ValueError) as e:
            raise UserError(f"{path}/{key}: {e}")
    return policy, key, args


def check_policy_fits(policy, mdp, what="policy"):
    """Raise UserError when the policy's observation/action sizes do not match the MDP."""
    hint = ""
    from imitation.envs import OBS_ADAPTERS

    for name, ad in OBS_ADAPTERS.items():
        if (ad.in_dim == mdp.obs_space.storage_size
                and ad.out_dim == policy.obsfeat_space.storage_size and mdp.spec.adapter is None):
            hint = f" (for the original experts use --obs_adapter {name})"
    if policy.obsfeat_space.storage_size != mdp.obs_space.storage_size:
        raise UserError(f"the {what} expects {policy.obsfeat_space.storage_size}-dim "
                        f"observations but {mdp.env_name} gives "
                        f"{mdp.obs_space.storage_size}{hint}")
    pa, ma = policy.action_space, mdp.action_space
    if type(pa) is not type(ma):
        raise UserError(f"the {what} has {pa} actions but {mdp.env_name} has {ma}")
    if isinstance(pa, FiniteSpace) and pa.size != ma.size or \
            isinstance(pa, ContinuousSpace) and pa.dim != ma.dim:
        raise UserError(f"the {what} has {pa} actions but {mdp.env_name} has {ma}")


def env_name_from_args(args):
    name = args.get("env_name")
    return str(name) if name else None


def policy_summary(policy):
    return (f"{type(policy).__name__} obs {policy.obsfeat_space.storage_size} -> actions "
            f"{policy.action_space}, {policy.get_num_params()} params")


def assert_finite_params(policy, path):
    if not np.all(np.isfinite(policy.get_params())):
        raise UserError(f"{path}: the snapshot's parameters contain NaN or inf")


def load_policy_for_env(policy_string, env_name=None):
    """load_policy for running the policy: rejects NaN/inf parameters and resolves the
    environment (`env_name`, else the one the snapshot's run recorded).
    Returns (policy, key, args, env_name)."""
    policy, key, args = load_policy(policy_string)
    assert_finite_params(policy, policy_string)
    env_name = env_name or env_name_from_args(args)
    if not env_name:
        raise UserError("the snapshot records no env_name; pass --env_name")
    return policy, key, args, env_name


def export_policy(policy_string, out, extra_attrs=None):
    """Write a compact policy file: the run's `args` and the one snapshot's policy variables
    (same layout, so `FILE.h5/snapshots/iterNNNNNNN` strings keep working). Atomic."""
    import h5py

    from policyopt.util import atomic_write

    policy, key, args = load_policy(policy_string)
    with atomic_write(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["args"] = json.dumps(args, sort_keys=True, indent=1)
            f.attrs["source"] = policy_string
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = v
            policy.save_h5(f, key)
    return key
