"""The run store: one folder per run, `<results>/runs/<spec>/<run_id>/`.

A run id is a stable hash of the fully resolved config, so it does not depend on key order or on where
a run sits in a spec's grid, and a changed config is a new run rather than an overwrite.

Files of a run folder (each written atomically, `wrn.files`):
- ``config.json``      {"run_id", "spec", "label", "config": resolved RunConfig, "created_at"}
- ``provenance.json``  git commit and dirty flag, package versions, host, device (per start)
- ``metrics.jsonl``    one JSON line per finished epoch (written by `wrn.train`)
- ``checkpoint.pt``    the last good checkpoint (and ``checkpoint.prev.pt``, the one before)
- ``result.json``      `wrn.results.RunResult` with run_id, spec, label and finished_at; written
                       last: its presence is what "finished" means
- ``failure.json``     the error of a run that raised (removed when the run is retried)
- ``slurm.json``       the SLURM job that owns the run, when submitted to a cluster
- ``lock.json``        the live owner of the run (see `experiments.locking`)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.locking import lock_is_live
from wrn.config import RunConfig, resolve
from wrn.files import read_json
from wrn.records import CHECKPOINT_FILE as CHECKPOINT
from wrn.records import METRICS_FILE as METRICS
from wrn.records import RunResult

CONFIG = "config.json"
PROVENANCE = "provenance.json"
RESULT = "result.json"
FAILURE = "failure.json"
SLURM = "slurm.json"
LOCK = "lock.json"

STATES = ("todo", "queued", "running", "interrupted", "done", "diverged", "failed", "corrupt")


def run_id(config: RunConfig) -> str:
    """First 12 hex digits of the sha256 of the resolved config's canonical JSON."""
    canonical = json.dumps(resolve(config).to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def runs_root(results: Path) -> Path:
    return Path(results) / "runs"


def run_dir(results: Path, spec: str, rid: str) -> Path:
    return runs_root(results) / spec / rid


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Per-epoch metrics. A torn last line (a kill mid-append) is dropped: it was never complete."""
    rows = []
    if not Path(path).exists():
        return rows
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


@dataclass
class RunRecord:
    """What the store knows of one run folder, read from its files alone (plus the lock's liveness)."""

    path: Path
    run_id: str
    spec: str
    state: str
    label: str | None = None
    config: dict[str, Any] | None = None
    result: RunResult | None = None
    finished_at: str | None = None
    failure: dict[str, Any] | None = None
    slurm: dict[str, Any] | None = None
    epochs_done: int = 0
    reason: str = ""


def read_run(path: Path) -> RunRecord:
    """Read one run folder into a `RunRecord`; never raises for a damaged folder (state "corrupt")."""
    path = Path(path)
    rec = RunRecord(path=path, run_id=path.name, spec=path.parent.name, state="todo")
    try:
        meta = read_json(path / CONFIG)
        RunConfig.from_dict(meta["config"])
        rec.label, rec.config = meta["label"], meta["config"]
    except FileNotFoundError:
        rec.reason = "no config.json"
        return rec
    except (OSError, ValueError, KeyError, TypeError) as e:
        rec.state, rec.reason = "corrupt", f"unreadable config.json: {e}"
        return rec
    rec.epochs_done = len(read_metrics(path / METRICS))
    if (path / SLURM).exists():
        try:
            rec.slurm = read_json(path / SLURM)
        except (OSError, ValueError):
            rec.slurm = None
    if (path / RESULT).exists():
        try:
            data = read_json(path / RESULT)
            rec.result = RunResult.from_dict(data)
            rec.finished_at = data.get("finished_at")
        except (OSError, ValueError) as e:
            rec.state, rec.reason = "corrupt", f"unreadable result.json: {e}"
            return rec
        rec.state = rec.result.status
        if rec.result.diverged is not None:
            d = rec.result.diverged
            rec.reason = f"loss {d.loss} at epoch {d.epoch}, step {d.step}"
        return rec
    if lock_is_live(path / LOCK):
        rec.state = "running"
        return rec
    if (path / FAILURE).exists():
        try:
            rec.failure = read_json(path / FAILURE)
            rec.reason = f"{rec.failure.get('error_type')}: {rec.failure.get('message')}"
        except (OSError, ValueError):
            rec.reason = "unreadable failure.json"
        rec.state = "failed"
        return rec
    if rec.slurm is not None and rec.slurm.get("active", False):
        rec.state = "queued"
        return rec
    if (path / CHECKPOINT).exists() or rec.epochs_done:
        rec.state = "interrupted"
        rec.reason = f"{rec.epochs_done} epochs done, resumable"
    return rec


def spec_runs(results: Path, spec: str) -> list[RunRecord]:
    """Every run folder of `spec` under `results`, sorted by run id."""
    root = runs_root(results) / spec
    if not root.is_dir():
        return []
    return [read_run(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
