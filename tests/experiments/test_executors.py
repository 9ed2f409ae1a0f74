"""The local executor's account of its runs: every run counted after a stop, a resumed run said to
resume where its checkpoint is and its earlier epochs never reported again, a silent run's progress
shown, and every line naming the run's dataset and seed. The workers are `tests/hooks/stub_worker.py`
(real processes, no torch), so each test takes a second or two."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from experiments import executors, store, worker
from experiments.executors import plan_slots, run_local
from wrn import checkpoint
from wrn.config import RunConfig, resolve
from wrn.files import atomic_write_json

HOOKS = Path(__file__).resolve().parents[1] / "hooks"


@pytest.fixture
def stub(monkeypatch):
    """The local executor starts the stub worker, in the mode a test sets."""
    import stub_worker  # tests/hooks, on the path by conftest.py

    assert stub_worker.EXIT_INTERRUPTED == worker.EXIT_INTERRUPTED
    monkeypatch.setattr(executors, "WORKER", "stub_worker")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")]))
    return lambda mode: monkeypatch.setenv("WRN_TEST_STUB", mode)


def make_runs(results: Path, n: int, dataset: str = "cifar100") -> list[Path]:
    paths = []
    for seed in range(n):
        cfg = resolve(RunConfig(dataset=dataset, depth=10, k=1, data_source="synthetic:64:32", epochs=2, seed=seed))
        path = store.run_dir(results, store.run_id(cfg))
        path.mkdir(parents=True)
        atomic_write_json(path / store.CONFIG, {"run_id": path.name, "spec": "s", "label": "WRN-10-1", "kind": "train",
                                                "config": cfg.to_dict(), "created_at": "now"})
        paths.append(path)
    return paths


def interrupt_on(prefix: str, lines: list[str]):
    """A launcher log that keeps its lines and presses Ctrl-C at the first line starting with `prefix`."""
    def log(line: str) -> None:
        lines.append(line)
        if line.startswith(prefix) and sum(x.startswith(prefix) for x in lines) == 1:
            os.kill(os.getpid(), signal.SIGINT)
    return log


def test_a_stop_counts_every_run_of_the_launch(stub, tmp_path):
    """Ctrl-C while the first of four runs trains: it is interrupted, the three others are counted as
    not started (none vanishes from the count), and the run store agrees."""
    stub("stop")
    runs = make_runs(tmp_path / "results", 4)
    lines: list[str] = []
    counts = run_local(runs, None, plan_slots(1), interrupt_on("epoch", lines))
    assert {k: v for k, v in counts.items() if v} == {"interrupted": 1, "not started": 3}, lines
    assert lines[-1].strip() == "1 interrupted, 3 not started", lines
    assert any(line.startswith("stopping: 1 running run(s) checkpoint and exit; 3 not started") for line in lines)
    assert [store.read_run(p).state for p in runs] == ["interrupted", "todo", "todo", "todo"]


def test_a_worker_stopped_before_it_could_take_the_stop_is_not_started_not_failed(stub, tmp_path):
    """The stop's SIGTERM kills a worker that has not set its handler yet (still importing torch): it
    left nothing behind, so it is a run not started, not a failure."""
    stub("deaf")
    runs = make_runs(tmp_path / "results", 2)
    lines: list[str] = []
    counts = run_local(runs, None, plan_slots(1), interrupt_on("start", lines))
    assert {k: v for k, v in counts.items() if v} == {"not started": 2}, lines
    assert not any("failed" in line for line in lines), lines


def test_a_resumed_run_says_where_it_resumes_and_replays_no_epoch(stub, tmp_path):
    """A run stopped at epoch 2, step 3, with epoch 1 in its metrics.jsonl: the launcher says "resume
    ... at epoch 2, step 3" and reports no epoch 1 (already there) as news."""
    stub("finish")
    run, = make_runs(tmp_path / "results", 1)
    (run / store.METRICS).write_text(json.dumps({"epoch": 1, "test_error": 80.0, "images_per_s": 10.0}) + "\n")
    checkpoint.save({"model": {"w": torch.zeros(1)}, "history": [{"epoch": 1}], "epoch": 2, "step": 3,
                     "partial": None, "diverged": None}, run)
    lines: list[str] = []
    counts = run_local([run], None, plan_slots(1), lines.append)
    assert counts["done"] == 1, lines
    assert lines[0].startswith(f"resume WRN-10-1 cifar100 seed 0 [{run.name}] at epoch 2, step 3 on CPU"), lines
    assert not any(line.startswith("epoch") for line in lines), lines
    assert lines[1] == f"done   WRN-10-1 cifar100 seed 0 [{run.name}]"


