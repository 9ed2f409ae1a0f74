"""Shared pieces of the reliability tests (their fixtures are registered in conftest.py): a tiny
run (WRN-10-1 on 128 generated CIFAR-10 images, 8 steps per epoch, 2 epochs), real worker processes started from a forkserver that has imported
torch once, and comparisons of two run folders bit for bit."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from experiments import store  # noqa: E402
from wrn import checkpoint  # noqa: E402
from wrn.config import RunConfig, resolve  # noqa: E402
from wrn.data.fake import write_fake_dataset  # noqa: E402
from wrn.files import atomic_write_json, read_json  # noqa: E402

N_TRAIN, N_TEST, BATCH, EPOCHS = 128, 32, 16, 2
STEPS_PER_EPOCH = N_TRAIN // BATCH
METRIC_TIME_FIELDS = ("train_time_s", "images_per_s")
RESULT_TIME_FIELDS = ("epoch_time_s", "train_time_s", "images_per_s", "finished_at")
SPEC = "reliability"


def tiny_config(**overrides) -> RunConfig:
    fields = dict(dataset="cifar10", data_source=f"synthetic:{N_TRAIN}:{N_TEST}", depth=10, k=1,
                  preprocessing="meanstd", epochs=EPOCHS,
                  batch_size=BATCH, eval_batch_size=N_TEST, lr_milestones=(2,), seed=0)
    fields.update(overrides)
    return resolve(RunConfig(**fields))


def make_run(results: Path, cfg: RunConfig | None = None, spec: str = SPEC) -> Path:
    """A run folder with its config.json, as `experiments.run` materialises it."""
    cfg = cfg or tiny_config()
    rid = store.run_id(cfg)
    path = store.run_dir(results, rid)
    path.mkdir(parents=True)
    atomic_write_json(path / store.CONFIG, {
        "run_id": rid, "spec": spec, "label": "WRN-10-1", "kind": "train", "config": cfg.to_dict(),
        "created_at": "2024-01-01T00:00:00Z"})
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reliability-data")
    write_fake_dataset("cifar10", root, N_TRAIN, N_TEST, seed=0)
    return root


class Workers:
    """Starts `experiments.worker.main` in real processes forked from a server that preloaded torch."""

    def __init__(self):
        from multiprocessing import forkserver

        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["faultinject"])
        # Python 3.11's forkserver ignores the parent's sys.path: hand it over through PYTHONPATH
        # while the server starts, so that its preload (torch and the suite) really happens.
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO_ROOT)] + ([saved] if saved else []))
        try:
            forkserver.ensure_running()
        finally:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved

    def start(self, run_dir: Path, data_dir: Path, faults=(), count_file=None, slow=0.0, log=None):
        import faultinject

        argv = [str(run_dir), "--data-dir", str(data_dir), "--device", "cpu"]
        log = str(log) if log is not None else str(run_dir.parent / f"{run_dir.name}.worker.log")
        proc = self.ctx.Process(target=faultinject.child,
                                args=(list(faults), argv, None if count_file is None else str(count_file),
                                      slow, log))
        proc.start()
        return proc

    def run(self, run_dir: Path, data_dir: Path, faults=(), timeout: float = 180, **kwargs) -> int:
        proc = self.start(run_dir, data_dir, faults, **kwargs)
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            pytest.fail(f"worker on {run_dir} still running after {timeout}s")
        return proc.exitcode


@pytest.fixture(scope="session")
def workers() -> Workers:
    return Workers()


def worker_log(run_dir: Path) -> str:
    path = run_dir.parent / f"{run_dir.name}.worker.log"
    return path.read_text() if path.exists() else ""


def wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and not proc.is_alive():
            pytest.fail(f"process ended (exit {proc.exitcode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def metrics_rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in METRIC_TIME_FIELDS}
            for row in store.read_metrics(run_dir / store.METRICS)]


def snapshot(run_dir: Path) -> dict:
    """Everything of a finished run that must not depend on interruptions (wall times excluded)."""
    result = read_json(run_dir / store.RESULT)
    state = checkpoint.load_latest(run_dir)
    history = [{k: v for k, v in row.items() if k not in METRIC_TIME_FIELDS} for row in state["history"]]
    return {
        "metrics": metrics_rows(run_dir),
        "result": {k: v for k, v in result.items() if k not in RESULT_TIME_FIELDS},
        "model": state["model"],
        "optimizer": state["optimizer"],
        "position": (state["epoch"], state["step"]),
        "history": history,
    }


def assert_identical(a, b, where: str = "") -> None:
    """Equal bit for bit: tensors with torch.equal, floats with ==, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: tensors differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="session")
def reference(workers, data_dir, tmp_path_factory) -> dict:
    """The uninterrupted run every interrupted one must reproduce exactly."""
    run = make_run(tmp_path_factory.mktemp("reference") / "results")
    code = workers.run(run, data_dir)
    assert code == 0, worker_log(run)
    snap = snapshot(run)
    assert [r["epoch"] for r in snap["metrics"]] == list(range(1, EPOCHS + 1))
    return snap


def json_files_parse(run_dir: Path) -> None:
    """Every JSON file a reader might pick up is whole (temp files are hidden dot-files)."""
    for path in run_dir.iterdir():
        if path.suffix == ".json" and not path.name.startswith("."):
            try:
                json.loads(path.read_text())
            except ValueError as e:
                pytest.fail(f"{path.name} is not valid JSON after a kill: {e}")


def tree(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and mtime (empty if `path` does not exist)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*"))}


def python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


USER_SPEC = '''\
name = "{name}"
title = "Reliability: two tiny networks"
paper_ref = "none (a test spec)"
description = "Two WRN-10 networks on CIFAR-10, for the reliability tests."
kind = "train"
seeds = 1
metrics = ["test_error"]

[base]
dataset = "cifar10"
arch = "wrn"
depth = 10
preprocessing = "meanstd"
dropout = false

[[rows]]
k = 1

[[rows]]
k = 2

[table]
rows = ["k"]
metric = "test_error"
'''


def write_spec(folder: Path, name: str = "reliability_tiny", text: str | None = None) -> Path:
    """A user spec file (by path, so it may not take a shipped spec's name)."""
    path = Path(folder) / f"{name}.toml"
    path.write_text(USER_SPEC.format(name=name) if text is None else text)
    return path
