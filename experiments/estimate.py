"""What a launch would cost, before it runs: each planned run's size and its estimated device-hours.

Parameter and FLOP counts come from the networks' shapes (`wrn.sizes`), without building them or
importing torch, so a dry run of any spec takes about a second; the time comes from the throughput
model of `wrn.throughput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wrn.config import RunConfig, resolved_precision
from wrn.sizes import network_size
from wrn.throughput import device_rate, estimate_seconds, timing_seconds


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
    state: str = "todo"
    planned_by: str | None = None  # the spec that planned the run first, when it exists in the store

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
            "est_device": self.device_type,
            "est_hours": self.est_seconds / 3600,
            "state": self.state,
            "planned_by": self.planned_by,
            "config": self.config.to_dict(),
        }


def estimate(planned, device_type: str = "cuda", tflops: float | None = None) -> list[Estimate]:
    """One `Estimate` per planned run, at the rate assumed for `device_type`; a timing spec's runs
    (`PlannedRun.timing`) cost their measured steps."""
    rate = device_rate(device_type, tflops)
    out = []
    for p in planned:
        params, flops = network_size(p.config)
        if p.timing is None:
            seconds = estimate_seconds(p.config, flops, rate, device_type)
        else:
            steps = p.timing["warmup"] + p.timing["repeats"]
            seconds = timing_seconds(flops, p.timing["batch_size"], steps, rate, device_type)
        out.append(Estimate(p.run_id, p.spec, p.label, p.config, params, flops, seconds,
                            resolved_precision(p.config, device_type), device_type))
    return out


def format_duration(seconds: float, device_type: str) -> str:
    """A launch's estimate in the unit a reader plans with: minutes under an hour (a smoke launch), else
    device-hours."""
    if seconds < 3600:
        return f"{seconds / 60:.1f} {device_type.upper()}-minutes"
    return f"{seconds / 3600:.2f} {device_type.upper()}-hours"


def format_estimates(rows: list[Estimate], device_type: str) -> str:
    est = f"est {device_type}-h"
    head = (f"{'run_id':<12}  {'label':<24} {'dataset':<8} {'seed':>4} {'params':>11} "
            f"{'GFLOPs':>7} {'epochs':>6} {'recipe':<16} {'prec':<4} {est:>10}  state")
    lines = [head, "-" * len(head)]
    for r in rows:
        c = r.config
        lines.append(f"{r.run_id:<12}  {r.label:<24} {c.dataset:<8} {c.seed:>4} {r.params:>11,} "
                     f"{r.flops / 1e9:>7.2f} {c.epochs:>6} {c.recipe:<16} {r.precision:<4} "
                     f"{r.est_seconds / 3600:>10.2f}  {r.state}")
    total = sum(r.est_seconds for r in rows)
    lines.append(f"{len(rows)} runs, estimated {format_duration(total, device_type)} in all "
                 f"(throughput model: wrn/throughput.py)")
    return "\n".join(lines)
