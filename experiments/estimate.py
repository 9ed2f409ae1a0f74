"""What a launch would cost, before it runs: each planned run's size and its estimated device-hours.

Parameter and FLOP counts come from building the network on PyTorch's meta device (no memory, no
initialisation cost), so a dry run of ResNet-1001 or WRN-28-12 is instant; the time comes from the
throughput model of `wrn.throughput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from wrn.config import RunConfig, resolve
from wrn.models import build_model, count_params, forward_flops
from wrn.runtime import resolved_precision
from wrn.throughput import device_rate, estimate_seconds

MODEL_FIELDS = ("arch", "depth", "k", "block", "depth_convention", "dataset", "image_size", "dropout")


@lru_cache(maxsize=None)
def _model_stats(key: tuple) -> tuple[int, int]:
    cfg = resolve(RunConfig(**dict(zip(MODEL_FIELDS, key))))
    with torch.device("meta"):
        model = build_model(cfg)
    return count_params(model), forward_flops(cfg)


def model_stats(cfg: RunConfig) -> tuple[int, int]:
    """(parameters, forward FLOPs per image) of `cfg`'s network."""
    return _model_stats(tuple(getattr(cfg, f) for f in MODEL_FIELDS))


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
            "est_gpu_hours": self.est_seconds / 3600,
            "state": self.state,
            "planned_by": self.planned_by,
            "config": self.config.to_dict(),
        }


def estimate(planned, device_type: str = "cuda", tflops: float | None = None, kind: str = "train") -> list[Estimate]:
    """One `Estimate` per planned run, at the rate assumed for `device_type` (a timing spec's
    measurements cost nothing worth estimating)."""
    rate = device_rate(device_type, tflops)
    out = []
    for p in planned:
        params, flops = model_stats(p.config)
        seconds = 0.0 if kind == "timing" else estimate_seconds(p.config, flops, rate)
        out.append(Estimate(p.run_id, p.spec, p.label, p.config, params, flops, seconds,
                            resolved_precision(p.config, device_type)))
    return out


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
    total = sum(r.est_seconds for r in rows) / 3600
    lines.append(f"{len(rows)} runs, estimated {total:.1f} {device_type}-hours in all "
                 f"(throughput model: wrn/throughput.py)")
    return "\n".join(lines)
