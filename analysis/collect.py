"""The run store of one spec as pandas frames: what every table and figure is computed from.

`collect` reads each run folder once (through `experiments.store`, the one reader of run folders) and
returns a `Collection`:

- ``runs``: one row per run folder, whatever its state: run id, label, state and reason, every
  resolved config field, the final-epoch metrics (and the best epoch's test error, for the
  comparison with implementations that report it), parameter count, timing and provenance;
- ``epochs``: the per-epoch metrics of every run, long format (one row per run and epoch);
- ``planned``: how many runs the spec asks for, so a report can say "12 of 30 done".

Only runs in state "done" are *finished*: they alone enter medians. Diverged, failed, corrupt and
unfinished runs stay in ``runs`` so they can be counted and listed, never averaged. The store has
already refused (as "corrupt") any result that lacks the numbers its kind must have
(`wrn.records.RunResult.check`), so every finished run has them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments import store
from experiments.plan import collapsed_rows, expand
from experiments.profiles import PAPER, Profile, load_profile
from experiments.schema import CONFIG_FIELDS
from experiments.store import METRICS, RunRecord, read_metrics
from wrn.records import RunResult

# result.json "final" -> column; prefixed where a config field has the same name (lr). ImageNet's
# top-1 and top-5 errors are the test errors.
FINAL_COLUMNS = {"epoch": "final_epoch", "test_error": "test_error", "test_loss": "test_loss",
                 "train_error": "train_error", "train_loss": "train_loss", "lr": "final_lr"}
RESULT_COLUMNS = ("params", "flops", "epoch_time_s", "train_time_s", "images_per_s")
# result.json "timing" -> column: time per minibatch in milliseconds.
TIMING_COLUMNS = {"ms_median": "time_ms", "ms_min": "time_ms_min", "ms_max": "time_ms_max",
                  "batch_size": "timing_batch_size", "repeats": "timing_repeats"}
PROVENANCE_COLUMNS = ("git_commit", "git_dirty", "host", "device_name", "started_at")
RUNTIME_COLUMNS = {"precision": "runtime_precision", "channels_last": "runtime_channels_last",
                   "tf32": "runtime_tf32", "compile": "runtime_compile", "torch": "torch",
                   "device": "device", "per_rank_batch": "per_rank_batch", "backend": "backend",
                   "input_pipeline": "input_pipeline"}

FINISHED = "done"


@dataclass
class Collection:
    """Everything the store holds for one spec, or for several (see the module docstring)."""

    spec: str
    kind: str
    runs: pd.DataFrame
    epochs: pd.DataFrame
    plan: list = field(default_factory=list)  # the spec's PlannedRuns under the profile
    profile: Profile | None = None
    notes: list[str] = field(default_factory=list)  # rows the profile made another row's run (`collapsed_rows`)

    @property
    def planned(self) -> int | None:
        return len(self.plan) if self.plan else None

    def describe(self) -> str:
        """What the runs summarised are: profile and data, device, precision and recipe, e.g. "profile
        smoke (generated data, 64 training and 32 test images), on cpu: AMD EPYC 9B14, fp32, recipe
        v1-2016-05"; several recipes are named with the networks of each."""
        head = self.profile.describe() if self.profile else "runs of several profiles"
        finished = self.finished
        if finished.empty:
            return f"{head}, no finished runs"
        devices = sorted({f"{device}: {name}" for device, name in zip(finished["device"], finished["device_name"],
                                                                        strict=True) if device})
        precisions = sorted({str(p) for p in finished["runtime_precision"].dropna()})
        return (f"{head}{_other_data(finished, self.profile)}, on {' and '.join(devices) or 'an unrecorded device'}, "
                f"{'/'.join(precisions) or '?'}{_processes(finished)}, {_recipes(finished)}")

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
        """One line on progress, e.g. "3 of 30 planned runs done; 1 diverged, 2 failed"."""
        counts = self.counts()
        done = counts.get(FINISHED, 0)
        head = (f"{done} of {self.planned} planned runs done" if self.planned is not None
                else f"{done} of {len(self.runs)} runs done")
        others = [f"{n} {state}" for state, n in counts.items() if state != FINISHED]
        return head + (f" ({len(self.runs)} run folders: {', '.join(others)})" if others else "")


