"""Fake run folders in the run store's real format, for testing the analysis without training.

Each helper writes what `wrn.train` and the runner would leave behind for a run in a given state,
through the run store's own writers (`experiments.store`: docs/design.md, "The run store"), so the
analysis is tested through the same reader, `experiments.store.read_run`, that it uses on real
results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments import store
from experiments.store import run_dir, run_id
from wrn.config import RunConfig, resolve
from wrn.names import render_label
from wrn.records import Divergence, EpochMetrics, RunResult, RuntimeSettings, StepTiming

STATES = ("done", "diverged", "interrupted", "failed", "corrupt", "todo")


def make_config(**fields: Any) -> RunConfig:
    """A resolved config from RunConfig fields (paper defaults for everything not given)."""
    return resolve(RunConfig(**fields))


def write_run(results: Path, spec: str, config: RunConfig | dict[str, Any], *, state: str = "done",
              test_error: float = 5.0, epochs: int = 4, params: int = 1_000_000,
              epoch_time_s: float = 60.0, timing: dict[str, Any] | None = None,
              label: str | None = None, profile: str = "paper", precision: str = "fp32", dip: float = 0.0,
              device_name: str = "cpu", device: str = "cpu", images_per_s: float = 800.0) -> Path:
    """Write one run folder of `spec` in `state` and return it.

    A "done" train run has `epochs` lines of metrics ending at `test_error`, the epoch before the last
    `dip` below it (its best epoch, when `dip` > 0), and a result computed in `precision`; a timing run
    (pass `timing`, e.g. {"ms_median": 68.0}) has a result with a timing block and no final metrics."""
    if state not in STATES:
        raise ValueError(f"state={state!r}: allowed {', '.join(STATES)}")
    cfg = make_config(**config) if isinstance(config, dict) else resolve(config)
    measured = None if timing is None else {"batch_size": cfg.batch_size, "warmup": 1, "repeats": 2}
    rid = run_id(cfg, measured)
    path = run_dir(Path(results), rid)
    path.mkdir(parents=True, exist_ok=True)
    label = label or render_label(cfg)
    meta = store.RunMeta(rid, spec, label, cfg, "2024-01-01T00:00:00Z", profile,
                         "train" if timing is None else "timing", measured)
    store.write_meta(path, meta)
    if state == "todo":
        return path
    store.write_provenance(path, store.Provenance(
        git_commit="0" * 40, git_dirty=False, started_at="2024-01-01T00:00:00Z",
        runtime=_runtime(cfg, precision, device_name, device), packages={"torch": "2.14.1"}, python="3.12",
        host="testhost"))
    n_epochs = epochs if state in ("done", "diverged") else max(1, epochs // 2)
    if timing is None:
        lines = [_epoch_line(cfg, e, epochs, test_error) for e in range(1, n_epochs + 1)]
        if dip and n_epochs > 1:
            lines[-2]["test_error"] = test_error - dip
        (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if state == "interrupted":
        (path / "checkpoint.pt").write_bytes(b"fake checkpoint")
    elif state == "failed":
        store.write_failure(path, store.Failure("RuntimeError", "CUDA out of memory", "...", "2024-01-01T01:00:00Z"))
    elif state == "corrupt":
        (path / "result.json").write_text('{"run_id": "' + rid + '", "status": "do')  # a torn write
    elif state in ("done", "diverged"):
        store.write_result(path, meta, _result(cfg, state, test_error, epochs, params, epoch_time_s, timing,
                                               precision, device_name, device, images_per_s),
                           finished_at="2024-01-02T00:00:00Z")
    return path


def _epoch_line(cfg: RunConfig, epoch: int, epochs: int, final_error: float) -> dict[str, Any]:
    progress = epoch / epochs
    return {"epoch": epoch, "lr": cfg.lr_at(epoch), "train_loss": 2.0 * (1 - progress) + 0.01,
            "train_error": 60.0 * (1 - progress), "test_loss": 1.5 * (1 - progress) + 0.2,
            "test_error": final_error + 40.0 * (1 - progress), "train_time_s": 60.0,
            "images_per_s": 800.0}


def _runtime(cfg: RunConfig, precision: str, device_name: str, device: str) -> RuntimeSettings:
    return RuntimeSettings(device=device, device_name=device_name, precision=precision, channels_last=False,
                           tf32=False, compile=False, torch="2.14.1", threads=1, world_size=cfg.world_size,
                           per_rank_batch=cfg.batch_size // cfg.world_size,
                           backend="gloo" if cfg.world_size > 1 else "none")


def _result(cfg, state, test_error, epochs, params, epoch_time_s, timing, precision, device_name, device,
            images_per_s) -> RunResult:
    diverged = state == "diverged"
    final = None
    if timing is None and not diverged:
        final = EpochMetrics(epoch=epochs, lr=cfg.lr_at(epochs), train_loss=0.01, train_error=0.1,
                             test_loss=0.2, test_error=test_error, test_top5_error=0.5)
    timing_block = None
    if timing is not None:
        ms = float(timing["ms_median"])
        timing_block = StepTiming(batch_size=32, ms_median=ms, ms_min=timing.get("ms_min", ms * 0.98),
                                  ms_max=timing.get("ms_max", ms * 1.05), repeats=20)
    return RunResult(
        kind="timing" if timing else "train", status=state, final=final,
        diverged=Divergence(epoch=epochs, step=17, loss="nan") if diverged else None,
        params=params, flops=2 * params, epoch_time_s=epoch_time_s, train_time_s=epoch_time_s * epochs,
        images_per_s=images_per_s, timing=timing_block, runtime=_runtime(cfg, precision, device_name, device))
