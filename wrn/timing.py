"""Forward+backward time per minibatch, as the paper's Figure 4 measures it (Titan X, cudnn v5,
minibatch 32): a measurement of the training step alone, no data loading and no training run.

A measurement keeps nothing when it is stopped (a resumed one would time a process whose caches and
cuDNN choices another process warmed), so a stop simply ends it and the next launch measures again."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from wrn.config import RunConfig, resolve
from wrn.models import count_params, forward_flops
from wrn.progress import progress_meter
from wrn.records import RunResult, RuntimeSettings, StepTiming
from wrn.runtime import bind_device, runtime_settings
from wrn.train import TrainingInterrupted, build_trainable, seed_everything, training_step


class MeasurementInterrupted(TrainingInterrupted):
    """A measurement stopped on request between two steps; nothing of it is kept (module docstring).
    A `TrainingInterrupted`, so that every executor treats a stopped measurement as a stopped run."""

    def __init__(self, step: int):
        super().__init__(epoch=0, step=step)
        self.args = (f"stopped at step {step} of the measurement; nothing kept, it measures again on the "
                     "next launch",)


def measure_step_time(cfg: RunConfig, batch_size: int = 32, warmup: int = 5, repeats: int = 20,
                      device=None, should_stop: Callable[[], bool] | None = None,
                      progress: bool | None = None) -> RunResult:
    """Median (and min/max) milliseconds of one forward+backward+update on random input.

    CUDA steps are timed with CUDA events so that the measurement is the device's time, not the
    host's launch time; CPU steps with a monotonic clock. `should_stop` is polled before every step
    (`MeasurementInterrupted` when it says so); `progress` shows the steps as `wrn.train.train` does
    its epochs' (a step of preact-ResNet-1001 takes minutes on a CPU)."""
    cfg = resolve(cfg)
    device = bind_device(device)
    settings = runtime_settings(cfg, device)
    seed_everything(cfg.seed)
    model, step_model, optimizer = build_trainable(cfg, device, settings)
    size = cfg.image_size
    x = torch.randn(batch_size, 3, size, size, device=device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg.num_classes, (batch_size,), device=device)
    model.train()

    meter = progress_meter(progress, warmup + repeats, "timing")
    times_ms = []
    try:
        for n in range(warmup + repeats):
            if should_stop is not None and should_stop():
                raise MeasurementInterrupted(n)
            if n < warmup:
                training_step(step_model, optimizer, x, y, settings, device)
            else:
                times_ms.append(_timed_step(step_model, optimizer, x, y, settings, device))
            if meter is not None:
                meter.update()
    finally:
        if meter is not None:
            meter.close()
    median = statistics.median(times_ms)
    return RunResult(
        kind="timing", status="done", final=None, diverged=None, params=count_params(model),
        flops=forward_flops(cfg), epoch_time_s=None, train_time_s=None,
        images_per_s=batch_size * 1000 / median,
        timing=StepTiming(batch_size=batch_size, ms_median=median, ms_min=min(times_ms), ms_max=max(times_ms),
                          repeats=repeats),
        runtime=settings,
    )


def _timed_step(step_model, optimizer, x: torch.Tensor, y: torch.Tensor, settings: RuntimeSettings,
                device: torch.device) -> float:
    """Milliseconds of one training step: the device's time on CUDA (events), the host's on a CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        training_step(step_model, optimizer, x, y, settings, device)
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    training_step(step_model, optimizer, x, y, settings, device)
    return 1000 * (time.perf_counter() - t0)
