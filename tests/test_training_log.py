"""imitation.training's log file: TrainingLog writes it with h5py, and PyTables, the library
the original's logs were written with, must read it as a table; read_log reads it back."""
import io
import json
import os

import h5py
import numpy as np
import pytest
import tables

from imitation.errors import UserError
from imitation.training import TrainingLog, read_log
from policyopt import nn


def _net(scope):
    import pytensor.tensor as pt

    x = pt.matrix("x", shape=(None, 3))
    with nn.variable_scope(scope):
        net = nn.FeedforwardNet(x, (3,), nn.TINY_HIDDEN_SPEC)
    return x, net



def test_training_log_file_and_printing(tmp_path, rng):
    fn = str(tmp_path / "log.h5")
    attrs = {"env_name": "Hopper-v5", "max_kl": 0.01, "seed": 3}
    out = io.StringIO()
    log = TrainingLog(fn, attrs=attrs, out=out)
    _, net = _net("logged")
    rows = [(i, float(rng.normal()), float(rng.uniform())) for i in range(25)]
    for i, a, b in rows:
        log.write([("iter", i), ("loss", a), ("kl", b)])
    log.save(snapshot_iter=3, models=[net])
    assert log.rows_written() == 25

    with pytest.raises(ValueError):
        log.write([("iter", 25), ("kl", 0.1), ("loss", 0.2)])
    with pytest.raises(ValueError):
        log.write([("iter", 25), ("loss", 0.2)])

    # a second save appends
    log.write([("iter", 25), ("loss", 1.5), ("kl", 0.25)])
    log.save()
    rows.append((25, 1.5, 0.25))

    with tables.open_file(fn, "r") as f:
        t = f.root.log
        assert t.nrows == 26
        assert list(t.colnames) == ["iter", "loss", "kl"]
        np.testing.assert_array_equal(t.col("iter"), [r[0] for r in rows])
        np.testing.assert_array_equal(t.col("loss"), [r[1] for r in rows])
        np.testing.assert_array_equal(t.col("kl"), [r[2] for r in rows])
        assert json.loads(f.root._v_attrs.args) == attrs
    with h5py.File(fn, "r") as f:
        for v in net.get_variables():
            path = "snapshots/iter0000003" + v.name
            assert path in f
            np.testing.assert_array_equal(f[path][()], v.get_value())

    lines = out.getvalue().splitlines()
    # header + rule every 20 rows: 2 + 20 + 2 + 6 lines
    assert len(lines) == 30
    header_idx = [i for i, l in enumerate(lines) if l.split() == ["iter", "loss", "kl"]]
    assert header_idx == [0, 22]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split()[0] == "0" and lines[24].split()[0] == "20"
    np.testing.assert_allclose(float(lines[2].split()[1]), rows[0][1], rtol=1e-4)

    # reopening the file picks up the columns, so a mismatching row is refused
    log2 = TrainingLog(fn, out=io.StringIO())
    with pytest.raises(ValueError):
        log2.write([("iter", 26), ("loss", 0.)])


def test_training_log_records_library_versions(tmp_path, monkeypatch):
    """One `versions` entry while the libraries stay the same; a resume after an upgrade
    appends the new versions, keeping the old."""
    import pytensor as pt_pkg

    from policyopt import util

    fn = str(tmp_path / "log.h5")
    log = TrainingLog(fn, attrs={}, out=io.StringIO())
    for i in range(2):
        log.write([("iter", i)])
        log.save()

    def history():
        with tables.open_file(fn, "r") as f:
            return json.loads(f.root._v_attrs.versions)

    first = history()
    assert len(first) == 1
    assert first[0]["pytensor"] == pt_pkg.__version__ and first[0]["numpy"] == np.__version__
    upgraded = dict(first[0], mujoco="99.0.0")
    monkeypatch.setattr(util, "library_versions", lambda: dict(upgraded))
    resumed = TrainingLog(fn, out=io.StringIO())
    resumed.write([("iter", 2)])
    resumed.save()
    assert history() == [first[0], upgraded]


