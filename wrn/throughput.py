"""The throughput model behind every time estimate the suite prints (dry runs, launch guards).

Training one image costs about three forward passes (forward, then backward through activations and
weights: the usual "6 x multiply-accumulates" rule), evaluating one costs one. Dividing by a sustained
device rate gives seconds. The rate is a measurement, not a datasheet peak: `python -m
benchmarks.train_speed` prints `achieved_flops` for this machine, and `--device-tflops` (or the
WRN_DEVICE_TFLOPS environment variable) feeds it back. The defaults below are deliberately
conservative placeholders for when nothing was measured.
"""

from __future__ import annotations

import os

from wrn.config import RunConfig, expected_sizes

DEFAULT_TFLOPS = {"cuda": 100.0, "cpu": 0.05}


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


def estimate_seconds(cfg: RunConfig, forward_flops: int, rate: float) -> float:
    return run_flops(cfg, forward_flops) / rate
