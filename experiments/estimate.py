"""What a launch would cost, before it runs: each planned run's size and its estimated device-hours.

Parameter and FLOP counts come from the networks' shapes (`wrn.sizes`), without building them or
importing torch, so a dry run of any spec takes about a second; the time comes from the throughput
model of `wrn.throughput`. A run of world_size W (W processes, one per device, sharing each step's
batch) does the same work as on one device: its device-hours are the same FLOPs at the same rate,
spread over W devices, so its wall time is about 1/W of them (communication left out). Each run's rate
is its own (`experiments.rates.RateBook`: given, measured on the device, or assumed for it), and the
dry run says which and from what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments.clusters import RunLoad
from experiments.rates import RateBook
from wrn.config import RunConfig, resolved_precision
from wrn.sizes import network_size
from wrn.throughput import Rate, compute_mode, estimate_seconds, timing_seconds


@dataclass
class Estimate:
    """One planned run as a dry run shows it; `state` and `planned_by` are the run store's, filled in by
    the caller."""

    run_id: str
    spec: str
    label: str
    config: RunConfig
    params: int
    flops: int
    est_seconds: float
    precision: str  # what the run trains in on the device it is estimated for ("auto" resolved)
    device_type: str  # the device the time is estimated for: "cuda" or "cpu"
    rate: Rate  # the sustained training rate the time assumes, and where it comes from
    kind: str = "train"  # "timing" for a Figure 4 measurement
    state: str = "todo"
    planned_by: str | None = None  # the spec that planned the run first, when it exists in the store

    @property
    def wall_seconds(self) -> float:
        """How long the run takes from start to end: its device time over its world_size devices."""
        return self.est_seconds / self.config.world_size

    def load(self) -> RunLoad:
        """What placing the run on a cluster needs to know of it (`experiments.clusters.place_runs`)."""
        return RunLoad(self.run_id, self.config.world_size, self.kind == "train", self.est_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "spec": self.spec,
            "label": self.label,
            "params": self.params,
            "flops": self.flops,
            "epochs": self.config.epochs,
            "recipe": self.config.recipe,
            "precision": self.precision,
            "compute_mode": compute_mode(self.config, self.device_type),
            "world_size": self.config.world_size,
            "est_device": self.device_type,
            "tflops": self.rate.tflops,
            "rate_source": self.rate.source,
            "est_hours": self.est_seconds / 3600,
            "est_wall_hours": self.wall_seconds / 3600,
            "state": self.state,
            "planned_by": self.planned_by,
            "config": self.config.to_dict(),
        }


def estimate(planned, book: RateBook) -> list[Estimate]:
    """One `Estimate` per planned run, at the rate `book` gives its network on the book's device; a
    timing spec's runs (`PlannedRun.timing`) cost their measured steps."""
    device_type = book.device_type
    out = []
    for p in planned:
        params, flops = network_size(p.config)
        rate = book.rate(p.config, p.label, flops)
        if p.timing is None:
            seconds = estimate_seconds(p.config, flops, rate.flops, device_type)
        else:
            steps = p.timing["warmup"] + p.timing["repeats"]
            seconds = timing_seconds(flops, p.timing["batch_size"], steps, rate.flops, device_type)
        out.append(Estimate(p.run_id, p.spec, p.label, p.config, params, flops, seconds,
                            resolved_precision(p.config, device_type), device_type, rate,
                            kind="train" if p.timing is None else "timing"))
    return out


def rate_lines(rows: list[Estimate]) -> list[str]:
    """Where the rates of `rows` come from, one line per source with its runs and TFLOP/s."""
    by_source: dict[str, list[Estimate]] = {}
    for r in rows:
        by_source.setdefault(r.rate.source, []).append(r)
    return [f"  {len(group)} run{'s' if len(group) > 1 else ''} at {group[0].rate.tflops:.3g} TFLOP/s: {source}"
            for source, group in by_source.items()]


def format_duration(seconds: float, device_type: str) -> str:
    """A launch's estimate in the unit a reader plans with: minutes under an hour (a smoke launch), else
    device-hours."""
    if seconds < 3600:
        return f"{seconds / 60:.1f} {device_type.upper()}-minutes"
    return f"{seconds / 3600:.2f} {device_type.upper()}-hours"


def format_estimates(rows: list[Estimate], device_type: str, places: dict[str, tuple[int, int]] | None = None) -> str:
    """The dry run's table: one line per run, its processes (one device each) and its estimated
    device-hours and wall hours, and the total; `places`: run id -> (nodes, array task) of each run to
    train on a cluster, two columns more."""
    est, procs = f"est {device_type}-h", "GPUs" if device_type == "GPU" else "procs"
    where = f"{'nodes':>5} {'task':>5} " if places is not None else ""
    head = (f"{'run_id':<12}  {'label':<24} {'dataset':<8} {'seed':>4} {'params':>11} "
            f"{'GFLOPs':>7} {'epochs':>6} {'recipe':<16} {'mode':<4} {'TF/s':>6} {procs:>5} {where}{est:>10} "
            f"{'wall-h':>7}  state")
    lines = [head, "-" * len(head)]
    for r in rows:
        c = r.config
        nodes, task = places.get(r.run_id, ("-", "-")) if places is not None else ("", "")
        place = f"{nodes:>5} {task:>5} " if places is not None else ""
        lines.append(f"{r.run_id:<12}  {r.label:<24} {c.dataset:<8} {c.seed:>4} {r.params:>11,} "
                     f"{r.flops / 1e9:>7.2f} {c.epochs:>6} {c.recipe:<16} {compute_mode(c, r.device_type):<4} "
                     f"{r.rate.tflops:>6.3g} {c.world_size:>5} "
                     f"{place}{r.est_seconds / 3600:>10.2f} {r.wall_seconds / 3600:>7.2f}  {r.state}")
    total = sum(r.est_seconds for r in rows)
    spread = (f"; a run of world_size N, N processes on N {device_type}s, takes about 1/N of its "
              f"{device_type}-hours in wall time (wall-h)" if any(r.config.world_size > 1 for r in rows) else "")
    lines.append(f"{len(rows)} runs, estimated {format_duration(total, device_type)} in all, the time of every "
                 f"process counted{spread} (throughput model: wrn/throughput.py); the rates:")
    lines += rate_lines(rows)
    return "\n".join(lines)
