"""The original authors' expert policies: where they come from and where this machine keeps them.

The paper's protocol samples its expert datasets from the experts Ho & Ermon trained (HDF5
snapshots; MIT License, Copyright (c) 2016 Jonathan Ho and Stefano Ermon). They are not part of
this repository. `fetch` (``python scripts/fetch_experts.py``) copies them from the original
repository, openai/imitation, at a pinned commit, and checks every file's SHA-256; an offline
copy (a directory with ``classic/`` and ``modern/``) is used in place.

Where `find_experts_dir` looks, first match wins:
1. ``$POLICYOPT_EXPERTS_DIR``;
2. ``../shared/expert_policies`` beside the repository (this project's workplace and CI);
3. the directory `fetch` writes to by default, ``$XDG_CACHE_HOME/policyopt/expert_policies``
   (``~/.cache/...``).
"""
import os
import shutil
import urllib.parse
import urllib.request

from imitation.errors import UserError
from policyopt.util import file_sha256

COMMIT = "8a2ed905e2ac54bda0f71e5ee364e90568e6d031"
# Raw files of the original repository at COMMIT (plain git blobs, no LFS).
DEFAULT_SOURCE = f"https://raw.githubusercontent.com/openai/imitation/{COMMIT}/expert_policies"
ENV_VAR = "POLICYOPT_EXPERTS_DIR"
# Path under expert_policies/ -> SHA-256 of the file at COMMIT.
FILES = {
    "classic/Acrobot-v0.h5":
        "4046020628115087cce823bdf7079af7cb9938be82f72600ca17d1d7b039756d",
    "classic/CartPole-v0.h5":
        "24060a4eba8f31d9bc14d4912d955945c051084863e2fa3a1491a16278f232aa",
    "classic/InvertedPendulum-v1.h5":
        "dfe1ed7899bc55bee8c28eb9c2dcb7669fff15784bebb16b40b1b818023010ef",
    "classic/MountainCar-v0.h5":
        "c6fd47a2455e23b45d7b395aa3dc213b9e741a181320288db99a1bb188c40a2f",
    "modern/log_Ant-v1_0.h5":
        "f76c5bcf1c3895a4874960066ad8a65cdff825ecdb6e668b6461f64fdd26f989",
    "modern/log_HalfCheetah-v0_2.h5":
        "9ffd62d0238360d7d73b3104af8018e3428e745aea20e5f1259227f9ba1e6df0",
    "modern/log_Hopper-v0_3.h5":
        "d5023fe22f8ef141525731a2f2858dd87523f38d34459302c34c8e5ee59476ff",
    "modern/log_Reacher-v1_4.h5":
        "05bf4b1d8b9d9d2e4551efebc51733d9607080928b63a1bd65e8494cd3c4c8ad",
    "modern/walker_eb5b2e_1.h5":
        "5bad557f053a3585f4d731c4e28381d6ad54bca3137376eceaee868137f896e1",
}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "expert_policies"))
HOW_TO_GET = (f"fetch them with `python scripts/fetch_experts.py` (openai/imitation at "
              f"{COMMIT[:7]}, checked by SHA-256), point ${ENV_VAR} at a copy, or use the "
              "project's own experts (`--experts own`)")


def default_fetch_dir():
    """Where `fetch` writes when given no destination."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "policyopt", "expert_policies")


def candidate_dirs():
    """The directories `find_experts_dir` tries, in order."""
    env = os.environ.get(ENV_VAR)
    return [d for d in (env, SHARED_DIR, default_fetch_dir()) if d]


def find_experts_dir():
    """The directory holding the original experts on this machine, or None. An explicitly
    set ``$POLICYOPT_EXPERTS_DIR`` must exist (UserError otherwise: a typo should not fall
    through to another copy)."""
    env = os.environ.get(ENV_VAR)
    if env:
        if not os.path.isdir(env):
            raise UserError(f"${ENV_VAR} is {env}, which is not a directory")
        return env
    for d in candidate_dirs():
        if os.path.isdir(d):
            return d
    return None


def require_experts_dir():
    """`find_experts_dir`, or a UserError that says how to get the experts."""
    d = find_experts_dir()
    if d is None:
        raise UserError(f"the original authors' expert policies are not on this machine "
                        f"(looked in {', '.join(candidate_dirs())}): {HOW_TO_GET}")
    return d


def verify(directory, files=None):
    """{relative path: problem} for each expert file in `directory` that is missing or whose
    SHA-256 differs from the pinned one (empty when all are good)."""
    problems = {}
    for rel in files or FILES:
        path = os.path.join(directory, rel)
        if not os.path.isfile(path):
            problems[rel] = "missing"
        elif file_sha256(path) != FILES[rel]:
            problems[rel] = "SHA-256 differs from the original's"
    return problems


def _open_source(source, rel):
    """A readable binary stream of `rel` from `source`: a directory, or a base URL (http(s)://,
    file://) under which the files lie at the same relative paths."""
    if "://" not in source:
        return open(os.path.join(source, rel), "rb")
    url = source.rstrip("/") + "/" + urllib.parse.quote(rel)
    return urllib.request.urlopen(url, timeout=60)


def fetch(dest=None, source=DEFAULT_SOURCE, files=None, log=print):
    """Copy the original experts from `source` (default: the original repository at COMMIT)
    into `dest` (default: `default_fetch_dir()`), verifying each file's SHA-256 before it is
    put in place; files already there with the right checksum are kept. Returns `dest`.
    UserError (nothing half-written left behind) on a file that cannot be read or does not
    match."""
    dest = dest or default_fetch_dir()
    files = list(files or FILES)
    unknown = [f for f in files if f not in FILES]
    if unknown:
        raise UserError(f"unknown expert file(s) {', '.join(unknown)}; known: "
                        f"{', '.join(FILES)}")
    for rel in files:
        out = os.path.join(dest, rel)
        if os.path.isfile(out) and file_sha256(out) == FILES[rel]:
            log(f"  {rel}: already here, checksum good")
            continue
        try:
            os.makedirs(os.path.dirname(out), exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {os.path.dirname(out)}: {e.strerror}")
        tmp = f"{out}.tmp-{os.getpid()}"
        try:
            try:
                with _open_source(source, rel) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except OSError as e:  # URLError and HTTPError are OSErrors
                raise UserError(f"cannot get {rel} from {source}: "
                                f"{getattr(e, 'reason', None) or e.strerror or e}")
            got = file_sha256(tmp)
            if got != FILES[rel]:
                raise UserError(f"{rel} from {source} has SHA-256 {got[:16]}..., expected "
                                f"{FILES[rel][:16]}... (not the original file; nothing "
                                "written)")
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        log(f"  {rel}: fetched, checksum good")
    return dest
