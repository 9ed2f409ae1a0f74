"""The measurements of `python -m benchmarks.train_speed`, each bounded by a deadline: the suite's
engine (`measure_suite`) and its data pipeline alone (`measure_suite_data`), the conventional PyTorch
loop and its DataLoader (`measure_baseline`), and a matrix multiply's peak on the device
(`matmul_peak`).

Apart from the command (`benchmarks.train_speed`: what to measure, in which order, the result) and
its report (`benchmarks.train_report`), so that `python -m benchmarks.gpu_check` measures with the
same code (`benchmarks.device_speed`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import transforms

from wrn.data import datasets
from wrn.config import DATASET_SIZES, RunConfig, resolve
from wrn.data.tensor_pipeline import make_pipeline
from wrn.models import build_model
from wrn.names import parse_label
from wrn.data.layout import dataset_folder
from wrn.data.manifest import read_manifest
from wrn.data.preprocess import OFFICIAL_MEAN, OFFICIAL_STD
from wrn.runtime import synchronize
from wrn.train import TrainingInterrupted, seed_everything, train

EPOCH_IMAGES = DATASET_SIZES["cifar10"][0]  # a CIFAR training epoch, for "seconds per epoch"
DATA_SAMPLE_IMAGES = 4096  # least images per timed sample of a data pipeline alone
PEAK_MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}  # square operands of the peak measurement


class BenchmarkError(RuntimeError):
    """A measurement that could not be made (a diverged or failed run, a failed worker)."""


@dataclasses.dataclass(frozen=True)
class Mode:
    """The systems settings of one suite measurement, as `RunConfig` fields."""

    precision: str  # auto | fp32 | bf16
    channels_last: str  # auto | on | off
    compile: bool


# ------------------------------------------------------------------------------------------------
# Configs and timing
# ------------------------------------------------------------------------------------------------
def bench_config(model: str, dataset: str, batch_size: int | None, epochs: int, mode: Mode,
                 images: tuple[int, int]) -> RunConfig:
    """The resolved config both sides train: the paper's recipe for `dataset`, mean/std normalisation,
    on generated data of `images` (train, test) images."""
    return resolve(RunConfig(dataset=dataset, data_source=f"synthetic:{images[0]}:{images[1]}",
                             **parse_label(model), epochs=epochs, batch_size=batch_size,
                             preprocessing="meanstd", precision=mode.precision,
                             channels_last=mode.channels_last, compile=mode.compile))


def median_epoch_seconds(run_epoch: Callable[[], None], device: torch.device, warmup: int,
                         repeats: int, deadline: float = math.inf) -> tuple[float, bool]:
    """Median wall time of `run_epoch` over `repeats` calls after `warmup` untimed ones, and whether
    `deadline` (a `time.monotonic()` value) cut the calls short: past it no further call starts, but
    one timed call always runs, so that a bounded measurement still has its number."""
    warmed = 0
    while warmed < warmup and (warmed == 0 or time.monotonic() < deadline):
        run_epoch()
        warmed += 1
    times: list[float] = []
    while len(times) < repeats and (not times or time.monotonic() < deadline):
        synchronize(device)
        started = time.perf_counter()
        run_epoch()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times), warmed < warmup or len(times) < repeats


# ------------------------------------------------------------------------------------------------
# The suite
# ------------------------------------------------------------------------------------------------
def measure_suite(cfg: RunConfig, data_dir: Path, device: torch.device, warmup: int,
                  deadline: float = math.inf) -> tuple[float | None, bool]:
    """Train `cfg` with the engine in a throw-away run directory: the median per-epoch images/s of the
    epochs after `warmup`, as the engine itself records them in metrics.jsonl, and whether `deadline`
    (a `time.monotonic()` value) stopped the training at a step boundary first (then the epochs done
    after warm-up give the number, None when there are none)."""
    bounded = False
    with tempfile.TemporaryDirectory(prefix="wrn-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        try:
            result = train(cfg, run_dir, data_dir, device, should_stop=lambda: time.monotonic() > deadline,
                           progress=False, download=False)
        except TrainingInterrupted:
            result, bounded = None, True
        metrics = run_dir / "metrics.jsonl"
        rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    if result is not None and (result.status != "done" or len(rows) != cfg.epochs):
        raise BenchmarkError(f"the suite's run ended {result.status} after {len(rows)} of {cfg.epochs} "
                             f"epochs ({result.diverged})")
    timed = [r["images_per_s"] for r in rows[warmup:]]
    return (statistics.median(timed) if timed else None), bounded


def measure_suite_data(cfg: RunConfig, data_dir: Path, device: torch.device, warmup: int,
                       repeats: int, deadline: float = math.inf) -> tuple[float, bool]:
    """Images/s of the suite's training batches alone (shuffle, crop, flip, normalise, on device)."""
    pipeline = make_pipeline(cfg, data_dir, device, download=False)
    epoch = 0

    def run_epoch() -> None:
        nonlocal epoch
        epoch += 1
        for _ in pipeline.train_batches(epoch):
            pass

    return data_rate(run_epoch, pipeline.steps_per_epoch * cfg.batch_size, device, warmup, repeats, deadline)


