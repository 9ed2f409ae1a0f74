"""The run store: one folder per run, `<results>/runs/<run_id>/`.

A run id is a stable hash of the fully resolved config, so it does not depend on key order, on where
a run sits in a spec's grid or on which spec asked for it: a network that several specs list (Table
5's WRN-28-10 is also Table 6's and Figure 2's) is one run, trained once and counted by every spec.
Which runs a spec's table holds is not the folder layout but a rule (`runs_of`): the runs whose
network, the config with the seed set aside, is one the spec plans under the profile. A changed config
is a new run rather than an overwrite. Earlier versions stored runs per spec,
`<results>/runs/<spec>/<run_id>/`; those folders are read, and resumed, where they are.

Files of a run folder, each a typed record of this module, written atomically (`wrn.files`) by its
`write_*` function and read by `read_run` or its `read_*` function, and by nothing else:
- ``config.json``      `RunMeta`: the run id, the spec that planned it first, the profile it was
                       launched under (as `--profile` takes it), its label, kind, resolved RunConfig,
                       creation time and, for a Figure 4 measurement, its timing plan
- ``provenance.json``  `Provenance`: git commit and dirty flag, package versions, host, the runtime
                       settings (rewritten at every start)
- ``result.json``      `wrn.records.RunResult` with run_id, spec, label and finished_at; written
                       last: its presence is what "finished" means
- ``failure.json``     `Failure`: the error of a run that raised (removed when the run is retried)
- ``slurm.json``       `SlurmSubmission`: the SLURM job that owns the run, when submitted to a cluster
The engine writes the rest of the folder itself (wrn/ imports nothing of the suite's other packages):
- ``metrics.jsonl``    one JSON line per finished epoch (`wrn.train`; read here by `read_metrics`)
- ``checkpoint.pt``    the last good checkpoint (and ``checkpoint.prev.pt``, the one before)
- ``tensorboard/``     the metrics rows as TensorBoard events (`wrn.tensorboard`), when installed
- ``lock.json``        the live owner of the run (`experiments.locking`)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from experiments.locking import lock_is_live
from wrn.config import RunConfig, resolve
from wrn.files import atomic_write_json, read_json
from wrn.records import CHECKPOINT_FILE as CHECKPOINT
from wrn.records import METRICS_FILE as METRICS
from wrn.records import RunResult, RuntimeSettings, timestamp

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
    layout), else where a new one goes, `runs/<rid>/`. For many runs at once, `run_dirs`."""
    flat = runs_root(results) / rid
    if flat.is_dir():
        return flat
    return run_dirs(results, [rid])[0]


def run_dirs(results: Path, ids: list[str]) -> list[Path]:
    """The folders of runs `ids`, as `run_dir` finds each, from one listing of the store."""
    index = _folder_index(results)
    return [index.get(rid, runs_root(results) / rid) for rid in ids]


def run_folders(results: Path) -> list[Path]:
    """Every run folder under `results`, in either layout (one per run id), sorted by run id."""
    index = _folder_index(results)
    return [index[rid] for rid in sorted(index)]


def _folder_index(results: Path) -> dict[str, Path]:
    """Run id -> folder, for every run folder under `results`: `runs/<rid>/`, else a per-spec folder
    of the earlier layout, which kept a run once per spec that listed it (a finished one first)."""
    root = runs_root(results)
    if not root.is_dir():
        return {}
    flat: dict[str, Path] = {}
    legacy: dict[str, list[Path]] = {}
    for path in root.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        children = None if (path / CONFIG).exists() else [c for c in path.iterdir() if c.is_dir()]
        if not children:
            flat[path.name] = path
        else:
            for child in children:
                if not child.name.startswith("."):
                    legacy.setdefault(child.name, []).append(child)
    for rid, paths in legacy.items():
        paths.sort()
        flat.setdefault(rid, next((p for p in paths if (p / RESULT).exists()), paths[0]))
    return flat


def all_runs(results: Path) -> list[RunRecord]:
    return [read_run(path) for path in run_folders(results)]


# --------------------------------------------------------------------------------------------------
# The records of a run folder


