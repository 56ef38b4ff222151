"""A clone that stands alone: the published results table ships in the package, the original
authors' experts come in by `scripts/fetch_experts.py` (pinned commit, SHA-256) or a directory
named by $POLICYOPT_EXPERTS_DIR, and the protocol runs from any directory without ../shared."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from imitation import original_experts as oe
from imitation.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared"))
SHARED_EXPERTS = os.path.join(SHARED, "expert_policies")


def run_script(name, *args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, **(env or {})))


def one_error_line(p):
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A source directory of two small 'expert files' whose pinned checksums are patched in."""
    src = tmp_path / "source"
    files = {"classic/CartPole-v0.h5": b"cartpole expert bytes",
             "modern/log_Hopper-v0_3.h5": b"hopper expert bytes"}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    monkeypatch.setattr(oe, "FILES", {rel: hashlib.sha256(data).hexdigest()
                                      for rel, data in files.items()})
    return src


def test_the_pinned_checksums_are_the_spec_s():
    """SPEC section 7's commit and SHA-256 (independent reference: the SPEC's text)."""
    spec = os.path.join(SHARED, "SPEC.md")
    if not os.path.exists(spec):
        pytest.skip("../shared/SPEC.md is not beside the repository")
    text = open(spec).read()
    assert oe.COMMIT in text
    for rel, sha in oe.FILES.items():
        assert f"{rel} {sha}" in text, rel


def test_the_workplace_copy_matches_the_pinned_checksums():
    if not os.path.isdir(SHARED_EXPERTS):
        pytest.skip("../shared/expert_policies is not beside the repository")
    assert oe.verify(SHARED_EXPERTS) == {}


@pytest.mark.parametrize("as_url", [False, True], ids=["directory", "file-url"])
def test_fetch_copies_and_verifies(fake_source, tmp_path, as_url):
    dest = tmp_path / "dest"
    source = fake_source.as_uri() if as_url else str(fake_source)
    logged = []
    assert oe.fetch(str(dest), source, log=logged.append) == str(dest)
    assert oe.verify(str(dest)) == {}
    assert (dest / "classic" / "CartPole-v0.h5").read_bytes() == b"cartpole expert bytes"
    # a second fetch keeps the good files
    oe.fetch(str(dest), source, log=logged.append)
    assert sum("already here" in m for m in logged) == 2


def test_fetch_refuses_a_file_that_is_not_the_original(fake_source, tmp_path):
    (fake_source / "modern" / "log_Hopper-v0_3.h5").write_bytes(b"tampered")
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="SHA-256"):
        oe.fetch(str(dest), str(fake_source), log=lambda m: None)
    assert not (dest / "modern" / "log_Hopper-v0_3.h5").exists()
    assert not [p for p in dest.rglob("*") if ".tmp-" in p.name]


def test_fetch_experts_script_from_an_offline_copy(tmp_path):
    if not os.path.isdir(SHARED_EXPERTS):
        pytest.skip("../shared/expert_policies is not beside the repository")
    dest = tmp_path / "experts"
    p = run_script("fetch_experts.py", "--dest", dest, "--source", SHARED_EXPERTS,
                   "--only", "classic/CartPole-v0.h5")
    assert p.returncode == 0, p.stderr
    assert "checksum good" in p.stdout
    p = run_script("fetch_experts.py", "--check", dest, "--only", "classic/CartPole-v0.h5")
    assert p.returncode == 0 and "match" in p.stdout
    p = run_script("fetch_experts.py", "--check", dest)   # the other 8 are missing
    assert "8 of 9 expert files" in one_error_line(p)
    p = run_script("fetch_experts.py", "--dest", tmp_path / "x", "--source", tmp_path / "none",
                   "--only", "classic/CartPole-v0.h5")
    assert "cannot get classic/CartPole-v0.h5" in one_error_line(p)