def test_new_epochs_and_a_silent_run_are_reported_with_its_dataset_and_seed(stub, tmp_path, monkeypatch):
    """Every line names the run with its dataset and seed; a run silent for HEARTBEAT_S gets a line with
    the last progress its worker logged in this launch (an earlier launch's lines are not news)."""
    stub("stop")
    monkeypatch.setattr(executors, "HEARTBEAT_S", 0.2)
    run, = make_runs(tmp_path / "results", 1, dataset="svhn")
    (run / "train.log").write_text("progress: epoch 9: stale, from an earlier launch\n")
    lines: list[str] = []
    run_local([run], None, plan_slots(1), interrupt_on("still", lines))
    name = f"WRN-10-1 svhn seed 0 [{run.name}]"
    assert f"epoch  {name}: epoch 1 test error 50.00% (100 img/s)" in lines
    assert f"still  {name}: epoch 2: 1 of 8 steps done, 00:10 elapsed" in lines, lines
    assert all(name in line for line in lines if not line.startswith(("stopping", " "))), lines


# ------------------------------------------------------------------------------------------------
# Distributed runs: a run's processes, started together by the local executor


def test_a_distributed_run_waits_for_its_processes_slots():
    cpu2 = [executors.Slot(gpu=None, threads=1), executors.Slot(gpu=None, threads=1)]
    assert executors.take_slots(cpu2, cpu2, 2) == (cpu2, cpu2)
    assert executors.take_slots(cpu2[:1], cpu2, 2) is None  # one of its two slots is busy
    one = [executors.Slot(gpu=None, threads=2)]
    per_process, held = executors.take_slots(one, one, 2)  # fewer slots than processes: they share the cores
    assert [s.threads for s in per_process] == [1, 1] and held == one
    gpus = [executors.Slot(gpu=g, threads=4) for g in (0, 1)] * 2  # two runs per GPU
    per_process, held = executors.take_slots(gpus, gpus, 2)
    assert sorted(s.gpu for s in per_process) == [0, 1]  # one GPU per process, never two ranks on one
    assert executors.take_slots([gpus[0], gpus[2]], gpus, 2) is None


def test_a_run_of_more_processes_than_gpus_is_refused_before_it_starts(tmp_path):
    [path] = make_runs(tmp_path, 1)
    config = json.loads((path / store.CONFIG).read_text())
    config["config"]["world_size"] = 2
    (path / store.CONFIG).write_text(json.dumps(config))
    with pytest.raises(executors.UserError, match="world_size=2 .*needs 2 GPUs.*this launch has 1"):
        run_local([path], None, [executors.Slot(gpu=0, threads=1)], print)
    with pytest.raises(executors.UserError, match="world_size=2 .*--executor debug"):
        executors.run_debug([path], None, print)


def distributed_run(results: Path, data: Path) -> Path:
    from wrn.data.fake import write_fake_dataset

    write_fake_dataset("cifar100", data, n_train=64, n_test=32, seed=0)
    # epochs enough that a stop at the first epoch's line lands mid-run even on a loaded machine
    cfg = resolve(RunConfig(dataset="cifar100", depth=10, k=1, data_source="synthetic:64:32", epochs=12,
                            lr_milestones=(12,), batch_size=8, eval_batch_size=32, preprocessing="meanstd",
                            world_size=2))
    path = store.run_dir(results, store.run_id(cfg))
    path.mkdir(parents=True)
    atomic_write_json(path / store.CONFIG, {"run_id": path.name, "spec": "s", "label": "WRN-10-1", "kind": "train",
                                            "config": cfg.to_dict(), "created_at": "now"})
    return path


@pytest.mark.slow
def test_the_local_executor_trains_a_run_as_its_processes_and_resumes_it_after_a_stop(tmp_path):
    """Ctrl-C in the middle of a two-process run: both ranks stop at one step, rank 0's checkpoint
    is where the next launch resumes, and the run finishes as two processes."""
    path = distributed_run(tmp_path / "results", tmp_path / "data")
    lines: list[str] = []
    counts = run_local([path], tmp_path / "data", [executors.Slot(gpu=None, threads=2)], interrupt_on("epoch", lines))
    assert counts["interrupted"] == 1, lines
    assert any("CPU, 2 processes x1" in line for line in lines)
    epoch, step = executors.resume_point(path)
    lines = []
    counts = run_local([path], tmp_path / "data", [executors.Slot(gpu=None, threads=2)], lines.append)
    assert counts["done"] == 1, lines
    assert any(line.startswith("resume ") and f"at epoch {epoch}, step {step}" in line for line in lines)
    result = json.loads((path / store.RESULT).read_text())
    assert result["runtime"]["world_size"] == 2 and result["runtime"]["per_rank_batch"] == 4
    assert (path / "train.rank1.log").exists()
