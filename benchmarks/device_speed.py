"""The speed measurements of `python -m benchmarks.gpu_check`, each through the suite's own code:

* WRN-28-10, the paper's largest CIFAR network, trained by the engine (`wrn.train.train`, data and
  augmentation on the device) in the paper profile (fp32, TF32 off) and in the fast profile (bf16
  autocast, channels_last, TF32): seconds per CIFAR epoch (390 steps of 128);
* WRN-40-2, a small network of the ablations, alone and as N runs packed on the device, each in its
  own process (`runs_per_task` on SLURM, `--runs-per-gpu` locally): images/s in all;
* ImageNet's input paths (`benchmarks.input_speed`) against the images/s WRN-50-2 consumes at the
  rate the fast profile reached here.

Every training measurement states its share of the device's matrix-multiply peak in its precision,
measured on the spot (`benchmarks.train_measure.matmul_peak`), and its peak device memory. Each is
bounded in time; what does not fit the check's deadline is listed as skipped.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import input_speed, train_measure, train_speed
from wrn.config import RunConfig, resolve
from wrn.data.fake import write_fake_dataset
from wrn.models import forward_flops
from wrn.names import parse_label
from wrn.runtime import peak_memory_bytes, runtime_settings
from wrn.throughput import compute_mode

CIFAR_EPOCH_IMAGES = 390 * 128  # the recipe's epoch: the last partial batch of 50,000 skipped
PAPER = {"precision": "fp32", "tf32": False, "channels_last": "auto"}
FAST = {"precision": "bf16", "tf32": True, "channels_last": "on"}


@dataclass(frozen=True)
class SpeedSizes:
    """Generated training images and batch of each measurement, and the processes packed on one GPU."""

    big_images: int
    big_batch: int
    small_images: int
    small_batch: int
    packed: int
    input_args: tuple[str, ...]


FULL = SpeedSizes(big_images=5120, big_batch=128, small_images=10240, small_batch=128, packed=4,
                  input_args=("--images", "2048", "--unique", "128", "--max-seconds", "4"))
QUICK = SpeedSizes(big_images=16, big_batch=8, small_images=64, small_batch=16, packed=2,
                   input_args=("--quick",))


def _config(model: str, images: int, batch: int, epochs: int, **systems) -> RunConfig:
    return resolve(RunConfig(dataset="cifar10", data_source=f"synthetic:{images}:{min(images, 256)}",
                             **parse_label(model), preprocessing="meanstd", batch_size=batch, epochs=epochs,
                             **systems))


def _share(achieved: float, device: torch.device, precision: str, tf32: bool, peaks: dict) -> dict[str, float]:
    key = (precision, tf32)
    if key not in peaks:
        peaks[key] = train_measure.matmul_peak(device, precision, tf32)
    return {"tflops": achieved / 1e12, "peak_tflops": peaks[key] / 1e12, "mfu": achieved / peaks[key]}


def engine_epoch(name: str, model: str, systems: dict, sizes: SpeedSizes, device: torch.device, work: Path,
                 deadline: float, peaks: dict) -> dict[str, Any]:
    """`model` trained by the engine in-process for a warm-up epoch and two timed ones (fewer past
    `deadline`): images/s, seconds per CIFAR epoch, share of the matmul peak, peak memory."""
    cfg = _config(model, sizes.big_images, sizes.big_batch, epochs=3, **systems)
    data = _data(work, cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    img_s, bounded = train_measure.measure_suite(cfg, data, device, warmup=1, deadline=deadline)
    settings = runtime_settings(cfg, device)
    out: dict[str, Any] = {"name": name, "model": model, "precision": settings.precision, "tf32": cfg.tf32,
                           "compute_mode": compute_mode(cfg, device.type), "forward_flops": forward_flops(cfg),
                           "channels_last": settings.channels_last, "img_s": img_s, "bounded": bounded,
                           "peak_memory_gb": _gb(peak_memory_bytes(device))}
    if img_s is None:
        return out
    out["epoch_s"] = CIFAR_EPOCH_IMAGES / img_s
    out.update(_share(3 * forward_flops(cfg) * img_s, device, settings.precision, cfg.tf32, peaks))
    return out


def packed(name: str, model: str, processes: int, sizes: SpeedSizes, device: torch.device, work: Path,
           max_seconds: float, peaks: dict) -> dict[str, Any]:
    """`processes` trainings of `model` at once on the device, each its own process (as packed runs
    are), against one alone: images/s in all, and each process's peak memory."""
    cfg = _config(model, sizes.small_images, sizes.small_batch, epochs=3, **PAPER)
    data = _data(work, cfg)
    argv = ["--model", model, "--device", str(device), "--precision", "fp32", "--batch-size", str(sizes.small_batch),
            "--train-images", str(sizes.small_images), "--repeats", "2", "--no-baseline",
            "--max-seconds", str(max(1.0, max_seconds))]
    bench = train_speed.bench_setup(train_speed.parse_args(argv))
    alone = train_speed.measure_concurrent(bench, bench.modes[0], 1, data)
    together = train_speed.measure_concurrent(bench, bench.modes[0], processes, data)
    flops = 3 * forward_flops(cfg)
    out = {"name": name, "model": model, "precision": "fp32", "compute_mode": "fp32", "processes": processes,
           "forward_flops": forward_flops(cfg), "img_s": together["total_img_s"], "alone_img_s": alone["total_img_s"],
           "alone_tflops": flops * alone["total_img_s"] / 1e12,
           "speedup": together["total_img_s"] / alone["total_img_s"],
           "peak_memory_gb": max((_gb(m) for m in together["peak_memory_bytes"] if m is not None), default=None)}
    out.update(_share(flops * together["total_img_s"], device, "fp32", False, peaks))
    return out


