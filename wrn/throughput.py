"""The throughput model behind every time estimate the suite prints (dry runs, launch guards, budgets).

Training one image costs about three forward passes (forward, then backward through activations and
weights: the usual "6 x multiply-accumulates" rule), evaluating one costs one. Dividing by a sustained
device rate gives seconds, and every run adds a fixed overhead: its own process starting and
importing torch and the engine, reading and preprocessing its data, building its network, its
provenance, checkpoints and report lines. On a GPU the overhead is lost in hours of training; on a CPU
at the smoke profile's sizes it is most of a run.

The rate depends on the device and on the arithmetic the run computes in (`compute_mode`: fp32 with
TF32 off, as the paper profile trains; TF32; bf16 autocast), which differ by up to 15x on one GPU. A
measured rate (`experiments.rates`: `python -m benchmarks.gpu_check`, `benchmarks.train_speed` and
every finished run record one) beats the assumption here; the assumption is a datasheet peak times a
sustained fraction (`assumed_rate`), for a network of WRN-28-10's size: small networks cannot fill a
large GPU and reach less.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from wrn.config import RunConfig, expected_sizes, resolved_precision
from wrn.cpuinfo import cpu_has_native_bf16

COMPUTE_MODES = ("fp32", "tf32", "bf16")

# Dense peaks in TFLOP/s per compute mode (NVIDIA's datasheets for each GPU, the figures without
# sparsity; TF32 and bf16 on the tensor cores). A V100 has neither TF32 nor bf16 tensor cores: both
# run at its fp32 rate at best.
DEVICE_PEAKS: dict[str, dict[str, float]] = {
    "V100": {"fp32": 15.7, "tf32": 15.7, "bf16": 15.7},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0},
    "H100-PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100-SXM": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
}
# How a device's name (torch.cuda.get_device_name, nvidia-smi, a cluster profile's `gpu`) maps to its
# class, first match wins: "NVIDIA A100-SXM4-80GB" and "A100-80GB" are both an A100.
DEVICE_PATTERNS = (("H200", r"H200"), ("H100-PCIe", r"H100.*PCIE"), ("H100-SXM", r"H100"), ("A100", r"A100"),
                   ("L40S", r"L40S"), ("A10", r"\bA10\b"), ("V100", r"V100"))
# The share of the peak a training step sustains, assumed where nothing was measured. Tensor cores:
# a plain PyTorch ResNet-18 on an A100 in half precision reaches about a quarter of the peak (13.4 PFLOP
# in 186 s, KellerJordan/cifar10-airbench's scaling baseline); fp32 convolutions run closer to theirs, but
# batch norm, ReLU and the optimizer step do not use the peak at all. Assumptions, to be replaced by a
# measurement on the device.
SUSTAINED_FRACTION = {"fp32": 0.5, "tf32": 0.3, "bf16": 0.25}
DEFAULT_GPU = "A100"  # the class a GPU estimate assumes when nothing names the GPU
# A CPU: measured, not assumed, on an idle 2-core AVX2 EPYC with the smoke profile (fp32).
CPU_TFLOPS = 0.05
# Seconds per run besides its FLOPs. CPU: measured with the smoke profile (`python -m experiments.run
# <spec> --profile smoke`) on an idle 2-core AVX2 EPYC, where a smoke run takes 9-13 s from its worker's
# start to its result, most of it importing torch and the engine, loading the data and building the
# network. With 12 s and the CPU rate above the estimates were, against the measured wall time of the
# whole launch: table_block_type 1.6 vs 1.3 min, figure_svhn 0.9 vs 0.9, table_deepening 1.2 vs 1.1,
# figure_timing 2.0 vs 1.8. Worker processes sleep their OpenMP threads when waiting
# (`experiments.executors`): spinning threads made the same launches 2-3x slower on a loaded machine.
# CUDA: not modelled (a minute or so of process, data and cuDNN autotuning is lost in the hours of a
# paper run).
RUN_OVERHEAD_SECONDS = {"cuda": 0.0, "cpu": 12.0}
# How much longer a CPU takes for bf16 it cannot compute in hardware (`wrn.cpuinfo`): oneDNN emulates
# it through fp32 conversions. Measured on the AVX2 EPYC: a smoke WRN-28-10 run took about 20 minutes in
# bf16 against 1.5 in fp32.
EMULATED_BF16_SLOWDOWN = 12.0


@dataclass(frozen=True)
class Rate:
    """A sustained training rate in FLOP/s and where it comes from, in words a dry run prints."""

    flops: float
    source: str

    @property
    def tflops(self) -> float:
        return self.flops / 1e12


def compute_mode(cfg: RunConfig, device_type: str) -> str:
    """The arithmetic `cfg` trains in on a device of `device_type`: bf16 (autocast), tf32 (fp32 with
    TF32 matrix products, CUDA only) or fp32."""
    if resolved_precision(cfg, device_type) == "bf16":
        return "bf16"
    return "tf32" if cfg.tf32 and device_type == "cuda" else "fp32"


@functools.cache
def device_class(name: str) -> str | None:
    """The class of `DEVICE_PEAKS` a GPU's name belongs to; None for a GPU this model does not know.
    Cached: a store's thousands of runs name a handful of devices."""
    upper = name.upper()
    return next((cls for cls, pattern in DEVICE_PATTERNS if re.search(pattern, upper)), None)


