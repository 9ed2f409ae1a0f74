"""Graceful stop: SIGTERM, SIGINT or SIGUSR2 during training -> a checkpoint at the next
step boundary, exit code 3, and a later launch resumes from that very step (not from the epoch's
start) to the uninterrupted run's numbers, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from harness import (HERE, REPO_ROOT, STEPS_PER_EPOCH, assert_identical, make_run, python_env, snapshot,
                      wait_for, worker_log)
from experiments import store
from experiments.worker import EXIT_INTERRUPTED
from wrn import checkpoint
from wrn.files import atomic_write_json, read_json

pytestmark = pytest.mark.slow  # workers signalled mid-run

S = STEPS_PER_EPOCH
SIGNALS = ["SIGTERM", "SIGINT", "SIGUSR2"]


def steps_in(path) -> int:
    return len(path.read_text()) if path.exists() else 0


def check_stopped_mid_epoch(run, steps_done: int) -> tuple[int, int]:
    """The folder of a gracefully stopped run: a checkpoint of the exact step, not finished."""
    state = checkpoint.load_latest(run)
    epoch, step = state["epoch"], state["step"]
    assert (epoch - 1) * S + step == steps_done, "the checkpoint is not where training stopped"
    assert 0 < step < S, f"stopped at epoch {epoch} step {step}: not mid-epoch"
    assert state["partial"] is not None and state["partial"]["losses"][:step].abs().sum() > 0
    assert not (run / store.RESULT).exists()
    assert store.read_run(run).state == "interrupted"
    assert f"stopped at epoch {epoch}, step {step}" in worker_log(run)
    return epoch, step


def resume_and_compare(run, workers, data_dir, reference, tmp_path, steps_done: int) -> None:
    count = tmp_path / "resume.steps"
    assert workers.run(run, data_dir, count_file=count) == 0, worker_log(run)
    assert steps_in(count) == 2 * S - steps_done, "the resumed launch did not start at the stopped step"
    assert_identical(snapshot(run), reference, "resumed")


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_checkpoints_at_the_next_step_boundary(sig, workers, data_dir, reference, tmp_path):
    """The signal arrives during step S+3 (epoch 2, after the LR drop): the checkpoint is
    (epoch 2, step 3), the first step not taken."""
    run = make_run(tmp_path / "results")
    count = tmp_path / "first.steps"
    code = workers.run(run, data_dir, [f"step:{S + 3}:{sig}"], count_file=count)
    assert code == EXIT_INTERRUPTED, worker_log(run)
    assert steps_in(count) == S + 3
    assert check_stopped_mid_epoch(run, S + 3) == (2, 3)
    resume_and_compare(run, workers, data_dir, reference, tmp_path, S + 3)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_from_another_process_mid_epoch(sig, workers, data_dir, reference, tmp_path):
    """As a scheduler would: another process signals the live worker while it trains."""
    run = make_run(tmp_path / "results")
    count = tmp_path / "first.steps"
    proc = workers.start(run, data_dir, count_file=count, slow=0.25)
    wait_for(lambda: steps_in(count) >= 1, 120, "a training step", proc)
    os.kill(proc.pid, getattr(signal, sig))
    proc.join(120)
    assert proc.exitcode == EXIT_INTERRUPTED, worker_log(run)
    steps_done = steps_in(count)
    check_stopped_mid_epoch(run, steps_done)
    resume_and_compare(run, workers, data_dir, reference, tmp_path, steps_done)


def test_sigterm_to_a_fresh_worker_process(data_dir, workers, reference, tmp_path):
    """The same through a freshly started interpreter (the worker's command line, run by the fault
    wrapper only to count and slow the steps)."""
    run = make_run(tmp_path / "results")
    count = tmp_path / "first.steps"
    log = run.parent / f"{run.name}.worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "faultinject.py"), "--count", str(count), "--slow", "0.25", "--",
             str(run), "--data-dir", str(data_dir), "--device", "cpu"],
            cwd=REPO_ROOT, env=python_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: steps_in(count) >= 1 or proc.poll() is not None, 180, "a training step")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == EXIT_INTERRUPTED, worker_log(run)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in worker_log(run)
    steps_done = steps_in(count)
    check_stopped_mid_epoch(run, steps_done)
    resume_and_compare(run, workers, data_dir, reference, tmp_path, steps_done)


def test_a_stopped_timing_run_is_interrupted_keeps_nothing_and_measures_again(workers, data_dir, tmp_path):
    """Figure 4's measurement stops at the step after the signal too (one step of preact-ResNet-1001
    takes minutes on a CPU, so a stop may not wait for all of them): exit code 3 without a
    traceback, nothing kept (no result, no failure), and the next launch measures it whole."""
    run = make_run(tmp_path / "results")
    meta = read_json(run / store.CONFIG)
    atomic_write_json(run / store.CONFIG, {**meta, "kind": "timing",
                                           "timing": {"batch_size": 4, "warmup": 1, "repeats": 3}})
    assert workers.run(run, data_dir, ["step:2:SIGTERM"]) == EXIT_INTERRUPTED, worker_log(run)
    log = worker_log(run)
    assert "stopped at step 2 of the measurement; nothing kept" in log and "Traceback" not in log
    assert store.read_run(run).state == "todo" and not (run / store.FAILURE).exists()
    assert workers.run(run, data_dir) == 0, worker_log(run)
    record = store.read_run(run)
    assert record.state == "done" and record.result.timing.repeats == 3
