"""Estimated against measured: the device time a spec's finished runs were estimated to take, and the
time they took.

Each finished training run is estimated as a dry run would have estimated it before it ran: its
training FLOPs (`wrn.throughput.train_seconds`: no evaluation, no start-up) at the rate of its own
device and compute mode from the rates file or the throughput model's assumption
(`experiments.rates.RateBook`, finished runs left out, or every estimate would agree with itself), and
held against its recorded training time times its processes. The ratio says how far to trust a dry
run's hours on that device; `python -m benchmarks.gpu_check` records a measured rate that brings it
near 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.collect import FINISHED, Collection
from experiments.estimate import format_duration
from experiments.rates import RateBook, read_measurements
from wrn.config import RunConfig
from wrn.throughput import compute_mode, train_seconds


@dataclass(frozen=True)
class CostCheck:
    """The finished training runs of one device type: how many, on which devices, the seconds of
    training estimated and measured (over all their processes), and the rates the estimate used."""

    device_type: str
    runs: int
    devices: tuple[str, ...]
    estimated_s: float
    measured_s: float
    rate_sources: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.measured_s / self.estimated_s if self.estimated_s > 0 else math.nan

    def sentence(self) -> str:
        unit = {"cuda": "GPU", "cpu": "CPU"}[self.device_type]
        return (f"time: {self.runs} finished run{'s' if self.runs != 1 else ''} on {', '.join(self.devices)} trained "
                f"{format_duration(self.measured_s, unit)} against {format_duration(self.estimated_s, unit)} "
                f"estimated ({self.ratio:.2f}x the estimate; training alone; estimated at: "
                f"{'; '.join(self.rate_sources)})")


def cost_checks(collection: Collection, rates_root: Path | None) -> list[CostCheck]:
    """One `CostCheck` per device type among the collection's finished training runs with a recorded
    training time."""
    runs = collection.runs
    if runs.empty:
        return []
    done = runs[(runs["state"] == FINISHED) & runs["train_time_s"].notna() & runs["flops"].notna()
                & runs["config"].notna() & runs["device"].notna()]
    measurements = read_measurements(rates_root)
    out = []
    for device_type, group in done.groupby("device", sort=True):
        estimated = measured = 0.0
        sources: dict[str, None] = {}
        for _, run in group.iterrows():
            cfg = RunConfig.from_dict(run["config"])
            book = RateBook(device_type, run["device_name"], measurements)
            rate = book.rate(cfg, run["label"], int(run["flops"]))
            estimated += train_seconds(cfg, int(run["flops"]), rate.flops, device_type)
            measured += float(run["train_time_s"]) * cfg.world_size
            sources[f"{rate.tflops:.3g} TFLOP/s in {compute_mode(cfg, device_type)}, {rate.source}"] = None
        devices = tuple(sorted({str(d) for d in group["device_name"] if pd.notna(d)}))
        out.append(CostCheck(str(device_type), len(group), devices, estimated, measured, tuple(sources)))
    return out
