"""The run store of one spec as pandas frames: what every table and figure is computed from.

`collect` reads each run folder once (through `experiments.store`, the one reader of run folders) and
returns a `Collection`:

- ``runs``: one row per run folder, whatever its state: run id, label, state and reason, every
  resolved config field, the final-epoch metrics, parameter count, timing and provenance;
- ``epochs``: the per-epoch metrics of every run, long format (one row per run and epoch);
- ``planned``: how many runs the spec asks for, so a report can say "12 of 30 done".

Only runs in state "done" are *finished*: they alone enter medians. Diverged, failed, corrupt and
unfinished runs stay in ``runs`` so they can be counted and listed, never averaged. A "done" result
that lacks the numbers its kind must have (a final test error, or a timing block) is unreadable and is
reported as "corrupt", as the store does for a result file it cannot parse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.store import METRICS, PROVENANCE, RunRecord, read_json, read_metrics, spec_runs
from wrn.config import RunConfig

CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))

# result.json "final" -> column; prefixed where a config field has the same name (lr).
FINAL_COLUMNS = {"epoch": "final_epoch", "test_error": "test_error", "test_loss": "test_loss",
                 "train_error": "train_error", "train_loss": "train_loss", "lr": "final_lr"}
RESULT_COLUMNS = ("params", "flops", "epoch_time_s", "train_time_s", "images_per_s")
# result.json "timing" -> column: time per minibatch in milliseconds.
TIMING_COLUMNS = {"ms_median": "time_ms", "ms_min": "time_ms_min", "ms_max": "time_ms_max",
                  "batch_size": "timing_batch_size", "repeats": "timing_repeats"}
PROVENANCE_COLUMNS = ("git_commit", "git_dirty", "host", "device_name", "started_at")
RUNTIME_COLUMNS = {"precision": "runtime_precision", "channels_last": "runtime_channels_last",
                   "tf32": "runtime_tf32", "compile": "runtime_compile", "torch": "torch",
                   "device": "device"}

FINISHED = "done"
UNFINISHED_STATES = ("todo", "queued", "running", "interrupted")


@dataclass
class Collection:
    """Everything the store holds for one spec (see the module docstring)."""

    spec: str
    kind: str
    runs: pd.DataFrame
    epochs: pd.DataFrame
    planned: int | None = None

    @property
    def finished(self) -> pd.DataFrame:
        """Runs that count: state "done" with their numbers present."""
        return self.runs[self.runs["state"] == FINISHED]

    @property
    def excluded(self) -> pd.DataFrame:
        """Runs that are listed but never enter a median, with their state and reason."""
        return self.runs[self.runs["state"] != FINISHED]

    def counts(self) -> dict[str, int]:
        """Number of run folders per state (states with no run are left out)."""
        return {str(k): int(v) for k, v in self.runs["state"].value_counts().sort_index().items()}

    def summary_line(self) -> str:
        """One line on progress, e.g. "3 of 30 runs done; 1 diverged, 2 failed, 24 not started"."""
        counts = self.counts()
        done = counts.get(FINISHED, 0)
        total = self.planned if self.planned is not None else len(self.runs)
        parts = [f"{n} {state}" for state, n in counts.items() if state != FINISHED]
        if self.planned is not None:
            missing = self.planned - len(self.runs[self.runs["in_plan"]])
            if missing > 0:
                parts.append(f"{missing} not started")
            stale = int((~self.runs["in_plan"]).sum())
            if stale:
                parts.append(f"{stale} not in the current plan")
        return f"{done} of {total} runs done" + (f"; {', '.join(parts)}" if parts else "")


def _hashable(value: Any) -> Any:
    """Lists (lr_milestones) become strings so that config columns can be grouped and joined on."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _check_numbers(rec: RunRecord, kind: str) -> str:
    """Why a "done" result cannot be analysed, or "" when it can."""
    result = rec.result or {}
    if kind == "timing":
        timing = result.get("timing")
        if not isinstance(timing, dict) or not math.isfinite(_number(timing.get("ms_median"))):
            return "unreadable result.json: no timing.ms_median"
        return ""
    final = result.get("final")
    if not isinstance(final, dict) or not math.isfinite(_number(final.get("test_error"))):
        return "unreadable result.json: no finite final.test_error"
    return ""


