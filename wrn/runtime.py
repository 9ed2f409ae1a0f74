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

from wrn.config import RunConfig, resolved_input_pipeline, resolved_precision
from wrn.cpuinfo import cpu_has_native_bf16, cpu_name
from wrn.distributed import SINGLE, Processes
from wrn.records import RuntimeSettings


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device `device` names, with a CUDA device always given its index: "auto" or None is CUDA
    when it is available and the CPU otherwise; "cuda" (or "auto") is this process's own GPU,
    `local_gpu_index()`; "cuda:N" is GPU N. Nothing is initialised: a launcher that only needs the
    device type calls this, a process that computes calls `bind_device`."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_gpu_index())
    return device


def local_gpu_index() -> int:
    """This process's GPU among the visible ones: the LOCAL_RANK-th (torchrun's and submitit's
    convention for a run's processes on a node), modulo the number visible, which is one where the
    launcher already gave each process its own GPU (the local executor's CUDA_VISIBLE_DEVICES, SLURM's
    per-task binding) and every GPU of the node under torchrun or `--gpus-per-node`."""
    return int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count())


def bind_device(device: str | torch.device | None = None) -> torch.device:
    """`pick_device(device)`, made this process's current CUDA device. Whatever a process allocates
    without naming a device, NCCL's communicators, cuDNN's handles and the streams that nvJPEG
    decodes against belong to the current device; left at GPU 0, every process of a multi-GPU node
    would crowd onto it. Every process that trains, times or benchmarks calls this once."""
    device = pick_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def on_device(device: torch.device):
    """A context in which `device` is the current CUDA device (a no-op elsewhere): for the library calls
    that take their device, stream or pinning target from the current device rather than from their
    arguments (nvJPEG's decoder, the DataLoader's pinning thread)."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def set_cuda_switches(tf32: bool) -> None:
    """The process-wide CUDA backend switches of a run: TF32 in matrix multiplies and convolutions as
    the config says (off in the paper profile: the paper's runs computed in full fp32), and cuDNN's
    autotuner on (it picks the fastest convolution algorithm for each shape once)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """CPU `tensor` on `device` without making the host wait for the device: on CUDA a pinned copy
    whose transfer is queued on the current stream. The pinned block comes from torch's caching host
    allocator, which does not hand it out again before the copy that reads it has completed, so the
    caller may drop or reuse `tensor` at once (and a copy from pageable memory would be a host
    synchronisation)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


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


def peak_memory_bytes(device: torch.device) -> int | None:
    """The most device memory this process's tensors have held on `device` (None on a CPU, whose
    allocations torch does not track)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def synchronize(device: torch.device) -> None:
    """Wait for `device` to finish its queued work (a no-op on CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