@dataclass(frozen=True)
class RunMeta:
    """config.json: what the run is, written once when it is first planned into the folder."""

    run_id: str
    spec: str  # the spec that planned it first
    label: str
    config: RunConfig  # resolved
    created_at: str
    profile: str | None = None  # None: recorded before profiles were
    kind: str = "train"  # "timing" for a Figure 4 measurement
    timing: dict[str, int] | None = None  # a measurement's batch_size, warmup and repeats

    def to_dict(self) -> dict[str, Any]:
        out = {"run_id": self.run_id, "spec": self.spec, "profile": self.profile, "label": self.label,
               "kind": self.kind, "config": self.config.to_dict(), "created_at": self.created_at}
        return out | ({"timing": dict(self.timing)} if self.timing is not None else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunMeta:
        """The record `data` holds; a field the config gained since the run was stored takes the value
        every earlier run had (`LATER_FIELDS`). Raises KeyError/TypeError/ValueError when it is not one."""
        config = RunConfig.from_dict({**LATER_FIELDS, **data["config"]})
        timing = data.get("timing")
        return cls(run_id=data["run_id"], spec=data["spec"], label=data["label"], config=config,
                   created_at=data.get("created_at", ""), profile=data.get("profile"),
                   kind=data.get("kind", "train"), timing=None if timing is None else dict(timing))


@dataclass(frozen=True)
class Provenance:
    """provenance.json: where and how the run (re)started last (`experiments.provenance.collect`)."""

    git_commit: str | None
    git_dirty: bool | None
    started_at: str
    runtime: RuntimeSettings | None  # None in a record written before it held them all
    packages: dict[str, str | None] = field(default_factory=dict)
    python: str = ""
    platform: str = ""
    host: str = ""
    pid: int = 0
    slurm_job_id: str | None = None
    slurm_array: str | None = None
    cuda_visible_devices: str | None = None

    @property
    def device_name(self) -> str | None:
        return None if self.runtime is None else self.runtime.device_name

    def to_dict(self) -> dict[str, Any]:
        """The file's layout: the runtime settings' keys beside the others (device_name, precision...)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "runtime"}
        return out | (self.runtime.to_dict() if self.runtime is not None else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        names = {f.name for f in fields(cls)} - {"runtime"}
        try:
            runtime = RuntimeSettings.from_dict(data)
        except (KeyError, TypeError):
            runtime = None
        return cls(**{k: data[k] for k in names if k in data} | {"started_at": data.get("started_at", "")},
                   runtime=runtime)


@dataclass(frozen=True)
class LogTail:
    """The last lines of one of a failed run's process logs."""

    name: str
    path: str
    tail: str


@dataclass(frozen=True)
class Failure:
    """failure.json: the error a run raised, and on a cluster the tails of its processes' logs."""

    error_type: str
    message: str
    traceback_tail: str
    at: str
    logs: tuple[LogTail, ...] = ()

    @classmethod
    def of(cls, error: BaseException, traceback_text: str) -> Failure:
        message = str(error).splitlines()[0] if str(error) else ""
        return cls(type(error).__name__, message, traceback_text[-4000:], timestamp())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"logs": [asdict(t) for t in self.logs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        return cls(data["error_type"], data.get("message", ""), data.get("traceback_tail", ""), data.get("at", ""),
                   tuple(LogTail(**t) for t in data.get("logs", [])))


@dataclass(frozen=True)
class SlurmSubmission:
    """slurm.json: the array task that owns a run on a cluster (`experiments.slurm`); `active` until
    the run settles (a result, or a failure recorded once its job ended)."""

    job_id: str
    cluster: str
    log_dir: str
    submitted_at: str = ""
    snapshot: str = ""  # the code the job runs; "" in a record written before it was kept
    tasks: int = 1
    nodes: int = 1
    active: bool = True
    packed: tuple[str, ...] = ()  # the run ids of a packed task
    worker_log: str | None = None  # this run's own log in a packed task

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["packed"] = list(self.packed)
        return {k: v for k, v in out.items() if v not in ((), [], None) or k in ("active",)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlurmSubmission:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        return cls(**values | {"packed": tuple(values.get("packed", ()))})


def write_meta(path: Path, meta: RunMeta) -> Path:
    return atomic_write_json(Path(path) / CONFIG, meta.to_dict())


def read_meta(path: Path) -> RunMeta:
    """The run's config.json; ValueError (or OSError) when it cannot be read as one."""
    try:
        return RunMeta.from_dict(read_json(Path(path) / CONFIG))
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a run's config.json ({type(error).__name__}: {error})") from None


def write_provenance(path: Path, provenance: Provenance) -> Path:
    return atomic_write_json(Path(path) / PROVENANCE, provenance.to_dict())


def read_provenance(path: Path) -> Provenance | None:
    """The run's last provenance.json; None when there is none or it cannot be read."""
    try:
        return Provenance.from_dict(read_json(Path(path) / PROVENANCE))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_result(path: Path, meta: RunMeta, result: RunResult, finished_at: str | None = None) -> Path:
    """result.json, the last file of a finished run (finished now, unless `finished_at` says when)."""
    return atomic_write_json(Path(path) / RESULT, {"run_id": meta.run_id, "spec": meta.spec, "label": meta.label,
                                                   **result.to_dict(), "finished_at": finished_at or timestamp()})


def read_result(path: Path) -> RunResult | None:
    """The run's result; None while it has none. ValueError (or OSError) for a damaged one."""
    if not (Path(path) / RESULT).exists():
        return None
    return RunResult.from_dict(read_json(Path(path) / RESULT))


def write_failure(path: Path, failure: Failure) -> Path:
    return atomic_write_json(Path(path) / FAILURE, failure.to_dict())


def clear_failure(path: Path) -> None:
    """A run that starts again, or is queued again, is no longer failed."""
    (Path(path) / FAILURE).unlink(missing_ok=True)


def write_slurm(path: Path, submission: SlurmSubmission) -> Path:
    return atomic_write_json(Path(path) / SLURM, submission.to_dict())


def runs_of(records: list[RunRecord], planned) -> list[RunRecord]:
    """The records that belong to a plan (a list of `PlannedRun`s): those whose network the plan
    lists, whatever their seed, and those whose run id it lists (a damaged folder has no network).
    A timing measurement belongs only to timing plans, a training run only to training plans. The one
    rule by which the runner, the status command and the analysis select a spec's runs."""
    networks = {(p.config.network, p.timing is not None) for p in planned}
    ids = {p.run_id for p in planned}
    return [r for r in records if r.run_id in ids
            or (r.config is not None and (r.config.network, r.kind == "timing") in networks)]


def count_epochs(path: Path) -> int:
    """The finished epochs metrics.jsonl holds, without parsing its rows: its lines whose newline is
    written (a line is appended whole, so a kill mid-append leaves the last one without it)."""
    try:
        return Path(path).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Per-epoch metrics. A torn last line (a kill mid-append) is dropped: it was never complete.
    The complete lines are parsed as one JSON array (a store of thousands of runs has millions of
    rows), line by line only when that fails."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    try:
        return json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        pass
    rows = []
    for line in lines:
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
    config: RunConfig | None = None
    result: RunResult | None = None
    finished_at: str | None = None
    failure: Failure | None = None
    slurm: SlurmSubmission | None = None
    epochs_done: int = 0
    reason: str = ""


def read_run(path: Path) -> RunRecord:
    """Read one run folder into a `RunRecord`; never raises for a damaged folder (state "corrupt")."""
    path = Path(path)
    rec = RunRecord(path=path, run_id=path.name, state="todo")
    try:
        meta = read_meta(path)
        rec.label, rec.config, rec.spec, rec.profile, rec.kind = meta.label, meta.config, meta.spec, meta.profile, meta.kind
    except FileNotFoundError:
        rec.reason = "no config.json"
        return rec
    except (OSError, ValueError) as e:
        rec.state, rec.reason = "corrupt", f"unreadable config.json: {e}"
        return rec
    rec.epochs_done = count_epochs(path / METRICS)
    if (path / SLURM).exists():
        try:
            rec.slurm = SlurmSubmission.from_dict(read_json(path / SLURM))
        except (OSError, ValueError, KeyError, TypeError):
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
            rec.failure = Failure.from_dict(read_json(path / FAILURE))
            rec.reason = f"{rec.failure.error_type}: {rec.failure.message}"
        except (OSError, ValueError, KeyError, TypeError):
            rec.reason = "unreadable failure.json"
        rec.state = "failed"
        return rec
    if rec.slurm is not None and rec.slurm.active:
        rec.state = "queued"
        return rec
    if (path / CHECKPOINT).exists() or rec.epochs_done:
        rec.state = "interrupted"
        rec.reason = f"{rec.epochs_done} epochs done, resumable"
    return rec
