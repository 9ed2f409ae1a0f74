"""Where and how a run computes: the device, and what the config's "auto" systems fields become there.

The `wrn.records.RuntimeSettings` worked out here are recorded in every result and provenance file,
because precision, memory format, TF32 and compilation can change the numbers a run produces; the
engine, the Figure 4 timing and the benchmarks all build their step from them, so the three always
agree on what a setting means.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from functools import cache

import torch

from wrn.config import RunConfig, resolved_precision
from wrn.cpuinfo import cpu_has_native_bf16, cpu_name
from wrn.distributed import SINGLE, Processes
from wrn.records import RuntimeSettings


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, or CUDA when it is available and CPU otherwise ("auto" or None). A process of a
    distributed run that sees several GPUs takes its LOCAL_RANK-th (torchrun's convention); under
    SLURM's per-task binding it sees one."""
    if device is None or str(device) == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device(device)


def runtime_settings(cfg: RunConfig, device: torch.device, processes: Processes = SINGLE) -> RuntimeSettings:
    """How `cfg`'s "auto" systems fields resolve on `device`, in a run of `processes`."""
    precision = resolved_precision(cfg, device.type)
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        _warn_once(f"warning: precision=bf16 on a CPU without native bf16 ({cpu_name()}, "
                   f"{cpu_capability()}): torch emulates it, many times slower than fp32")
    channels_last = cfg.channels_last
    if channels_last == "auto":
        # Measured (benchmarks/train_speed.py): NHWC is faster on CPU in fp32 (1.13x) and bf16, and is
        # the layout bf16 tensor-core convolutions want on CUDA; fp32 on CUDA keeps NCHW.
        channels_last = "on" if precision == "bf16" or device.type == "cpu" else "off"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return RuntimeSettings(device=device.type, device_name=name, precision=precision,
                           channels_last=channels_last == "on", tf32=cfg.tf32, compile=cfg.compile,
                           torch=torch.__version__, threads=torch.get_num_threads(),
                           world_size=processes.world_size, per_rank_batch=cfg.batch_size // processes.world_size,
                           backend=processes.backend, input_pipeline=input_pipeline(cfg, device))


def input_pipeline(cfg: RunConfig, device: torch.device) -> str | None:
    """The ImageNet input path a run of `cfg` takes on `device` (None for the datasets without one)."""
    if cfg.dataset != "imagenet":
        return None
    from wrn.imagenet import resolved_input_pipeline  # deferred: ImageNet's pipeline needs torchvision

    return resolved_input_pipeline(cfg, device.type)


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels dispatch to here ("AVX2", "AVX512", ...)."""
    return torch.backends.cpu.get_cpu_capability()


@cache
def _warn_once(message: str) -> None:
    """`message` on stderr, at most once per process (a worker and the engine both resolve a run's settings)."""
    print(message, file=sys.stderr, flush=True)


def autocast(settings: RuntimeSettings, device: torch.device):
    """bf16 autocast when the settings ask for it; a no-op context otherwise."""
    if settings.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for `device` to finish its queued work (a no-op on CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
