"""The run store: one folder per run, `<results>/runs/<run_id>/`.

A run id is a stable hash of the fully resolved config, so it does not depend on key order, on where
a run sits in a spec's grid or on which spec asked for it: a network that several specs list (Table
5's WRN-28-10 is also Table 6's and Figure 2's) is one run, trained once and counted by every spec.
Which runs a spec's table holds is not the folder layout but a rule (`runs_of`): the runs whose
network, the config with the seed set aside, is one the spec plans under the profile. A changed config
is a new run rather than an overwrite. Earlier versions stored runs per spec,
`<results>/runs/<spec>/<run_id>/`; those folders are read, and resumed, where they are.

Files of a run folder (each written atomically, `wrn.files`):
- ``config.json``      {"run_id", "spec" (the spec that planned it first), "profile" (the profile
                       it was launched under, as `--profile` takes it), "label", "config": resolved
                       RunConfig, "created_at"}
- ``provenance.json``  git commit and dirty flag, package versions, host, device (per start)
- ``metrics.jsonl``    one JSON line per finished epoch (written by `wrn.train`)
- ``checkpoint.pt``    the last good checkpoint (and ``checkpoint.prev.pt``, the one before)
- ``result.json``      `wrn.results.RunResult` with run_id, spec, label and finished_at; written
                       last: its presence is what "finished" means
- ``failure.json``     the error of a run that raised (removed when the run is retried)
- ``slurm.json``       the SLURM job that owns the run, when submitted to a cluster
- ``lock.json``        the live owner of the run (see `experiments.locking`)
- ``tensorboard/``      the metrics rows as TensorBoard events (`wrn.tensorboard`), when installed
"""

from __future__ import annotations

import dataclasses
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


# RunConfig fields added after runs were first stored, with the value every earlier run had: a field
# holding it is left out of the run id, so those runs keep their ids (and their folders).
LATER_FIELDS: dict[str, Any] = {"world_size": 1, "sync_bn": False, "lr_scaling": "none", "warmup_epochs": 0,
                                "color_augment": False, "input_pipeline": "auto", "data_order": "per_seed",
                                "warmup_steps": 0, "warmup_lr": None}


def run_id(config: RunConfig, timing: dict[str, int] | None = None) -> str:
    """First 12 hex digits of the sha256 of the resolved config's canonical JSON; for a timing
    measurement (Figure 4), of the config and the `timing` block together. A measurement of a network
    is not a training of it even where their configs agree (the smoke profile trains at the batch it
    times), so the two never share a run folder."""
    identity: dict[str, Any] = resolve(config).to_dict()
    for name, default in LATER_FIELDS.items():
        if identity[name] == default:
            del identity[name]
    if timing is not None:
        identity = {"config": identity, "timing": timing}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def runs_root(results: Path) -> Path:
    return Path(results) / "runs"


def run_dir(results: Path, rid: str) -> Path:
    """The folder of run `rid`: where it is (`runs/<rid>/`, or a per-spec folder of the earlier
    layout), else where a new one goes, `runs/<rid>/`."""
    flat = runs_root(results) / rid
    if flat.is_dir():
        return flat
    legacy = sorted(p for p in runs_root(results).glob(f"*/{rid}") if p.is_dir())
    if legacy:  # the earlier layout kept a run once per spec that listed it: a finished one first
        return next((p for p in legacy if (p / RESULT).exists()), legacy[0])
    return flat


def run_folders(results: Path) -> list[Path]:
    """Every run folder under `results`, in either layout (one per run id), sorted by run id."""
    root = runs_root(results)
    if not root.is_dir():
        return []
    ids = set()
    for path in root.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        if (path / CONFIG).exists() or not any(child.is_dir() for child in path.iterdir()):
            ids.add(path.name)
        else:
            ids.update(child.name for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    return [run_dir(results, rid) for rid in sorted(ids)]


def all_runs(results: Path) -> list[RunRecord]:
    return [read_run(path) for path in run_folders(results)]


def network(config: RunConfig | dict[str, Any]) -> RunConfig:
    """A run's network, what a table's cell is: its config with the seed set aside."""
    config = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    return dataclasses.replace(config, seed=0)


def runs_of(records: list[RunRecord], planned) -> list[RunRecord]:
    """The records that belong to a plan (a list of `PlannedRun`s): those whose network the plan
    lists, whatever their seed, and those whose run id it lists (a damaged folder has no network).
    A timing measurement belongs only to timing plans, a training run only to training plans. The one
    rule by which the runner, the status command and the analysis select a spec's runs."""
    networks = {(network(p.config), p.timing is not None) for p in planned}
    ids = {p.run_id for p in planned}
    return [r for r in records if r.run_id in ids
            or (r.config is not None and (network(r.config), r.kind == "timing") in networks)]


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
    state: str
    spec: str | None = None  # the spec that planned the run first
    profile: str | None = None  # the profile it was launched under (None: recorded before profiles were)
    label: str | None = None
    kind: str = "train"  # "timing" for a Figure 4 measurement
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
    rec = RunRecord(path=path, run_id=path.name, state="todo")
    try:
        meta = read_json(path / CONFIG)
        RunConfig.from_dict(meta["config"])
        rec.label, rec.config = meta["label"], meta["config"]
        rec.spec, rec.profile, rec.kind = meta.get("spec"), meta.get("profile"), meta.get("kind", "train")
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