def data_rate(run_epoch: Callable[[], None], images: int, device: torch.device, warmup: int,
              repeats: int, deadline: float = math.inf) -> tuple[float, bool]:
    """Images/s of a data pipeline, each timed sample `DATA_SAMPLE_IMAGES` or more (whole epochs), so
    that a fast pipeline over a small generated set is not timed on a few milliseconds; and whether
    `deadline` cut the samples short (`median_epoch_seconds`)."""
    passes = -(-DATA_SAMPLE_IMAGES // images)

    def run_sample() -> None:
        for _ in range(passes):
            run_epoch()

    seconds, bounded = median_epoch_seconds(run_sample, device, warmup, repeats, deadline)
    return passes * images / seconds, bounded


# ------------------------------------------------------------------------------------------------
# The conventional baseline
# ------------------------------------------------------------------------------------------------
def conventional_loader(cfg: RunConfig, data_dir: Path, device: torch.device, workers: int):
    """torchvision's dataset over the same files with the usual PIL transforms, in a DataLoader.

    Persistent workers, so that their start-up is not charged to every epoch of the baseline."""
    steps: list[Any] = []
    if cfg.crop_padding:
        steps += [transforms.Pad(cfg.crop_padding, padding_mode="reflect" if cfg.pad_mode == "reflect" else "constant"),
                  transforms.RandomCrop(cfg.image_size)]
    if cfg.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(),  # to the 0-1 scale, hence the official 0-255 constants / 255
              transforms.Normalize([m / 255 for m in OFFICIAL_MEAN], [s / 255 for s in OFFICIAL_STD])]
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[cfg.dataset]
    manifest = read_manifest(dataset_folder(cfg.dataset, data_dir), cfg.dataset)
    dataset = cls(root=str(data_dir), train=True, transform=transforms.Compose(steps), download=False,
                  manifest=manifest)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=cfg.drop_last,
                      num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == "cuda")


def measure_baseline(cfg: RunConfig, data_dir: Path, device: torch.device, workers: int, warmup: int,
                     repeats: int, data_repeats: int, max_seconds: float = math.inf) -> dict[str, Any]:
    """Images/s of the conventional loop: training (data + step) and its DataLoader alone, each
    measurement bounded by `max_seconds` (`median_epoch_seconds`)."""
    seed_everything(cfg.seed)
    loader = conventional_loader(cfg, data_dir, device, workers)
    images = len(loader) * cfg.batch_size

    def data_epoch() -> None:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    data_img_s, data_bounded = data_rate(data_epoch, images, device, warmup, data_repeats,
                                         time.monotonic() + max_seconds)

    model = build_model(cfg).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    model.train()

    def train_epoch() -> None:
        running_loss, correct = 0.0, 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss = F.cross_entropy(out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            correct += (out.argmax(1) == y).sum().item()

    train_seconds, bounded = median_epoch_seconds(train_epoch, device, warmup, repeats, time.monotonic() + max_seconds)
    return {"img_s": images / train_seconds, "data_img_s": data_img_s, "bounded": bounded,
            "data_bounded": data_bounded}


# ------------------------------------------------------------------------------------------------
# The peak
# ------------------------------------------------------------------------------------------------
def matmul_peak(device: torch.device, precision: str, tf32: bool = False) -> float:
    """FLOP/s of a large square matrix multiply in `precision` on `device`, measured now: the ceiling
    the network's convolutions are compared with, so the fastest repeat (on a shared machine slower
    repeats measure the neighbours). Random operands (zeros run faster than real data), several pairs
    on CUDA so that repeats do not run out of the L2 cache, CUDA events there."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = PEAK_MATMUL_SIZE[device.type]
    pairs, warmup, repeats = (3, 5, 30) if device.type == "cuda" else (1, 2, 10)
    operands = [(torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype))
                for _ in range(pairs)]
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        for i in range(warmup):
            torch.mm(*operands[i % pairs])
        times = []
        for i in range(repeats):
            a, b = operands[i % pairs]
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.mm(a, b)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                started = time.perf_counter()
                torch.mm(a, b)
                times.append(time.perf_counter() - started)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n**3 / min(times)
