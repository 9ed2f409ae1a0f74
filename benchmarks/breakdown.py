"""Where a training step's time goes: the suite's own step (`wrn.train.training_step` over batches
of `wrn.data.tensor_pipeline.make_pipeline`), profiled with torch.profiler and summed by kind of
operator.

It answers the question a throughput number leaves open: is the step limited by the convolution
kernels (then only faster kernels or fewer FLOPs help) or by everything around them (batch norm,
element-wise ops, the optimizer, the data pipeline, Python)? From the convolution time it derives the
"convolution-bound" rate: the images/s the step would reach if every other operator took no time,
the ceiling of any change that leaves the convolution kernels as they are.

Times are each operator's self time: host time on CPU, kernel time on CUDA (where the remainder is
time the device sat idle). The profiler adds a little overhead per operator, so the profiled step is
a little slower than the unprofiled one the throughput table reports; the shares are what count.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from wrn.config import RunConfig
from wrn.data.tensor_pipeline import make_pipeline
from wrn.models import forward_flops
from wrn.runtime import runtime_settings, synchronize
from wrn.train import build_trainable, seed_everything, training_step

DATA_RANGE = "wrn.data.train_batches"
CATEGORIES = ("convolution forward", "convolution backward", "batch norm", "optimizer", "data pipeline",
              "other operators")
CONVOLUTION = re.compile(r"conv(olution|[123]d)")  # mkldnn_/cudnn_convolution, _slow_conv2d_forward, ...
UNATTRIBUTED = "unattributed"  # CPU: Python and dispatch between operators; CUDA: device idle


def category(name: str, ranges: tuple[str, ...]) -> str:
    """The category of an operator called `name`, run inside the profiler ranges `ranges` (outermost
    first): the optimizer's and the data pipeline's operators go to them whatever they are."""
    if any(r.startswith("Optimizer.") for r in ranges):
        return "optimizer"
    if DATA_RANGE in ranges:
        return "data pipeline"
    if CONVOLUTION.search(name):
        return "convolution backward" if "backward" in name else "convolution forward"
    if "batch_norm" in name:
        return "batch norm"
    return "other operators"


def _ranges(event) -> tuple[str, ...]:
    names = []
    parent = event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return tuple(reversed(names))


def summarize(events, device: torch.device) -> dict[str, float]:
    """Microseconds of self time by category over `events` (the profiler's FunctionEvents): host
    time on CPU, kernel time on CUDA. Ranges that only wrap operators (Optimizer.*, the data range,
    autograd's evaluate_function) are skipped; a compiled graph's range is kept: its self time is
    its fused kernels."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in events:
        if event.name.startswith(("Optimizer.", "autograd::")) or event.name == DATA_RANGE:
            continue
        spent = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        if spent > 0:
            totals[category(event.name, _ranges(event))] += spent
    return totals


def profile_training(cfg: RunConfig, data_dir: Path, device: torch.device, steps: int,
                     baseline_img_s: float | None = None) -> dict[str, Any]:
    """Profile `steps` training steps of `cfg` (after a warm-up epoch) and return milliseconds per step
    by category, the convolutions' rate and the convolution-bound images/s (and its ratio to
    `baseline_img_s` when given)."""
    settings = runtime_settings(cfg, device)
    seed_everything(cfg.seed)
    pipeline = make_pipeline(cfg, data_dir, device, download=False)
    model, step_model, optimizer = build_trainable(cfg, device, settings)
    model.train()

    def run(epoch: int, limit: int) -> int:
        done = 0
        batches = iter(pipeline.train_batches(epoch))
        while done < limit:
            with record_function(DATA_RANGE):
                batch = next(batches, None)
            if batch is None:
                break
            training_step(step_model, optimizer, *batch, settings, device)
            done += 1
        return done

    run(1, pipeline.steps_per_epoch)  # warm-up: compilation, kernel selection, allocator
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        synchronize(device)
        started = time.perf_counter()
        done, epoch = 0, 2
        while done < steps:
            done += run(epoch, steps - done)
            epoch += 1
        synchronize(device)
        wall_us = 1e6 * (time.perf_counter() - started)
    totals = summarize(prof.events(), device)
    ms = {name: us / 1000 / steps for name, us in totals.items()}
    step_ms = wall_us / 1000 / steps
    ms[UNATTRIBUTED] = max(0.0, step_ms - sum(ms.values()))
    conv_s = (ms["convolution forward"] + ms["convolution backward"]) / 1000
    conv_bound = cfg.batch_size / conv_s if conv_s > 0 else None
    return {
        "steps": steps,
        "step_ms": step_ms,
        "ms_per_step": ms,
        "convolution_share": conv_s * 1000 / step_ms,
        "convolution_tflops": 3 * forward_flops(cfg) * cfg.batch_size / conv_s / 1e12 if conv_s > 0 else None,
        "convolution_bound_img_s": conv_bound,
        "convolution_bound_ratio": None if conv_bound is None or baseline_img_s is None else conv_bound / baseline_img_s,
    }


def format_breakdown(b: dict[str, Any], title: str) -> list[str]:
    lines = [f"where a step's time goes ({title}; {b['steps']} profiled steps, {b['step_ms']:.1f} ms each)"]
    for name, ms in b["ms_per_step"].items():
        lines.append(f"  {name:<42}{ms:>10.2f} ms{ms / b['step_ms']:>9.1%}")
    if b["convolution_bound_img_s"] is not None:
        ratio = "" if b["convolution_bound_ratio"] is None else f", {b['convolution_bound_ratio']:.2f}x the baseline"
        lines.append(f"  convolutions: {b['convolution_share']:.0%} of the step at {b['convolution_tflops']:.3f} "
                     f"TFLOP/s (network FLOPs over convolution time); if nothing else took time: "
                     f"{b['convolution_bound_img_s']:,.0f} images/s{ratio}")
    return lines