def test_training_log_creates_missing_parent_directories_at_the_first_save(tmp_path):
    fn = tmp_path / "runs" / "cartpole" / "log.h5"
    log = TrainingLog(str(fn), attrs={}, out=io.StringIO())
    log.write([("iter", 0)])
    assert not (tmp_path / "runs").exists()      # nothing is created before a save
    log.save()
    assert read_log(str(fn)).rows["iter"].tolist() == [0]


def test_read_log_reads_what_training_log_wrote(tmp_path):
    fn = str(tmp_path / "log.h5")
    log = TrainingLog(fn, attrs={"mode": "ga", "seed": 2}, out=io.StringIO())
    for i in range(3):
        log.write([("iter", i), ("trueret", 0.5 * i)])
    log.save(finished=True)
    run = read_log(fn)
    assert run.args == {"mode": "ga", "seed": 2} and run.finished is True
    assert run.columns == ["iter", "trueret"]
    np.testing.assert_array_equal(run.rows["trueret"], [0., 0.5, 1.])
    assert run.rows["iter"].dtype == np.int64


def test_training_log_appends_to_a_table_pytables_wrote(tmp_path):
    """A log written before the switch to h5py (its table made by PyTables) resumes: new rows
    are appended and PyTables still reads every row."""
    fn = str(tmp_path / "old.h5")
    with tables.open_file(fn, "w") as f:
        t = f.create_table("/", "log", {"iter": tables.Int64Col(pos=0),
                                        "ret": tables.Float64Col(pos=1)})
        t.append([(0, 1.), (1, 2.)])
    log = TrainingLog(fn, attrs={}, out=io.StringIO())
    log.write([("iter", 2), ("ret", 3.)])
    log.save()
    with tables.open_file(fn, "r") as f:
        assert f.root.log.nrows == 3
        np.testing.assert_array_equal(f.root.log.col("ret"), [1., 2., 3.])
    assert read_log(fn).finished is False


def test_read_log_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_log(str(tmp_path / "missing.h5"))
    fn = str(tmp_path / "x.h5")
    with h5py.File(fn, "w") as f:
        f["other"] = np.zeros(2)
    with pytest.raises(UserError, match="has no `log` table"):
        read_log(fn)
    with h5py.File(fn, "w") as f:
        f["log"] = np.zeros(2)
    with pytest.raises(UserError, match="not a table of named columns"):
        read_log(fn)


# --------------------------------------------------------------------------- --tensorboard

def read_tensorboard_scalars(logdir):
    """{tag: {step: value}} from the event files, parsed here from the TFRecord framing
    (length, CRC, record, CRC) with the Event protobuf message, not with the writer's code."""
    import glob
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            buf = f.read()
        pos = 0
        while pos < len(buf):
            (n,) = struct.unpack("<Q", buf[pos:pos + 8])
            record = buf[pos + 12:pos + 12 + n]
            pos += 12 + n + 4
            ev = event_pb2.Event()
            ev.ParseFromString(record)
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


@pytest.mark.slow
def test_tensorboard_holds_every_logged_field_per_iteration(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("tensorboardX")
    from imitation.training import read_log

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log, board = tmp_path / "run.h5", tmp_path / "board"
    base = [sys.executable, os.path.join(repo, "scripts", "run_rl_mj.py")]
    p = subprocess.run(base + ["--env_name", "CartPole-v1", "--tiny_policy", "--min_total_sa",
                               "500", "--max_iter", "3", "--log", str(log), "--tensorboard",
                               str(board), "--num_workers", "1"],
                       capture_output=True, text=True, cwd=repo, timeout=600)
    assert p.returncode == 0, p.stderr
    # a resume writes its iterations to the same directory
    p = subprocess.run(base + ["--resume", "--log", str(log), "--max_iter", "5",
                               "--tensorboard", str(board)],
                       capture_output=True, text=True, cwd=repo, timeout=600)
    assert p.returncode == 0, p.stderr
    data = read_log(str(log))
    rows = data.rows
    scalars = read_tensorboard_scalars(board)
    assert set(scalars) == set(data.columns) - {"iter"}
    for tag, by_step in scalars.items():
        assert sorted(by_step) == list(rows["iter"])
        np.testing.assert_array_equal([by_step[i] for i in rows["iter"]],
                                      rows[tag].astype(np.float32))
