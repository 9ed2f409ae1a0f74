"""ImageNet input speed: decoded, augmented 224x224 crops per second through each input path of
wrn.data.imagenet, against the rate WRN-50-2's training consumes them.

    python -m benchmarks.input_speed            # a table
    python -m benchmarks.input_speed --json     # one JSON object
    python -m benchmarks.input_speed --quick    # seconds: a handful of images, for tests

It writes ImageNet-like JPEGs (500x375, a common ImageNet size, about 95 KB each at quality 90: smooth
colour fields, texture and noise) in ImageFolder layout with a generated-data manifest, a few hundred
distinct files hard-linked into a longer epoch, and reads them through
`wrn.data.imagenet.ImageNetPipeline` itself with fb.resnet.torch's full recipe (RandomSizedCrop,
colour jitter, lighting, flip, mean/std), at the per-GPU batch of its 256 images on 8 GPUs. The files
are in the page cache: this measures decoding and augmentation, not the disk. Paths:

* pil with 0 workers (one core's rate: torch held to one thread, as in a worker) and with --workers
  DataLoader workers (the baseline: the portable path every machine can run), their batches finished
  on the CUDA device when there is one;
* tensor on the CPU, 0 and --workers workers (torchvision.io's decode_jpeg in the workers);
* tensor on CUDA (nvJPEG, batched crops on the GPU), only where CUDA is available.

Each path runs epochs until its time bound (--max-seconds); an epoch's first workers + 1 batches are
not timed (the workers start, and their first round arrives at once), so the rate is the steady one an
ImageNet epoch of 5,000 batches sees. Each tensor path's first batch is also compared with the pil
path's (the same images, crops and flips): the largest and mean difference in grey levels.

The rate training needs is `--train-images-per-s`, by default the throughput model's (wrn.throughput:
WRN-50-2 at 224 costs 3 x its forward FLOPs per image, at the rate assumed for the fast profile's bf16
on the default GPU, or $WRN_DEVICE_TFLOPS), per GPU: each GPU's process needs that many crops per
second from its own share of the node's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from experiments.rates import RateBook
from wrn.cli import ArgumentParser, run_main
from wrn.config import RunConfig, resolve
from wrn.data.imagenet import ImageNetPipeline
from wrn.data.imagenet_augment import FB_RESNET
from wrn.data.layout import dataset_folder
from wrn.data.prepared import write_manifest
from wrn.data.preprocess import IMAGENET_STD
from wrn.errors import UsageError
from wrn.files import atomic_write
from wrn.runtime import bind_device, synchronize
from wrn.sizes import network_size
from wrn.throughput import Rate, assumed_rate

IMAGE_HW = (375, 500)  # height, width
JPEG_QUALITY = 90
CLASSES = 8
DEFAULTS = {  # (images per epoch, distinct files, batch, seconds per path)
    "cpu": dict(images=1024, unique=128, batch_size=32, max_seconds=8.0),
    "cuda": dict(images=8192, unique=256, batch_size=32, max_seconds=20.0),
    "quick": dict(images=48, unique=16, batch_size=8, max_seconds=2.0),
}
BASELINE = "pil"  # the mode every ratio is against: pil with --workers workers


@dataclass(frozen=True)
class Mode:
    input_pipeline: str  # pil | tensor
    device: torch.device
    workers: int

    @property
    def name(self) -> str:
        where = "" if self.input_pipeline == "pil" else f" on {self.device.type.upper()}"
        return f"{self.input_pipeline}{where}, {self.workers} workers"


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def _photo_like(rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3): a smooth colour field, a finer texture and pixel noise, so a JPEG of it is
    about as large, and as slow to decode, as an ImageNet photo of its size."""
    h, w = IMAGE_HW
    fields = [np.asarray(Image.fromarray(rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)).resize(
        (w, h), resample), dtype=np.float32) for rows, cols, resample in ((6, 8, Image.BICUBIC),
                                                                            (94, 125, Image.BILINEAR))]
    x = 0.5 * fields[0] + 0.5 * fields[1] + 12.0 * rng.standard_normal((h, w, 3), dtype=np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def write_jpeg_set(root: Path, images: int, unique: int, seed: int = 0) -> tuple[int, int]:
    """An ImageNet folder under data directory `root`: `unique` generated JPEGs, hard-linked (copied
    where links fail) into `images` training files over `CLASSES` classes, one test image per class,
    and a generated-data manifest. Returns (train, test) counts."""
    rng = np.random.default_rng(seed)
    folder = dataset_folder("imagenet", root)
    sources = []
    for i in range(unique):
        path = folder / "originals" / f"{i:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f, image=_photo_like(rng): Image.fromarray(image).save(
            f, format="JPEG", quality=JPEG_QUALITY), binary=True)
        sources.append(path)
    for split, count in (("train", images), ("val", CLASSES)):
        for i in range(count):
            path = folder / split / f"n{i % CLASSES:08d}" / f"{split}_{i:06d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(sources[i % unique], path)
            except OSError:
                path.write_bytes(sources[i % unique].read_bytes())
    for path in sources:  # only train/ and val/ are the dataset
        path.unlink()
    (folder / "originals").rmdir()
    write_manifest("imagenet", root, generated=True)
    return images, CLASSES