def _other_data(runs: pd.DataFrame, profile: Profile | None) -> str:
    """", trained on data_source subset:5000:1000" when runs trained on other data than their profile
    describes (a `--set data_source=...`), so that a caption never calls a subset the real data."""
    if profile is None:
        return ""
    data = profile.data
    described = f"synthetic:{data['train_images']}:{data['test_images']}" if data else "real"
    others = sorted({str(source) for source in runs["data_source"].dropna()} - {described})
    return f", trained on data_source {', '.join(others)}" if others else ""


def _processes(runs: pd.DataFrame) -> str:
    """", data-parallel: 8 processes x 32 images (nccl)" for runs that several processes trained (with
    each process's share of a step's batch and the collectives' backend); nothing for single processes."""
    shared = runs[runs["world_size"].fillna(1).astype(int) > 1]
    if shared.empty:
        return ""
    kinds = sorted({(int(w), _int_or_none(b), str(k)) for w, b, k in
                    zip(shared["world_size"], shared["per_rank_batch"], shared["backend"], strict=True)})
    named = [f"{w} processes x {b if b is not None else '?'} images ({k})" for w, b, k in kinds]
    single = " and 1 process" if len(shared) < len(runs) else ""
    return f", data-parallel: {', '.join(named)}{single}"


def _int_or_none(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _recipes(runs: pd.DataFrame) -> str:
    """"recipe R", or "recipes R1 (networks), R2 (networks)" when the runs have several."""
    by_recipe = {recipe: sorted(set(group["label"].dropna())) for recipe, group in runs.groupby("recipe")}
    if len(by_recipe) == 1:
        return f"recipe {next(iter(by_recipe))}"
    return "recipes " + ", ".join(f"{recipe} ({', '.join(labels)})" for recipe, labels in by_recipe.items())


def hashable(value: Any) -> Any:
    """Lists (lr_milestones) become strings so that config columns can be grouped and joined on."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _result_columns(result: RunResult | None) -> dict[str, Any]:
    """The numbers of a run's result as columns (NaN where the result has none)."""
    final = result.final if result is not None else None
    timing = result.timing if result is not None else None
    row: dict[str, Any] = {column: _number(getattr(final, key, None)) for key, column in FINAL_COLUMNS.items()}
    row["top1_error"] = _number(getattr(final, "test_error", None))
    row["top5_error"] = _number(getattr(final, "test_top5_error", None))
    row.update({key: _number(getattr(result, key, None)) for key in RESULT_COLUMNS})
    row.update({column: _number(getattr(timing, key, None)) for key, column in TIMING_COLUMNS.items()})
    row["diverged_epoch"] = _number(result.diverged.epoch if result is not None and result.diverged else None)
    runtime = result.runtime if result is not None else None
    row.update({column: getattr(runtime, key, None) for key, column in RUNTIME_COLUMNS.items()})
    return row


def _provenance(rec: RunRecord) -> dict[str, Any]:
    provenance = store.read_provenance(rec.path)
    if provenance is None:
        return dict.fromkeys(PROVENANCE_COLUMNS)
    return {key: getattr(provenance, key) for key in PROVENANCE_COLUMNS}


def _run_row(rec: RunRecord, spec: str) -> dict[str, Any]:
    config = rec.config.to_dict() if rec.config is not None else None
    row: dict[str, Any] = {"run_id": rec.run_id, "spec": spec, "planned_by": rec.spec, "label": rec.label,
                           "state": rec.state, "reason": rec.reason, "epochs_done": rec.epochs_done,
                           "path": str(rec.path), "config": config}
    if config is not None:
        row.update({name: hashable(config[name]) for name in CONFIG_FIELDS})
    row.update(_result_columns(rec.result))
    row["finished_at"] = rec.finished_at
    row.update(_provenance(rec))
    return row


def _epoch_rows(rec: RunRecord) -> list[dict[str, Any]]:
    return [line for line in read_metrics(rec.path / METRICS) if isinstance(line, dict)]


def _best_test_error(row: dict[str, Any], epochs: list[dict[str, Any]]) -> float:
    """The lowest test error of any epoch of a finished run: what an implementation that reports its
    best test epoch would publish (the suite reports the final one)."""
    errors = [e["test_error"] for e in epochs if isinstance(e.get("test_error"), (int, float))]
    return min(errors) if row["state"] == FINISHED and errors else math.nan


def collect(results: Path, spec: str, kind: str, plan: list, records: list[RunRecord] | None = None,
            profile: Profile | None = None) -> Collection:
    """The runs under `results` that belong to `plan`, the spec's planned runs (`experiments.plan.expand`),
    by the run store's one rule (`experiments.store.runs_of`): every seed of every network it plans,
    whichever spec planned the run first. The plan also gives the number of runs the spec asks for and
    the names of networks nobody has run yet. `records`: the store's records, when already read."""
    records = store.all_runs(Path(results)) if records is None else records
    rows, epoch_rows = [], []
    for rec in store.runs_of(records, plan):
        row = _run_row(rec, spec)
        epochs = _epoch_rows(rec)
        row["best_test_error"] = _best_test_error(row, epochs)
        rows.append(row)
        epoch_rows.append(epochs)
    return Collection(spec=spec, kind=kind, runs=_runs_frame(rows), epochs=_epochs_frame(epoch_rows, rows),
                      plan=list(plan or []), profile=profile)


def _runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["run_id", "spec", "planned_by", "label", "state", "reason", "epochs_done", "path", "config",
               *CONFIG_FIELDS, "device", "device_name", "runtime_precision",
               *FINAL_COLUMNS.values(), "best_test_error", "top1_error", "top5_error", *RESULT_COLUMNS,
               *TIMING_COLUMNS.values()]
    runs = pd.DataFrame(rows)
    for name in columns:
        if name not in runs.columns:
            runs[name] = None
    return runs


def _epochs_frame(epoch_rows: list[list[dict[str, Any]]], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per epoch of each run (`epoch_rows[i]` are run `rows[i]`'s), with its run's id, state,
    label and config fields. Built a column at a time: a store of thousands of runs has millions."""
    counts = [len(epochs) for epochs in epoch_rows]
    if not sum(counts):
        return pd.DataFrame(columns=["run_id", "state", "epoch", "label", *CONFIG_FIELDS])
    owner = np.repeat(np.arange(len(rows)), counts)
    per_run = pd.DataFrame([{"run_id": r["run_id"], "state": r["state"], "label": r["label"],
                             **{f: r.get(f) for f in CONFIG_FIELDS}} for r in rows])
    repeated = per_run.take(owner).reset_index(drop=True)
    metrics = pd.DataFrame.from_records([line for epochs in epoch_rows for line in epochs])
    config = repeated.drop(columns=["run_id", "state"])
    both = set(metrics.columns) & set(config.columns)  # "lr": the epoch's rate and the config's base rate
    metrics = metrics.rename(columns={name: f"{name}_x" for name in both})
    config = config.rename(columns={name: f"{name}_y" for name in both})
    return pd.concat([repeated[["run_id", "state"]], metrics, config], axis=1)


def collect_spec(spec, results: Path, profile: Profile | str = PAPER, overrides: dict | None = None,
                 records: list[RunRecord] | None = None) -> Collection:
    """`collect` for a loaded `experiments.spec.Spec`, planned under `profile` and `overrides` (the
    launch's --set)."""
    profile = profile if isinstance(profile, Profile) else load_profile(profile)
    collection = collect(results, spec.name, spec.kind, expand(spec, profile, overrides), records, profile)
    return dataclasses.replace(collection, notes=collapsed_rows(spec, profile, overrides))


def collect_all(results: Path, specs, profile: Profile | str = PAPER) -> Collection:
    """The runs of several specs in one frame (column ``spec`` tells them apart)."""
    records = store.all_runs(Path(results))
    parts = [collect_spec(spec, results, profile, records=records) for spec in specs]
    runs = pd.concat([p.runs for p in parts], ignore_index=True) if parts else _runs_frame([])
    epochs = pd.concat([p.epochs for p in parts if len(p.epochs)], ignore_index=True) \
        if any(len(p.epochs) for p in parts) else _epochs_frame([], [])
    return Collection(spec="all", kind="mixed", runs=runs, epochs=epochs,
                      plan=[run for p in parts for run in p.plan])