def assumed_rate(device_type: str, gpu: str | None, mode: str) -> Rate:
    """The rate assumed for `mode` on `gpu` (a GPU's name or class; None: `DEFAULT_GPU`), or on a CPU."""
    if device_type == "cpu":
        return Rate(CPU_TFLOPS * 1e12, f"assumed for a CPU ({CPU_TFLOPS:g} TFLOP/s, measured on a 2-core AVX2 "
                                       "EPYC: wrn/throughput.py)")
    known = device_class(gpu) if gpu else DEFAULT_GPU
    cls = known or DEFAULT_GPU
    peak, share = DEVICE_PEAKS[cls][mode], SUSTAINED_FRACTION[mode]
    named = "" if known or not gpu else f" (the GPU {gpu!r} is not in the model: taken as an {DEFAULT_GPU})"
    return Rate(peak * share * 1e12, f"assumed for an {cls} in {mode}{named}: datasheet peak {peak:g} x "
                                     f"sustained {share:g} (wrn/throughput.py; smaller networks reach less)")


def train_flops(cfg: RunConfig, forward_flops: int) -> float:
    """FLOPs of training `cfg` for all its epochs on its data (real or generated), evaluation left out:
    what a run's recorded training time measures."""
    train_images, _ = expected_sizes(cfg)
    if cfg.drop_last:
        train_images = train_images // cfg.batch_size * cfg.batch_size
    return float(cfg.epochs) * 3 * forward_flops * train_images


def run_flops(cfg: RunConfig, forward_flops: int) -> float:
    """`train_flops` and the evaluation after every epoch."""
    return train_flops(cfg, forward_flops) + float(cfg.epochs) * forward_flops * expected_sizes(cfg)[1]


def _slowdown(cfg: RunConfig, device_type: str) -> float:
    emulated = device_type == "cpu" and resolved_precision(cfg, device_type) == "bf16" and not cpu_has_native_bf16()
    return EMULATED_BF16_SLOWDOWN if emulated else 1.0


def estimate_seconds(cfg: RunConfig, forward_flops: int, rate: float, device_type: str) -> float:
    """Device seconds of one training run of `cfg` on a device of `device_type` sustaining `rate` FLOP/s
    (emulated bf16 on a CPU is `EMULATED_BF16_SLOWDOWN` times slower)."""
    return RUN_OVERHEAD_SECONDS[device_type] + _slowdown(cfg, device_type) * run_flops(cfg, forward_flops) / rate


def train_seconds(cfg: RunConfig, forward_flops: int, rate: float, device_type: str) -> float:
    """The training part of `estimate_seconds` (no evaluation, no overhead): what a run's recorded
    training time is held against."""
    return _slowdown(cfg, device_type) * train_flops(cfg, forward_flops) / rate


def timing_seconds(forward_flops: int, batch_size: int, steps: int, rate: float, device_type: str) -> float:
    """Wall seconds of one Figure 4 measurement (`wrn.timing`): `steps` forward+backward passes of a batch."""
    return RUN_OVERHEAD_SECONDS[device_type] + steps * batch_size * 3 * forward_flops / rate
