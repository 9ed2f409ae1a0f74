"""Where and how a run computes: the device, and what the config's "auto" systems fields become there.

The `wrn.records.RuntimeSettings` worked out here are recorded in every result and provenance file,
because precision, memory format, TF32 and compilation can change the numbers a run produces; the
engine, the Figure 4 timing and the benchmarks all build their step from them, so the three always
agree on what a setting means.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from wrn.config import RunConfig
from wrn.records import RuntimeSettings


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, or CUDA when it is available and CPU otherwise ("auto" or None)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolved_precision(cfg: RunConfig, device_type: str) -> str:
    """The precision `cfg` trains in on a device of `device_type`: "auto" is bf16 on CUDA, fp32 elsewhere."""
    if cfg.precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return cfg.precision


def runtime_settings(cfg: RunConfig, device: torch.device) -> RuntimeSettings:
    """How `cfg`'s "auto" systems fields resolve on `device`."""
    precision = resolved_precision(cfg, device.type)
    channels_last = cfg.channels_last
    if channels_last == "auto":
        # Measured (benchmarks/train_speed.py): NHWC is faster on CPU in fp32 (1.13x) and bf16, and is
        # the layout bf16 tensor-core convolutions want on CUDA; fp32 on CUDA keeps NCHW.
        channels_last = "on" if precision == "bf16" or device.type == "cpu" else "off"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return RuntimeSettings(device=device.type, device_name=name, precision=precision,
                           channels_last=channels_last == "on", tf32=cfg.tf32, compile=cfg.compile,
                           torch=torch.__version__, threads=torch.get_num_threads())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def autocast(settings: RuntimeSettings, device: torch.device):
    """bf16 autocast when the settings ask for it; a no-op context otherwise."""
    if settings.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for `device` to finish its queued work (a no-op on CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
