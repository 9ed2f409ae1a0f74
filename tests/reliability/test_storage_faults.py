"""Storage faults: an unwritable or full results folder stops a launch before training
with one clear line; a disk that fills up during training never leaves a partial file presented as
complete, keeps the last good checkpoint loadable, and the run finishes identically once space is
back."""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple

import pytest

from harness import assert_identical, make_run, snapshot, tree, worker_log, write_spec
from experiments import store
from wrn import checkpoint

pytestmark = pytest.mark.slow  # workers on a full or failing disk

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def launch(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("earlier results\n")
    argv = [str(write_spec(tmp_path)), "--profile", "smoke", "--results", str(results)]
    return results, argv


def run_main(argv, capsys) -> tuple[int, str]:
    from experiments.run import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_full_results_disk_stops_the_launch_before_training(launch, monkeypatch, capsys):
    results, argv = launch
    before = tree(results)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - 5 * 2**20, 5 * 2**20))
    code, err = run_main(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--results" in lines[0] and "5 MiB free" in lines[0], err
    assert tree(results) == before, "a launch on a full disk wrote into the results folder"


def test_unwritable_results_folder_stops_the_launch_before_training(launch, monkeypatch, capsys):
    """Permissions cannot be tested as root (root writes anywhere), so the folder's write probe fails
    the way a read-only or foreign-owned folder makes it fail."""
    import tempfile

    results, argv = launch
    before = tree(results)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    code, err = run_main(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "--results" in lines[0] and "not writable" in lines[0] and "Permission denied" in lines[0]
    assert tree(results) == before
    assert not (results / "runs").exists()


@pytest.mark.parametrize("where, fault, kept", [
    # (epoch, step) of the checkpoint the full disk leaves: the last one written before the failed write
    ("second checkpoint", "fsync:.checkpoint.:2:enospc", (2, 0)),
    ("first checkpoint", "fsync:.checkpoint.:1:enospc", None),
    ("result.json", "fsync:.result.json.:1:enospc", (3, 0)),
    ("provenance.json", "fsync:.provenance.json.:1:enospc", None),
])
def test_disk_full_during_training_keeps_the_last_good_checkpoint(where, fault, kept, workers, data_dir, reference,
                                                                  tmp_path):
    run = make_run(tmp_path / "results")
    code = workers.run(run, data_dir, [fault])
    assert code not in (0, -9), f"the worker did not notice the full disk: exit {code}\n{worker_log(run)}"
    assert not (run / store.RESULT).exists(), "result.json written although a write failed"
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")], "a failed write left its temp file"
    state = checkpoint.load_latest(run)
    assert (None if state is None else (state["epoch"], state["step"])) == kept, "the last good checkpoint is gone"
    rec = store.read_run(run)
    assert rec.state == "failed" and "No space left on device" in rec.reason, (rec.state, rec.reason)
    assert workers.run(run, data_dir) == 0, worker_log(run)  # space is back: the rerun resumes
    assert_identical(snapshot(run), reference, where)
