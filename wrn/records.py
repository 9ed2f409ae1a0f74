"""The records a run leaves behind: what the engine writes into a run folder, as types and file names.

`RunResult` is the contract between the code that trains or times a network and everything that reads
the outcome (the run store, the status command, the analysis, the benchmarks). It serialises to the
JSON object stored in result.json (the run store adds the run's id, spec, label and finishing time
around it). Reading one back checks that the numbers its kind must have are there, so a damaged or
hand-edited file is refused as a whole instead of entering a table half-read. `RuntimeSettings`
records how the run computed (`wrn.runtime` works it out on the device).

This module is plain data, free of torch, so that the tools that only read records start fast.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

METRICS_FILE = "metrics.jsonl"  # one line per finished epoch, `EpochMetrics` plus its timing
CHECKPOINT_FILE = "checkpoint.pt"  # the last good checkpoint (`wrn.checkpoint`)
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"  # the one before it

KINDS = ("train", "timing")
STATUSES = ("done", "diverged")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp() -> str:
    """Now, in UTC, as every record of the suite writes its times (e.g. 2016-05-23T12:00:00Z)."""
    return time.strftime(TIMESTAMP_FORMAT, time.gmtime())


@dataclass(frozen=True)
class RuntimeSettings:
    """How one run computes on its device; the ``runtime`` block of result.json."""

    device: str  # "cpu" or "cuda"
    device_name: str
    precision: str  # "fp32" or "bf16" (autocast)
    channels_last: bool
    tf32: bool
    compile: bool
    torch: str  # torch.__version__
    threads: int  # torch's CPU threads
    # Data parallelism: the processes that trained the run, each one's share of a step's batch, and the
    # backend of their collectives ("nccl", "gloo"; "none" for one process). Results written before
    # these existed were one process.
    world_size: int = 1
    per_rank_batch: int | None = None
    backend: str = "none"
    input_pipeline: str | None = None  # ImageNet's: "pil" or "tensor" (wrn.data.imagenet); None for the others

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeSettings:
        """The settings `data` records; a field added later takes its default when an older record lacks it."""
        missing = dataclasses.MISSING
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)
                      if f.name in data or f.default is missing})


@dataclass(frozen=True)
class EpochMetrics:
    """The evaluation of the network after one epoch: a line of metrics.jsonl without its timing, and
    the ``final`` block of a result (always the last epoch's, never the best one's)."""

    epoch: int
    lr: float
    train_loss: float
    train_error: float  # percent
    test_loss: float
    test_error: float  # percent (top-1)
    test_top5_error: float  # percent


FINAL_METRICS = tuple(f.name for f in dataclasses.fields(EpochMetrics))


@dataclass(frozen=True)
class Divergence:
    """Where a non-finite training loss first appeared; the loss as text ("nan", "inf")."""

    epoch: int
    step: int
    loss: str


@dataclass(frozen=True)
class StepTiming:
    """Figure 4's measurement: milliseconds per forward+backward+update of one minibatch."""

    batch_size: int
    ms_median: float
    ms_min: float
    ms_max: float
    repeats: int


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run: `final` for a trained run that finished, `diverged` for one whose loss
    left the finite numbers, `timing` for a measurement."""

    kind: str  # "train" or "timing"
    status: str  # "done" or "diverged"
    final: EpochMetrics | None
    diverged: Divergence | None
    params: int
    flops: int  # forward FLOPs per image
    epoch_time_s: float | None  # median seconds of a training epoch
    train_time_s: float | None  # seconds of training in all
    images_per_s: float | None
    timing: StepTiming | None
    runtime: RuntimeSettings

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("final", "diverged", "timing", "runtime"):
            if out[name] is not None:
                out[name] = dataclasses.asdict(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """The result a JSON object describes; `ValueError` naming what is missing or wrong. Keys that
        are not result fields (the store's run_id, spec, label, finished_at) are ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, found {type(data).__name__}")
        try:
            values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
            for name, kind in (("final", EpochMetrics), ("diverged", Divergence), ("timing", StepTiming)):
                if values[name] is not None:
                    values[name] = kind(**values[name])
            values["runtime"] = RuntimeSettings.from_dict(values["runtime"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a run result ({type(error).__name__}: {error})") from None
        result = cls(**values)
        result.check()
        return result

    def check(self) -> None:
        """Raise `ValueError` unless the result holds what its kind and status promise."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.status == "diverged":
            if self.diverged is None:
                raise ValueError("a diverged result without its divergence")
        elif self.kind == "timing":
            if self.timing is None or not _finite(self.timing.ms_median):
                raise ValueError("no timing.ms_median")
        elif self.final is None or not _finite(self.final.test_error):
            raise ValueError("no finite final.test_error")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
