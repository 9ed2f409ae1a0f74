"""Cluster profiles: what a SLURM cluster needs to hear from us, as data, one TOML file per cluster, and
how a launch's runs are laid out on it (`place_runs`).

A profile lives in ``slurm/clusters/<name>.toml`` (chosen with ``--cluster NAME``) or anywhere else
(``--cluster path/to/mine.toml``). Every key is optional; unknown keys and wrong types are rejected with
one line naming the file, the key, the value and what is allowed, exactly like spec keys, so a typo
such as ``partiton`` never silently submits to the default partition.

A SLURM task is one process with its GPU (`gpus_per_task`), CPUs (`cpus_per_task`) and memory (`mem_gb`,
per process). A run of world_size W is W tasks, `tasks_per_node` on a node; a run of world_size 1 is one
task, which may train up to `runs_per_task` such runs side by side on its one GPU (packing: the
ablation networks cannot fill a large GPU alone). `place_runs` turns a launch's runs into the array
tasks that train them; the dry run and the submission both call it, so what a dry run shows is what
is submitted.

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
from wrn.throughput import DEVICE_PEAKS, device_class

CLUSTERS_DIR = Path(__file__).resolve().parent.parent / "slurm" / "clusters"
RENAMED = {"gpus_per_run": "gpus_per_task", "cpus_per_run": "cpus_per_task"}


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
    # The GPU the jobs train on ("A100-80GB", "H100"): the device a dry run estimates for
    # (`wrn.throughput.DEVICE_PEAKS`, or its measured rates); None: the throughput model's default
    gpu: str | None = None
    gpus_per_task: int = 1  # 0 on CPU-only nodes; a process trains on one device
    cpus_per_task: int = 8
    tasks_per_node: int = 1  # processes of one distributed run on a node: its GPUs per node
    runs_per_task: int = 1  # runs of world_size 1 that one task trains side by side on its GPU
    mem_gb: float = 32.0  # per process (task, or packed run); 0 = all of the node's memory (SLURM's --mem=0)
    time_min: int = 24 * 60  # each job's time limit; a longer run is checkpointed and requeued
    max_num_timeout: int = 30  # how many times one run may be requeued after a timeout (or any USR2)
    signal_delay_s: int = 120  # USR2 this long before the time limit: time to write the checkpoint
    collective_timeout_s: int = 600  # a distributed run whose process died fails after this long
    array_parallelism: int = 256  # default cap on array tasks running at once (--max-parallel overrides)
    max_array_size: int | None = None  # None: read MaxArraySize from `scontrol show config`
    setup: tuple[str, ...] = ()  # shell lines run before the job starts (module load ..., source ...)
    sbatch: dict[str, Any] = field(default_factory=dict)  # extra #SBATCH flags, verbatim: {"exclude": "n3"}

    def topology(self, world_size: int, run: str, packable: bool = True) -> Topology:
        """The array task that trains run `run` (named in the error) of `world_size` processes; a
        run of one process shares its task with up to `runs_per_task` others when `packable`."""
        if world_size == 1:
            return Topology(nodes=1, tasks_per_node=1, runs=self.runs_per_task if packable else 1)
        if world_size <= self.tasks_per_node:
            return Topology(nodes=1, tasks_per_node=world_size, runs=1)
        if world_size % self.tasks_per_node:
            raise ClusterError(
                f"run {run}: world_size = {world_size} does not fit cluster {self.name!r} "
                f"({display_path(self.path)}): tasks_per_node = {self.tasks_per_node}, so a run takes at most "
                f"{self.tasks_per_node} processes on one node or a multiple of {self.tasks_per_node} on several")
        return Topology(nodes=world_size // self.tasks_per_node, tasks_per_node=self.tasks_per_node, runs=1)


@dataclass(frozen=True, order=True)
class Topology:
    """The shape of one array task: `nodes` x `tasks_per_node` processes of one distributed run, or
    one process per run for up to `runs` runs of world_size 1 sharing its GPU."""

    nodes: int
    tasks_per_node: int
    runs: int

    @property
    def tasks(self) -> int:
        return self.nodes * self.tasks_per_node


@dataclass(frozen=True)
class RunLoad:
    """What placing a run needs to know of it."""

    name: str  # the run id, for messages
    world_size: int
    packable: bool  # a training run; a timing measurement has its GPU to itself (it measures step time)
    seconds: float  # estimated device-seconds: packed runs of similar length share a task


@dataclass(frozen=True)
class ArrayTask:
    topology: Topology
    runs: tuple[str, ...]  # run names, as `RunLoad.name`
    seconds: float  # how long it holds its GPUs, in GPU-seconds: the longest of its runs if packed


def place_runs(loads: list[RunLoad], cluster: ClusterProfile) -> list[ArrayTask]:
    """The array tasks that train `loads` on `cluster`, grouped by topology (one job array each, as
    submitit's parameters are per array), groups in order of their first run. Packed runs are
    sorted longest first so that runs of similar length share a task (each task holds its GPU as
    long as its longest run); other runs keep their order."""
    groups: dict[Topology, list[RunLoad]] = {}
    for load in loads:
        groups.setdefault(cluster.topology(load.world_size, load.name, load.packable), []).append(load)
    tasks = []
    for topo, members in groups.items():
        if topo.runs > 1:
            members = sorted(members, key=lambda m: -m.seconds)
        for i in range(0, len(members), topo.runs):
            chunk = members[i: i + topo.runs]
            tasks.append(ArrayTask(topo, tuple(m.name for m in chunk), max(m.seconds for m in chunk)))
    return tasks


_MINIMUM = {"gpus_per_task": 0, "cpus_per_task": 1, "tasks_per_node": 1, "runs_per_task": 1, "mem_gb": 0,
            "time_min": 1, "max_num_timeout": 0, "signal_delay_s": 1, "collective_timeout_s": 1,
            "array_parallelism": 1, "max_array_size": 1}
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
    for old, new in RENAMED.items():
        if old in data:
            raise fail(where, old, data[old], f"renamed to {new} (one process per task: a distributed run is "
                       "world_size tasks)", ClusterError)
    check_keys(where, "", data, KEYS, ClusterError)
    for key, value in data.items():
        check_type(where, key, value, _ANNOTATIONS[key], ClusterError)
        if key in _MINIMUM and value < _MINIMUM[key]:
            raise fail(where, key, value, f"expected a number >= {_MINIMUM[key]}", ClusterError)
        if key in ("partition", "account", "qos", "constraint", "gpu"):
            expect_str(where, key, value, ClusterError)
        if key == "gpu" and device_class(value) is None:
            raise fail(where, key, value, f"a GPU the throughput model knows: a name containing "
                       f"{', '.join(DEVICE_PEAKS)} (e.g. \"A100-80GB\", \"H100 SXM\"; H100 PCIe as \"H100 PCIe\")",
                       ClusterError)
        if key == "sbatch":
            for flag, v in value.items():
                if isinstance(v, (dict, list)):
                    raise fail(where, f"sbatch.{flag}", v, "expected a string, number or boolean", ClusterError)
    if data.get("gpus_per_task", 0) > 1:
        raise fail(where, "gpus_per_task", data["gpus_per_task"], "expected 0 or 1: each process trains on one "
                   "GPU; a run's world_size says how many processes (GPUs) it takes", ClusterError)
    values = {**data, **({"setup": tuple(data["setup"])} if "setup" in data else {})}
    profile = ClusterProfile(name=path.stem, path=path.resolve(), **values)
    if profile.signal_delay_s >= profile.time_min * 60:
        raise fail(where, "signal_delay_s", profile.signal_delay_s, f"must be shorter than the time limit "
                   f"(time_min = {profile.time_min} minutes)", ClusterError)
    return profile