def bench_config(input_pipeline: str, batch_size: int, images: tuple[int, int]) -> RunConfig:
    """WRN-50-2's ImageNet recipe (fb.resnet.torch's augmentation, 224 crops) on the generated set."""
    return resolve(RunConfig(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, k=2,
                             data_source=f"synthetic:{images[0]}:{images[1]}", batch_size=batch_size,
                             input_pipeline=input_pipeline))


def training_rate() -> Rate:
    """The rate one GPU trains at by the throughput model: $WRN_DEVICE_TFLOPS, else the assumption
    for the fast profile's bf16 on the default GPU (the precision that asks the most of the input)."""
    return RateBook("cuda", None, []).given or assumed_rate("cuda", None, "bf16")


def training_images_per_s() -> float:
    """Images/s one GPU trains WRN-50-2 at 224 at `training_rate`: the rate over 3 x the forward FLOPs
    of an image."""
    _, flops = network_size(bench_config("auto", 256, (1, 1)))
    return training_rate().flops / (3 * flops)


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------
def measure(pipeline: ImageNetPipeline, device: torch.device, max_seconds: float) -> dict[str, Any]:
    """Images/s of `pipeline.train_batches` over epochs until `max_seconds` pass, each epoch's first
    workers + 1 batches untimed; and epoch 1's first batch (on the CPU) for the pixel comparison."""
    skip = pipeline.workers + 1
    deadline = time.monotonic() + max_seconds
    timed_images, seconds, first, epoch = 0, 0.0, None, 0
    while epoch == 0 or time.monotonic() < deadline:
        epoch += 1
        with contextlib.closing(pipeline.train_batches(epoch)) as batches:
            started = None
            for i, (x, y) in enumerate(batches):
                if first is None:
                    first = x.cpu()
                if i == skip - 1:
                    synchronize(device)
                    started = time.perf_counter()
                elif started is not None:
                    timed_images += len(y)
                if time.monotonic() > deadline and started is not None and timed_images:
                    break
            if started is not None:
                synchronize(device)
                seconds += time.perf_counter() - started
    return {"img_s": timed_images / seconds if timed_images else None, "timed_images": timed_images,
            "epochs": epoch, "first_batch": first}


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's CPU threads set to `n` for a while: a 0-worker path is one core's rate, as a DataLoader
    worker has one thread (torch's intra-op threads only fight over a small image's resize)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def grey_level_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Largest and mean |a - b| of two normalised batches, on the 0-255 scale (times std x 255)."""
    scale = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    diff = ((a - b).abs() * scale).flatten()
    return {"max": float(diff.max()), "mean": float(diff.mean())}


def bench_modes(workers: int, cuda: torch.device | None) -> tuple[list[Mode], list[dict[str, str]]]:
    """The paths to measure and those skipped, with why."""
    finish = cuda or torch.device("cpu")
    cpu = torch.device("cpu")
    modes = [Mode("pil", finish, 0), Mode("pil", finish, workers), Mode("tensor", cpu, 0), Mode("tensor", cpu, workers)]
    if workers == 0:
        modes = [modes[0], modes[2]]
    if cuda is None:
        return modes, [{"name": f"tensor on CUDA, {workers} workers", "reason": "no CUDA"}]
    return modes + [Mode("tensor", cuda, workers)], []


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one invocation, as the JSON object `--json` prints."""
    cuda = bind_device("cuda") if torch.cuda.is_available() else None
    sizes = DEFAULTS["quick" if args.quick else ("cuda" if cuda else "cpu")]
    images = args.images or sizes["images"]
    unique = min(images, args.unique or sizes["unique"])
    batch_size = args.batch_size or sizes["batch_size"]
    max_seconds = args.max_seconds or sizes["max_seconds"]
    workers = min(8, os.cpu_count() or 1) if args.workers is None else args.workers
    if images < batch_size:
        raise UsageError(f"--images: {images}: expected at least one batch ({batch_size} images)")
    need = args.train_images_per_s or training_images_per_s()
    modes, skipped = bench_modes(workers, cuda)
    out: dict[str, Any] = {
        "images": images, "unique_images": unique, "image_hw": list(IMAGE_HW), "crop": 224,
        "batch_size": batch_size, "workers": workers, "max_seconds": max_seconds, "cpus": os.cpu_count(),
        "device_name": torch.cuda.get_device_name(cuda) if cuda else None,
        "train_images_per_s": need,
        "train_rate_source": "given" if args.train_images_per_s else
        f"throughput model: WRN-50-2 at 224, {training_rate().tflops:g} TFLOP/s, {training_rate().source}",
        "recipe": FB_RESNET.name,
        "baseline": Mode("pil", cuda or torch.device("cpu"), workers).name if workers else modes[0].name,
        "skipped": skipped,
    }
    with tempfile.TemporaryDirectory(prefix="wrn-input-speed-") as tmp:
        counts = write_jpeg_set(Path(tmp), images, unique)
        measured = []
        for mode in modes:
            _log(f"{mode.name}: up to {max_seconds:g} s")
            pipeline = ImageNetPipeline(bench_config(mode.input_pipeline, batch_size, counts), Path(tmp),
                                        mode.device, mode.workers)
            with torch_threads(1 if mode.workers == 0 else torch.get_num_threads()):
                measured.append((mode, measure(pipeline, mode.device, max_seconds)))
    baseline = next(r["img_s"] for m, r in measured if m.name == out["baseline"])
    reference = measured[0][1]["first_batch"]  # pil's
    out["baseline_img_s"] = baseline
    out["modes"] = []
    for mode, r in measured:
        rate = r["img_s"]
        out["modes"].append({
            "name": mode.name, "input_pipeline": mode.input_pipeline, "device": mode.device.type,
            "workers": mode.workers, "img_s": rate, "timed_images": r["timed_images"], "epochs": r["epochs"],
            "ratio": None if rate is None or baseline is None else rate / baseline,
            "meets_training": None if rate is None else rate >= need,
            "cores_per_gpu": None if rate is None or mode.workers or mode.device.type == "cuda" else need / rate,
            "grey_levels_vs_pil": (grey_level_difference(r["first_batch"], reference)
                                   if mode.input_pipeline == "tensor" else None),
        })
    return out


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------
def format_report(r: dict[str, Any]) -> str:
    h, w = r["image_hw"]
    lines = [
        f"ImageNet input: {r['images']} JPEGs of {w}x{h} per epoch ({r['unique_images']} distinct), {r['recipe']} "
        f"recipe to {r['crop']}x{r['crop']}, batch {r['batch_size']}; {r['cpus']} CPUs"
        + (f", {r['device_name']}" if r["device_name"] else ""),
        f"training needs {r['train_images_per_s']:,.0f} images/s per GPU ({r['train_rate_source']})",
        "",
        f"{'path':<28}{'images/s':>10}{'vs ' + BASELINE:>10}{'of need':>9}  meets need",
    ]
    for m in r["modes"]:
        if m["img_s"] is None:
            lines.append(f"  {m['name']:<26}{'-':>10}  no timed batch within {r['max_seconds']:g} s")
            continue
        notes = []
        if m["cores_per_gpu"] is not None:
            notes.append(f"~{m['cores_per_gpu']:.1f} cores per GPU at this rate")
        if m["grey_levels_vs_pil"] is not None:
            g = m["grey_levels_vs_pil"]
            notes.append(f"vs pil: max {g['max']:.1f}, mean {g['mean']:.2f} grey levels")
        ratio = "-" if m["ratio"] is None else f"{m['ratio']:.2f}x"
        lines.append(f"  {m['name']:<26}{m['img_s']:>10,.0f}{ratio:>10}{m['img_s'] / r['train_images_per_s']:>9.0%}  "
                     f"{'yes' if m['meets_training'] else 'no '}" + (f"  ({'; '.join(notes)})" if notes else ""))
    for s in r["skipped"]:
        lines.append(f"  {s['name']:<26}skipped: {s['reason']}")
    lines += ["", f"ratios are against {r['baseline']}"]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(f"[input_speed] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m benchmarks.input_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=None,
                   help="training images per epoch (default 1024 on a CPU-only machine, 8192 with CUDA)")
    p.add_argument("--unique", type=int, default=None,
                   help="distinct JPEGs generated, hard-linked into the epoch (default 128, 256 with CUDA)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default 32: 256 over 8 GPUs)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(8, CPUs))")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="time bound of each path (default 8 on a CPU-only machine, 20 with CUDA)")
    p.add_argument("--train-images-per-s", type=float, default=None,
                   help="the per-GPU training rate to compare with (default: the throughput model's for "
                        "WRN-50-2 at 224)")
    p.add_argument("--quick", action="store_true", help="a handful of images, 2 s per path (for tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    for name, low in (("images", 1), ("unique", 1), ("batch_size", 1), ("workers", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')}: {value}: expected an integer >= {low}")
    for name in ("max_seconds", "train_images_per_s"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name.replace('_', '-')}: {value}: expected a number > 0")
    return args


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result) if args.json else format_report(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