def test_where_the_experts_are_found(tmp_path, monkeypatch):
    monkeypatch.setenv(oe.ENV_VAR, str(tmp_path))
    assert oe.find_experts_dir() == str(tmp_path)
    monkeypatch.setenv(oe.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(UserError, match="not a directory"):
        oe.find_experts_dir()
    monkeypatch.delenv(oe.ENV_VAR)
    monkeypatch.setattr(oe, "SHARED_DIR", str(tmp_path / "no_shared"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert oe.find_experts_dir() is None
    with pytest.raises(UserError, match="fetch_experts.py.*POLICYOPT_EXPERTS_DIR.*--experts own"):
        oe.require_experts_dir()
    (tmp_path / "cache" / "policyopt" / "expert_policies").mkdir(parents=True)
    assert oe.find_experts_dir() == str(tmp_path / "cache" / "policyopt" / "expert_policies")


def test_the_published_table_ships_with_the_package():
    from imitation import published

    path = published.default_published_csv()
    assert path.startswith(os.path.join(REPO, "imitation"))
    table = published.load_published()
    # the paper's whole MuJoCo table (4 tasks x 4 algorithms x 4 sizes, 1 run) and the classic
    # one (3 tasks x 4 algorithms x 4 sizes x 7 runs)
    assert len(table[table.suite == "modern"]) == 64
    assert len(table[table.suite == "classic"]) == 3 * 4 * 4 * 7
    shared_csv = os.path.join(SHARED, "published", "gail_published_results.csv")
    if os.path.exists(shared_csv):
        with open(shared_csv, "rb") as a, open(path, "rb") as b:
            assert a.read() == b.read()
    with open(os.path.join(REPO, "setup.py")) as f:
        assert '"reference/*.csv"' in f.read()   # installed as package data


def test_a_non_csv_published_table_is_one_line(tmp_path):
    from imitation import published

    bad = tmp_path / "published.csv"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe binary")
    with pytest.raises(UserError, match="not a readable CSV table|lacks columns"):
        published.load_published(str(bad))


def test_the_pipeline_without_experts_says_how_to_get_them(tmp_path):
    empty = tmp_path / "empty_experts"
    empty.mkdir()
    p = run_script("im_pipeline.py", "smoke", "all", "--out", tmp_path / "out",
                   env={oe.ENV_VAR: str(empty)})
    line = one_error_line(p)
    assert "expert policy" in line and "fetch_experts.py" in line and "--experts own" in line
    assert not (tmp_path / "out" / "data").exists()     # stopped before any work


def test_the_pipeline_checks_the_published_table_before_the_first_job(tmp_path):
    p = run_script("im_pipeline.py", "smoke", "all", "--experts", "own", "--out",
                   tmp_path / "out", "--published", tmp_path / "missing.csv")
    assert "missing.csv not found" in one_error_line(p)
    assert not (tmp_path / "out" / "data").exists()


def test_a_second_pipeline_on_the_same_out_is_refused(tmp_path):
    from imitation import locks

    out = tmp_path / "out"
    out.mkdir()
    locks.lock_output(str(out), "--out")
    try:
        p = run_script("im_pipeline.py", "smoke", "0_sampletrajs", "--experts", "own",
                       "--out", out)
        assert "is in use by another run" in one_error_line(p)
    finally:
        locks.release_output(str(out))
    assert not (out / ".lock").exists()


@pytest.mark.slow
def test_the_protocol_runs_from_another_directory_without_shared(tmp_path):
    """A user's clone: no ../shared (the experts directory is an empty one), run from another
    directory with a relative --out: the project's own experts, the shipped published table."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_script("im_pipeline.py", "smoke", "all", "--experts", "own", "--algs", "ga,bclone",
                   "--out", "rel_out", "--n_workers", "2", cwd=cwd, env={oe.ENV_VAR: str(empty)})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = cwd / "rel_out"
    for name in ("data/cartpole.h5", "results.h5", "report.txt", "figure.png"):
        assert (out / name).exists(), name
    assert "GAIL" in (out / "report.txt").read_text()
    assert "Traceback" not in p.stderr and "UserWarning" not in p.stderr
    assert not list(out.rglob("*.lock")) and not list(out.rglob(".lock"))
    shutil.rmtree(out)
