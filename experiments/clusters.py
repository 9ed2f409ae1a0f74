"""Cluster profiles: what a SLURM cluster needs to hear from us, as data, one TOML file per cluster.

A profile lives in ``slurm/clusters/<name>.toml`` (chosen with ``--cluster NAME``) or anywhere else
(``--cluster path/to/mine.toml``). Every key is optional; unknown keys and wrong types are rejected with
one line naming the file, the key, the value and what is allowed, exactly like spec keys, so a typo
such as ``partiton`` never silently submits to the default partition.

The requeue fields have defaults chosen for this suite rather than submitit's: with a time limit under
about 50 minutes submitit counts *every* USR2, preemptions included, as a timeout, and its default of 3
timeouts ends a long training run that is preempted a few times (docs/slurm.md, "Preemption, time
limits and requeues").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from experiments.schema import (check_keys, check_type, display_path, expect_str, fail, locate, read_toml)
from wrn.errors import UserError

CLUSTERS_DIR = Path(__file__).resolve().parent.parent / "slurm" / "clusters"


class ClusterError(UserError):
    """A bad cluster profile: one line naming the file, key, value and what is allowed."""


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    path: Path
    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None  # e.g. "a100|h100"
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    mem_gb: float = 32.0  # per run; 0 = all of the node's memory (SLURM's --mem=0)
    time_min: int = 24 * 60  # each job's time limit; a longer run is checkpointed and requeued
    max_num_timeout: int = 30  # how many times one run may be requeued after a timeout (or any USR2)
    signal_delay_s: int = 120  # USR2 this long before the time limit: time to write the checkpoint
    array_parallelism: int = 256  # default cap on concurrently running runs (--max-parallel overrides)
    max_array_size: int | None = None  # None: read MaxArraySize from `scontrol show config`
    setup: tuple[str, ...] = ()  # shell lines run before the job starts (module load ..., source ...)
    sbatch: dict[str, Any] = field(default_factory=dict)  # extra #SBATCH flags, verbatim: {"exclude": "n3"}


_MINIMUM = {"gpus_per_run": 0, "cpus_per_run": 1, "mem_gb": 0, "time_min": 1, "max_num_timeout": 0,
            "signal_delay_s": 1, "array_parallelism": 1, "max_array_size": 1}
_ANNOTATIONS = {f.name: str(f.type).replace(" | None", "") for f in fields(ClusterProfile)}
KEYS = tuple(f.name for f in fields(ClusterProfile) if f.name not in ("name", "path"))


def known_clusters() -> list[str]:
    return sorted(p.stem for p in CLUSTERS_DIR.glob("*.toml"))


def load_cluster(name_or_path: str | Path) -> ClusterProfile:
    """A shipped profile by name ("local") or a profile file by path; raises `ClusterError`."""
    path = locate(name_or_path, CLUSTERS_DIR, "cluster profile", ClusterError, prefix="--cluster: ")
    return _build(path, read_toml(path, ClusterError))


def _build(path: Path, data: dict[str, Any]) -> ClusterProfile:
    where = display_path(path)
    check_keys(where, "", data, KEYS, ClusterError)
    for key, value in data.items():
        check_type(where, key, value, _ANNOTATIONS[key], ClusterError)
        if key in _MINIMUM and value < _MINIMUM[key]:
            raise fail(where, key, value, f"expected a number >= {_MINIMUM[key]}", ClusterError)
        if key in ("partition", "account", "qos", "constraint"):
            expect_str(where, key, value, ClusterError)
        if key == "sbatch":
            for flag, v in value.items():
                if isinstance(v, (dict, list)):
                    raise fail(where, f"sbatch.{flag}", v, "expected a string, number or boolean", ClusterError)
    values = {**data, **({"setup": tuple(data["setup"])} if "setup" in data else {})}
    profile = ClusterProfile(name=path.stem, path=path.resolve(), **values)
    if profile.signal_delay_s >= profile.time_min * 60:
        raise fail(where, "signal_delay_s", profile.signal_delay_s, f"must be shorter than the time limit "
                   f"(time_min = {profile.time_min} minutes)", ClusterError)
    return profile
