"""Kill anywhere, resume, same answer.

A worker is killed with SIGKILL at one deterministic point (mid-epoch, inside a checkpoint write,
between its renames, between the checkpoint and the metrics line, inside the result write...), then
relaunched unpatched until it finishes. After every kill the run folder must not claim to be finished
and must hold no file that parses as something it is not; at the end the metrics, weights, optimizer
state and result must equal an uninterrupted run's bit for bit (wall-clock fields excluded).
"""

from __future__ import annotations

import signal
import warnings

import pytest

from harness import (EPOCHS, STEPS_PER_EPOCH, assert_identical, json_files_parse, make_run,
                      metrics_rows, snapshot, worker_log)
from experiments import locking, store
from wrn import checkpoint

pytestmark = pytest.mark.slow  # workers killed at every point, then resumed

S = STEPS_PER_EPOCH
# name -> the faults of each killed launch, in order; a clean launch follows.
KILL_POINTS = {
    "mid-epoch-1": [f"step:{S // 2}:kill"],
    "first-step-after-lr-drop": [f"step:{S + 1}:kill"],
    "mid-epoch-2": [f"step:{S + S // 2}:kill"],
    "last-step": [f"step:{2 * S}:kill"],
    "checkpoint-1-written-not-renamed": ["fsync:.checkpoint.:1:kill"],
    "checkpoint-2-torn-temp-file": ["fsync:.checkpoint.:2:truncate"],
    "checkpoint-1-before-rename": ["replace:checkpoint.pt:1:kill"],
    "checkpoint-2-before-keeping-prev": ["replace:checkpoint.prev.pt:1:kill"],
    "checkpoint-2-between-renames": ["replace:checkpoint.pt:2:kill"],
    "after-checkpoint-before-metrics-line": ["append:metrics.jsonl:1:kill"],
    "torn-metrics-line": ["append:metrics.jsonl:2:torn"],
    "provenance-write": ["fsync:.provenance.json.:1:truncate"],
    "result-write-torn": ["fsync:.result.json.:1:truncate"],
    "result-written-not-renamed": ["replace:result.json:1:kill"],
    "resume-killed-while-rewriting-metrics": [f"step:{S + 3}:kill", "replace:metrics.jsonl:1:kill"],
    "killed-twice-in-checkpoint-writes": ["fsync:.checkpoint.:2:kill", "fsync:.checkpoint.:1:truncate"],
}


def check_after_kill(run, reference) -> None:
    """What a reader may see in the folder of a run that was just killed."""
    assert not (run / store.RESULT).exists(), "result.json exists although the run never finished"
    json_files_parse(run)
    rows = metrics_rows(run)
    assert rows == reference["metrics"][: len(rows)], "metrics.jsonl holds a line no full run writes"
    for name in (checkpoint.CURRENT, checkpoint.PREVIOUS):
        if (run / name).exists():
            state = checkpoint.read(run / name)  # a visible checkpoint is always whole and verified
            assert 1 <= state["epoch"] <= EPOCHS + 1
    rec = store.read_run(run)
    assert rec.state in ("todo", "interrupted"), (rec.state, rec.reason)
    # The dead job's lock is still there; it must not count as live (the relaunch breaks it).
    assert (run / store.LOCK).exists() and not locking.lock_is_live(run / store.LOCK)


@pytest.mark.parametrize("name", list(KILL_POINTS))
def test_killed_anywhere_resumes_to_the_same_answer(name, workers, data_dir, reference, tmp_path):
    run = make_run(tmp_path / "results")
    for launch, fault in enumerate(KILL_POINTS[name]):
        code = workers.run(run, data_dir, [fault])
        assert code == -signal.SIGKILL, f"launch {launch}: fault {fault} did not fire (exit {code}):\n" \
                                        f"{worker_log(run)}"
        check_after_kill(run, reference)
    code = workers.run(run, data_dir)
    assert code == 0, worker_log(run)
    assert store.read_run(run).state == "done"
    assert_identical(snapshot(run), reference, name)


def test_killed_writes_leave_no_temp_files_once_finished(workers, data_dir, reference, tmp_path):
    """A kill inside an atomic write leaves its temp file behind; hundreds of requeued runs must not
    keep filling the disk with half-written checkpoints once they have finished."""
    run = make_run(tmp_path / "results")
    for fault in ("fsync:.checkpoint.:1:kill", "fsync:.result.json.:1:kill"):
        assert workers.run(run, data_dir, [fault]) == -signal.SIGKILL
    assert workers.run(run, data_dir) == 0
    leftovers = sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))
    assert leftovers == [], f"temp files of killed writes left in {run.name}: {leftovers}"


@pytest.mark.parametrize("damage", ["truncate", "flip-byte", "empty", "garbage"])
def test_damaged_checkpoint_falls_back_to_the_previous_one_with_a_warning(damage, workers, data_dir,
                                                                          reference, tmp_path):
    """A checkpoint damaged on disk (after its atomic rename) is detected by its checksum; the run
    resumes from checkpoint.prev.pt, warns, and still ends with the uninterrupted run's numbers."""
    run = make_run(tmp_path / "results")
    # Killed just before result.json is committed: checkpoint.pt (end of epoch 2) and
    # checkpoint.prev.pt (end of epoch 1) both exist.
    assert workers.run(run, data_dir, ["replace:result.json:1:kill"]) == -signal.SIGKILL
    current, previous = run / checkpoint.CURRENT, run / checkpoint.PREVIOUS
    assert current.exists() and previous.exists()
    data = current.read_bytes()
    if damage == "truncate":
        current.write_bytes(data[: len(data) // 2])
    elif damage == "flip-byte":
        i = len(data) - 100
        current.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    elif damage == "empty":
        current.write_bytes(b"")
    else:
        current.write_bytes(b"PK\x03\x04 not a checkpoint at all" * 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = checkpoint.load_latest(run)
    assert state is not None and state["epoch"] == 2 and state["step"] == 0  # prev: epoch 1 done
    assert any("damaged checkpoint" in str(w.message) and str(current) in str(w.message) for w in caught)
    assert workers.run(run, data_dir) == 0, worker_log(run)
    assert "damaged checkpoint" in worker_log(run), "the resumed worker did not warn about the damage"
    assert_identical(snapshot(run), reference, damage)


def test_both_checkpoints_damaged_restarts_from_scratch(workers, data_dir, reference, tmp_path):
    run = make_run(tmp_path / "results")
    assert workers.run(run, data_dir, ["replace:result.json:1:kill"]) == -signal.SIGKILL
    for name in (checkpoint.CURRENT, checkpoint.PREVIOUS):
        (run / name).write_bytes((run / name).read_bytes()[:1000])
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        assert checkpoint.load_latest(run) is None
    assert workers.run(run, data_dir) == 0, worker_log(run)
    assert_identical(snapshot(run), reference, "restart")
