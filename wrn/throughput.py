"""The throughput model behind every time estimate the suite prints (dry runs, launch guards).

Training one image costs about three forward passes (forward, then backward through activations and
weights: the usual "6 x multiply-accumulates" rule), evaluating one costs one. Dividing by a sustained
device rate gives seconds, and every run adds a fixed overhead: its own process starting and
importing torch and the engine, reading and preprocessing its data, building its network, its
provenance, checkpoints and report lines. On a GPU the overhead is lost in hours of training; on a CPU
at the smoke profile's sizes it is most of a run. The rate is a measurement, not a datasheet peak: `python -m
benchmarks.train_speed` prints `achieved_flops` for this machine, and `--device-tflops` (or the
WRN_DEVICE_TFLOPS environment variable) feeds it back. The defaults below are deliberately
conservative placeholders for when nothing was measured.
"""

from __future__ import annotations

import os

from wrn.config import RunConfig, expected_sizes, resolved_precision
from wrn.cpuinfo import cpu_has_native_bf16

DEFAULT_TFLOPS = {"cuda": 100.0, "cpu": 0.05}
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


def device_rate(device_type: str, tflops: float | None = None) -> float:
    """Sustained training FLOP/s assumed for `device_type` ("cuda" or "cpu")."""
    if tflops is None and os.environ.get("WRN_DEVICE_TFLOPS"):
        tflops = float(os.environ["WRN_DEVICE_TFLOPS"])
    return 1e12 * (tflops if tflops is not None else DEFAULT_TFLOPS[device_type])


def run_flops(cfg: RunConfig, forward_flops: int) -> float:
    """Total FLOPs of training `cfg` for all its epochs on its data (real or generated), evaluation
    after every epoch included."""
    train_images, test_images = expected_sizes(cfg)
    if cfg.drop_last:
        train_images = train_images // cfg.batch_size * cfg.batch_size
    return float(cfg.epochs) * forward_flops * (3 * train_images + test_images)


def estimate_seconds(cfg: RunConfig, forward_flops: int, rate: float, device_type: str) -> float:
    """Wall seconds of one training run of `cfg` on a device of `device_type` sustaining `rate` FLOP/s
    (in fp32 or native bf16; emulated bf16 is `EMULATED_BF16_SLOWDOWN` times slower)."""
    slowdown = (EMULATED_BF16_SLOWDOWN if device_type == "cpu" and resolved_precision(cfg, device_type) == "bf16"
                and not cpu_has_native_bf16() else 1.0)
    return RUN_OVERHEAD_SECONDS[device_type] + slowdown * run_flops(cfg, forward_flops) / rate


def timing_seconds(forward_flops: int, batch_size: int, steps: int, rate: float, device_type: str) -> float:
    """Wall seconds of one Figure 4 measurement (`wrn.timing`): `steps` forward+backward passes of a batch."""
    return RUN_OVERHEAD_SECONDS[device_type] + steps * batch_size * 3 * forward_flops / rate