def imagenet_input(device: torch.device, sizes: SpeedSizes, fast: dict[str, Any] | None) -> dict[str, Any]:
    """ImageNet's input paths against what WRN-50-2 consumes per GPU at the FLOP rate the fast profile
    reached on WRN-28-10 here (the throughput model's default rate when that was not measured)."""
    argv = list(sizes.input_args)
    source = "the throughput model's default rate"
    if fast and fast.get("tflops"):
        wrn50 = input_speed.bench_config("auto", 256, (1, 1))
        argv += ["--train-images-per-s", str(fast["tflops"] * 1e12 / (3 * forward_flops(wrn50)))]
        source = f"WRN-28-10's fast-profile rate here, {fast['tflops']:.1f} TFLOP/s"
    result = input_speed.run(input_speed.parse_args(argv))
    paths = {m["name"]: m["img_s"] for m in result["modes"]}
    return {"name": "imagenet_input", "need_img_s": result["train_images_per_s"], "need_from": source,
            "paths_img_s": paths, "skipped_paths": [s["name"] for s in result["skipped"]]}


def _data(work: Path, cfg: RunConfig) -> Path:
    _, train_images, test_images = cfg.data_source.split(":")
    root = work / f"speed-{train_images}-{test_images}"
    if not root.exists():
        write_fake_dataset("cifar10", root, int(train_images), int(test_images), seed=0)
    return root


def _gb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**30, 2)


def measure_all(device: torch.device, sizes: SpeedSizes, deadline: float, log) -> tuple[list[dict], list[str]]:
    """Every measurement that fits before `deadline` (a time.monotonic() value), and the names of
    those skipped for time."""
    peaks: dict = {}
    done, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="wrn-gpu-speed-") as tmp:
        work = Path(tmp)
        plan = [
            ("wrn28_10_paper", lambda: engine_epoch("wrn28_10_paper", "WRN-28-10", PAPER, sizes, device, work,
                                                    _share_of(deadline, 4), peaks)),
            ("wrn28_10_fast", lambda: engine_epoch("wrn28_10_fast", "WRN-28-10", FAST, sizes, device, work,
                                                   _share_of(deadline, 3), peaks)),
            ("wrn40_2_packed", lambda: packed("wrn40_2_packed", "WRN-40-2", sizes.packed, sizes, device, work,
                                              (deadline - time.monotonic()) / 6, peaks)),
            ("imagenet_input", lambda: imagenet_input(device, sizes, next((m for m in done if m["name"] ==
                                                                             "wrn28_10_fast"), None))),
        ]
        for name, measure in plan:
            if time.monotonic() > deadline:
                skipped.append(name)
                continue
            log(f"measuring {name}")
            try:
                done.append(measure())
            except Exception as e:  # noqa: BLE001 - a measurement that fails is reported, the others still run
                done.append({"name": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
    return done, skipped


def _share_of(deadline: float, parts: int) -> float:
    """A deadline `1/parts` of the time left from now: one measurement's bound."""
    now = time.monotonic()
    return now + max(0.0, deadline - now) / parts if math.isfinite(deadline) else deadline