def _run_row(rec: RunRecord, kind: str) -> dict[str, Any]:
    row: dict[str, Any] = {"run_id": rec.run_id, "spec": rec.spec, "label": rec.label,
                           "state": rec.state, "reason": rec.reason, "epochs_done": rec.epochs_done,
                           "path": str(rec.path)}
    if isinstance(rec.config, dict):
        for name in CONFIG_FIELDS:
            row[name] = _hashable(rec.config.get(name))
    if rec.state == FINISHED:
        problem = _check_numbers(rec, kind)
        if problem:
            row["state"], row["reason"] = "corrupt", problem
    result = rec.result if isinstance(rec.result, dict) else {}
    final = result.get("final") if isinstance(result.get("final"), dict) else {}
    for key, column in FINAL_COLUMNS.items():
        row[column] = _number(final.get(key))
    for key in RESULT_COLUMNS:
        row[key] = _number(result.get(key))
    timing = result.get("timing") if isinstance(result.get("timing"), dict) else {}
    for key, column in TIMING_COLUMNS.items():
        row[column] = _number(timing.get(key))
    diverged = result.get("diverged") if isinstance(result.get("diverged"), dict) else {}
    row["diverged_epoch"] = _number(diverged.get("epoch"))
    runtime = result.get("runtime") if isinstance(result.get("runtime"), dict) else {}
    for key, column in RUNTIME_COLUMNS.items():
        row[column] = runtime.get(key)
    row["finished_at"] = result.get("finished_at")
    try:
        provenance = read_json(rec.path / PROVENANCE)
    except (OSError, ValueError):
        provenance = {}
    if not isinstance(provenance, dict):
        provenance = {}
    for key in PROVENANCE_COLUMNS:
        row[key] = provenance.get(key)
    return row


def _epoch_rows(rec: RunRecord, state: str) -> list[dict[str, Any]]:
    rows = []
    for line in read_metrics(rec.path / METRICS):
        if isinstance(line, dict):
            rows.append({"run_id": rec.run_id, "state": state, **line})
    return rows


def collect(results: Path, spec: str, kind: str = "train", planned_ids: set[str] | None = None,
            ) -> Collection:
    """All run folders of `spec` under `results` (see the module docstring).

    `planned_ids` are the run ids the spec's current plan asks for; when given, ``planned`` is their
    number and ``runs["in_plan"]`` tells apart runs of an older version of the spec."""
    rows, epoch_rows = [], []
    for rec in spec_runs(Path(results), spec):
        row = _run_row(rec, kind)
        rows.append(row)
        epoch_rows.extend(_epoch_rows(rec, row["state"]))
    columns = ["run_id", "spec", "label", "state", "reason", "epochs_done", "path", *CONFIG_FIELDS]
    runs = pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)
    for name in columns:
        if name not in runs.columns:
            runs[name] = None
    runs["in_plan"] = runs["run_id"].isin(planned_ids) if planned_ids is not None else True
    runs["in_plan"] = runs["in_plan"].astype(bool)
    epochs = pd.DataFrame(epoch_rows) if epoch_rows else pd.DataFrame(columns=["run_id", "state", "epoch"])
    if len(epochs):
        config_cols = ["run_id", "label", *CONFIG_FIELDS]
        epochs = epochs.merge(runs[config_cols], on="run_id", how="left")
    return Collection(spec=spec, kind=kind, runs=runs, epochs=epochs,
                      planned=len(planned_ids) if planned_ids is not None else None)
