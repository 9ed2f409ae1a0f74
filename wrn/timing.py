"""Forward+backward time per minibatch, as the paper's Figure 4 measures it (Titan X, cudnn v5,
minibatch 32): a measurement of the training step alone, no data loading and no training run."""

from __future__ import annotations

import statistics
import time

import torch

from wrn.config import RunConfig, resolve
from wrn.models import count_params, forward_flops
from wrn.records import RunResult, StepTiming
from wrn.runtime import pick_device, runtime_settings
from wrn.train import build_trainable, seed_everything, training_step


def measure_step_time(cfg: RunConfig, batch_size: int = 32, warmup: int = 5, repeats: int = 20,
                      device=None) -> RunResult:
    """Median (and min/max) milliseconds of one forward+backward+update on random input.

    CUDA steps are timed with CUDA events so that the measurement is the device's time, not the
    host's launch time; CPU steps with a monotonic clock."""
    cfg = resolve(cfg)
    device = pick_device(device)
    settings = runtime_settings(cfg, device)
    seed_everything(cfg.seed)
    model, step_model, optimizer = build_trainable(cfg, device, settings)
    size = cfg.image_size
    x = torch.randn(batch_size, 3, size, size, device=device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg.num_classes, (batch_size,), device=device)
    model.train()

    def step() -> None:
        training_step(step_model, optimizer, x, y, settings, device)

    for _ in range(warmup):
        step()
    times_ms = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize(device)
            times_ms.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times_ms.append(1000 * (time.perf_counter() - t0))
    median = statistics.median(times_ms)
    return RunResult(
        kind="timing", status="done", final=None, diverged=None, params=count_params(model),
        flops=forward_flops(cfg), epoch_time_s=None, train_time_s=None,
        images_per_s=batch_size * 1000 / median,
        timing=StepTiming(batch_size=batch_size, ms_median=median, ms_min=min(times_ms), ms_max=max(times_ms),
                          repeats=repeats),
        runtime=settings,
    )
