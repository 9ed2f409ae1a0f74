"""Cluster profiles: what a SLURM cluster needs to hear from us, as data, one TOML file per cluster.

A profile lives in ``slurm/clusters/<name>.toml`` (chosen with ``--cluster NAME``) or anywhere else
(``--cluster path/to/mine.toml``). Every key is optional; unknown keys and wrong types are rejected with
one line naming the file, the key, the value and what is allowed, exactly like spec keys, so a typo
such as ``partiton`` never silently submits to the default partition.

The requeue fields have defaults chosen for this suite rather than submitit's: with a time limit under
about 50 minutes submitit counts *every* USR2, preemptions included, as a timeout, and its default of 3
timeouts ends a long training run that is preempted a few times (slurm-single-node.md, pitfall 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from experiments import tomlfiles
from experiments.errors import UserError
from wrn.config import suggest

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


_TYPES: dict[str, tuple[type, ...]] = {
    "partition": (str,), "account": (str,), "qos": (str,), "constraint": (str,),
    "gpus_per_run": (int,), "cpus_per_run": (int,), "mem_gb": (int, float), "time_min": (int,),
    "max_num_timeout": (int,), "signal_delay_s": (int,), "array_parallelism": (int,),
    "max_array_size": (int,), "setup": (list,), "sbatch": (dict,),
}
_MINIMUM = {"gpus_per_run": 0, "cpus_per_run": 1, "mem_gb": 0, "time_min": 1, "max_num_timeout": 0,
            "signal_delay_s": 1, "array_parallelism": 1, "max_array_size": 1}
KEYS = tuple(f.name for f in fields(ClusterProfile) if f.name not in ("name", "path"))
assert set(KEYS) == set(_TYPES), "every profile field needs a type check"


def known_clusters() -> list[str]:
    return sorted(p.stem for p in CLUSTERS_DIR.glob("*.toml"))


def load_cluster(name_or_path: str | Path) -> ClusterProfile:
    """A shipped profile by name ("local") or a profile file by path; raises `ClusterError`."""
    path = tomlfiles.locate(name_or_path, CLUSTERS_DIR, "cluster profile", ClusterError, prefix="--cluster: ")
    data = tomlfiles.read(path, str(path), ClusterError)
    return _build(path, data)


def _build(path: Path, data: dict[str, Any]) -> ClusterProfile:
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _TYPES:
            raise ClusterError(f"{path}: unknown key {key!r}{suggest(key, KEYS)}; allowed: {', '.join(KEYS)}")
        allowed = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, allowed):
            kinds = " or ".join({str: "a string", int: "an integer", float: "a number", list: "a list of "
                                 "strings", dict: "a table"}[t] for t in allowed)
            raise ClusterError(f"{path}: {key} = {value!r}: expected {kinds}")
        if key in _MINIMUM and value < _MINIMUM[key]:
            raise ClusterError(f"{path}: {key} = {value!r}: expected a number >= {_MINIMUM[key]}")
        if key == "setup":
            if not all(isinstance(line, str) for line in value):
                raise ClusterError(f"{path}: setup = {value!r}: expected a list of strings (shell lines)")
            value = tuple(value)
        if key == "sbatch":
            for flag, v in value.items():
                if isinstance(v, (dict, list)):
                    raise ClusterError(f"{path}: sbatch.{flag} = {v!r}: expected a string, number or boolean")
        if key in ("partition", "account", "qos", "constraint") and not value.strip():
            raise ClusterError(f"{path}: {key} = {value!r}: expected a non-empty string (leave the key out "
                               "for the cluster's default)")
        values[key] = value
    profile = ClusterProfile(name=path.stem, path=path.resolve(), **values)
    if profile.signal_delay_s >= profile.time_min * 60:
        raise ClusterError(f"{path}: signal_delay_s = {profile.signal_delay_s}: must be shorter than the "
                           f"time limit (time_min = {profile.time_min} minutes)")
    return profile
