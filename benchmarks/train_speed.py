"""Training speed of the suite against a conventional PyTorch loop on the same network and data.

    python -m benchmarks.train_speed --model WRN-16-2            # a table
    python -m benchmarks.train_speed --model WRN-16-2 --json     # one JSON object

Everything is measured in one process on generated data in the real on-disk format (written by
`wrn.fake_data`, read through the real loaders), each side after a warm-up epoch and as the median over
repeated epochs:

* suite: `wrn.train.train` itself, the code every run goes through. Its per-epoch `images_per_s` is
  the data pipeline plus the training step, device-synchronised, evaluation excluded; one number per
  precision asked for (`--precision fp32 bf16`, channels_last by the engine's rule unless forced).
* baseline: the loop most PyTorch code uses: torchvision's dataset class over the same files, PIL
  transforms (reflect Pad, RandomCrop, RandomHorizontalFlip, ToTensor, Normalize), a DataLoader, fp32
  in NCHW, the same network from `wrn.models.build_model`, the same SGD (PyTorch's default
  implementation), and the usual `loss.item()` per step.
* the data pipelines alone: `wrn.data.make_pipeline(...).train_batches` against that DataLoader.
* peak: a timed matrix multiply in the mode's precision on the same device, so that the achieved rate
  (3 x forward FLOPs per trained image, counted by torch.utils.flop_counter, as `wrn.throughput`
  counts them) becomes a fraction of what this device really does, not of a datasheet.

Both sides normalise by mean/std (the suite's `preprocessing="meanstd"`), so they do the same work per
image; ZCA, the paper's CIFAR default, whitens the stored set once and costs nothing per step.
`--concurrent N` also trains N suite processes at once on the device (what `python -m experiments.run
--runs-per-gpu N` does) and compares their total images/s with one run alone. `--breakdown` profiles the
fastest mode's step (`benchmarks/breakdown.py`): time by kind of operator, and the images/s it would
reach if only its convolutions took time. Each mode's achieved rate is kept in the rates file of
`--results` (`experiments.rates`: results/rates.json by default), where every later dry run on this
device finds it for this network and precision.

Every measurement has a time bound (`--max-seconds`, default 60 s on CPU): past it no epoch starts and a
suite mode stops at its next step, and the result lists what was bounded. On a CPU without native bf16
(`wrn.cpuinfo.cpu_has_native_bf16`: an AVX2 CPU, say) the default modes leave bf16 out, since torch
emulates it there many times slower than fp32; `--precision bf16` still measures it, bounded. The
result names the CPU's vector capability as torch dispatches to it (`cpu_capability`, e.g. "AVX2").

This module is the command: what one invocation measures (`Bench`), in which order, and the
concurrent processes of `--concurrent`. The measurements themselves are `benchmarks.train_measure`;
the table and the rates file's records, `benchmarks.train_report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.breakdown import profile_training
from benchmarks.train_measure import (DATA_SAMPLE_IMAGES, EPOCH_IMAGES, BenchmarkError, Mode, bench_config, matmul_peak,
                                      measure_baseline, measure_suite, measure_suite_data)
from benchmarks.train_report import describe, format_report, measurements
from experiments.rates import DEFAULT_RESULTS, record_measurements
from wrn.cli import ArgumentParser, run_main
from wrn.config import RunConfig
from wrn.cpuinfo import cpu_has_native_bf16
from wrn.errors import UsageError
from wrn.data.fake import write_fake_dataset
from wrn.models import build_model, count_params, forward_flops
from wrn.runtime import bind_device, cpu_capability, peak_memory_bytes, pick_device, runtime_settings
from wrn.throughput import compute_mode

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("cifar10", "cifar100")
TEST_IMAGES = 256  # at most; evaluated after every suite epoch (untimed), so kept small for wall time
BREAKDOWN_STEPS = 20  # profiled training steps of --breakdown
MAX_SECONDS = {"cpu": 60.0, "cuda": 900.0}  # default bound of each measurement (compiling takes minutes)
EXIT_FAILED = 1


# ------------------------------------------------------------------------------------------------
# Concurrency
# ------------------------------------------------------------------------------------------------
def measure_concurrent(bench: Bench, mode: Mode, processes: int, data_dir: Path) -> dict[str, Any]:
    """Total images/s of `processes` suite trainings running at once on the device, each in its own
    process as the runner's `--runs-per-gpu` starts them, the CPU threads split between them."""
    device = bench.device
    cores = torch.get_num_threads() if device.type == "cpu" else (os.cpu_count() or 1)
    threads = max(1, cores // processes)
    cmd = [sys.executable, "-m", "benchmarks.train_speed", "--worker", "--data-dir", str(data_dir),
           "--model", bench.model, "--dataset", bench.dataset, "--device", str(device),
           "--precision", mode.precision, "--channels-last", mode.channels_last,
           "--batch-size", str(bench.batch_size), "--train-images", str(bench.images[0]),
           "--repeats", str(bench.repeats), "--threads", str(threads), *(["--compile"] if mode.compile else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(processes)]
    reports = []
    for worker in workers:
        out, err = worker.communicate()
        if worker.returncode != 0:
            tail = " | ".join(err.strip().splitlines()[-3:])
            raise BenchmarkError(f"a concurrent worker exited {worker.returncode}: {tail}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    rates = [r["suite_img_s"] for r in reports]
    return {"processes": processes, "threads_each": threads, "per_process_img_s": rates,
            "total_img_s": sum(rates), "peak_memory_bytes": [r["peak_memory_bytes"] for r in reports]}


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="WRN-16-2", help="a paper-style network name (default WRN-16-2)")
    p.add_argument("--dataset", default="cifar10", choices=DATASETS, help="format and recipe (default cifar10)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--precision", nargs="+", default=None, choices=("auto", "fp32", "bf16"),
                   help="suite modes to measure, each against the same baseline (default: fp32 bf16; fp32 "
                        "alone on a CPU without native bf16, where bf16 is emulated, many times slower)")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="suite memory format; auto: the engine's rule, on with bf16 (default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the suite's model")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (128 for CIFAR)")
    p.add_argument("--train-images", type=int, default=None,
                   help="generated training images per epoch (default 512 on CPU, 10240 on CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs after one warm-up (default 3)")
    p.add_argument("--data-repeats", type=int, default=5,
                   help=f"timed samples (>= {DATA_SAMPLE_IMAGES} images each) of the data pipelines alone "
                        "(default 5)")
    p.add_argument("--baseline-workers", type=int, default=None,
                   help="DataLoader workers of the baseline (default 2 on CPU, the usual CIFAR "
                        "setting, which overlaps PIL with the step; cpu_count/2, at most 8, on CUDA)")
    p.add_argument("--no-baseline", action="store_true", help="measure only the suite (ratios are null)")
    p.add_argument("--concurrent", type=int, default=0, metavar="N",
                   help="also train N suite processes at once and compare total images/s with one")
    p.add_argument("--breakdown", action="store_true",
                   help="also profile the fastest mode's step and print where its time goes (convolutions, "
                        "batch norm, optimizer, data, ...) and the images/s if only convolutions took time")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="time bound of each measurement (the baseline, each data pipeline, each suite mode): "
                        "past it no epoch starts and a suite mode stops at its next step; the result names "
                        "what was bounded (default 60 on CPU, 900 on CUDA, where compiling takes minutes)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--results", type=Path, default=Path(DEFAULT_RESULTS),
                   help="the results folder whose rates.json keeps each mode's achieved rate for later dry runs "
                        "(default: results)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, low in (("batch_size", 1), ("train_images", 1), ("repeats", 1), ("data_repeats", 1),
                      ("baseline_workers", 0), ("concurrent", 0), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')}: {value}: expected an integer >= {low}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise UsageError(f"--max-seconds: {args.max_seconds}: expected a number of seconds > 0")
    return args


def pick_bench_device(name: str) -> torch.device:
    """The device `--device` names, bound to this process (`wrn.runtime.bind_device`)."""
    try:
        device = pick_device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: {name!r}: allowed: cpu, cuda, cuda:N, auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device: {name!r}: no CUDA device here; allowed: cpu, auto")
    return bind_device(device)


@dataclasses.dataclass(frozen=True)
class Bench:
    """What one invocation measures, worked out from its command line."""

    model: str
    dataset: str
    device: torch.device
    modes: tuple[Mode, ...]
    configs: tuple[RunConfig, ...]  # one per mode
    baseline: RunConfig  # fp32, NCHW, not compiled
    images: tuple[int, int]  # generated (train, test) images
    batch_size: int
    warmup: int
    repeats: int
    baseline_workers: int
    max_seconds: float  # the bound of each measurement
    skipped: tuple[str, ...]  # default precisions left out: emulated on this CPU


def default_precisions(device: torch.device) -> tuple[list[str], list[str]]:
    """(measured, skipped) precisions when --precision is not given: fp32 and bf16, but bf16 not on a CPU
    that would emulate it (`wrn.cpuinfo.cpu_has_native_bf16`): on an AVX2 CPU a WRN-16-2 epoch takes
    many minutes in emulated bf16 against seconds in fp32, which measures the emulation, not the suite."""
    if device.type == "cpu" and not cpu_has_native_bf16():
        return ["fp32"], ["bf16"]
    return ["fp32", "bf16"], []


def bench_setup(args: argparse.Namespace) -> Bench:
    """The measurements `args` asks for, with every default filled in for the device."""
    device = pick_bench_device(args.device)
    train_images = args.train_images or (10_240 if device.type == "cuda" else 512)
    images = (train_images, min(TEST_IMAGES, train_images))
    warmup = 1
    precisions, skipped = (args.precision, []) if args.precision else default_precisions(device)
    modes = tuple(Mode(p, args.channels_last, args.compile) for p in dict.fromkeys(precisions))
    configs = tuple(bench_config(args.model, args.dataset, args.batch_size, warmup + args.repeats, m, images)
                    for m in modes)
    baseline = dataclasses.replace(configs[0], precision="fp32", channels_last="off", compile=False)
    if train_images < baseline.batch_size:
        raise UsageError(f"--train-images: {train_images}: expected at least one batch "
                         f"({baseline.batch_size} images)")
    workers = args.baseline_workers
    if workers is None:
        workers = 2 if device.type == "cpu" else min(8, (os.cpu_count() or 2) // 2)
    return Bench(model=args.model, dataset=args.dataset, device=device, modes=modes, configs=configs,
                 baseline=baseline, images=images, batch_size=baseline.batch_size, warmup=warmup,
                 repeats=args.repeats, baseline_workers=workers,
                 max_seconds=args.max_seconds or MAX_SECONDS[device.type], skipped=tuple(skipped))


def _log(message: str) -> None:
    print(f"[train_speed] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements of one invocation, as the JSON object `--json` prints."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    bench = bench_setup(args)
    if args.worker:
        img_s, _ = measure_suite(bench.configs[0], args.data_dir, bench.device, bench.warmup,
                                 time.monotonic() + bench.max_seconds)
        if img_s is None:
            raise BenchmarkError(f"no timed epoch within --max-seconds {bench.max_seconds:g}")
        return {"suite_img_s": img_s, "peak_memory_bytes": peak_memory_bytes(bench.device)}
    with tempfile.TemporaryDirectory(prefix="wrn-bench-data-") as tmp:
        data_dir = Path(tmp)
        write_fake_dataset(bench.dataset, data_dir, *bench.images)
        out = _describe_bench(bench)
        baseline = _measure_baseline_side(bench, data_dir, args)
        out.update(baseline)
        _log("suite: data pipeline alone")
        data_img_s, data_bounded = measure_suite_data(bench.configs[0], data_dir, bench.device, bench.warmup,
                                                      args.data_repeats, time.monotonic() + bench.max_seconds)
        out.update(data_img_s=data_img_s, data_ratio=_ratio(data_img_s, baseline["baseline_data_img_s"]))
        out["bounded"] += ["suite data pipeline"] if data_bounded else []
        out["modes"] = _measure_modes(bench, data_dir, baseline["baseline_img_s"], out["forward_flops"])
        out["bounded"] += [f"suite {describe(m['precision'], m['channels_last'], m['compile'])}"
                           for m in out["modes"] if m["bounded"]]
        timed = [i for i, m in enumerate(out["modes"]) if m["suite_img_s"] is not None]
        if not timed:
            raise BenchmarkError(f"no suite mode finished a timed epoch within --max-seconds {bench.max_seconds:g} "
                                 f"(bounded: {', '.join(out['bounded'])}); give more seconds or fewer "
                                 "--train-images")
        fastest_index = max(timed, key=lambda i: out["modes"][i]["suite_img_s"])
        fastest = out["modes"][fastest_index]
        out.update({k: fastest[k] for k in ("precision", "channels_last", "compile", "suite_img_s", "ratio",
                                             "epoch_50k_s", "achieved_flops", "peak_flops", "mfu",
                                             "device_tflops")})
        out["breakdown"] = None
        if args.breakdown:
            cfg = bench.configs[fastest_index]
            _log(f"profiling {BREAKDOWN_STEPS} steps: "
                 f"{describe(fastest['precision'], fastest['channels_last'], cfg.compile)}")
            out["breakdown"] = profile_training(cfg, data_dir, bench.device, BREAKDOWN_STEPS, baseline["baseline_img_s"])
        out["concurrent"] = None
        if args.concurrent:
            _log(f"{args.concurrent} concurrent suite processes")
            conc = measure_concurrent(bench, bench.modes[fastest_index], args.concurrent, data_dir)
            conc.update(single_img_s=fastest["suite_img_s"], ratio=conc["total_img_s"] / fastest["suite_img_s"])
            out["concurrent"] = conc
    return out


def _describe_bench(bench: Bench) -> dict[str, Any]:
    flops = forward_flops(bench.baseline)
    return {
        "model": bench.model, "dataset_format": bench.dataset, "device": bench.device.type,
        "device_name": runtime_settings(bench.baseline, bench.device).device_name,
        "threads": torch.get_num_threads(), "batch_size": bench.batch_size,
        "train_images": bench.images[0], "warmup_epochs": bench.warmup, "repeats": bench.repeats,
        "params": count_params(build_model(bench.baseline)), "forward_flops": flops,
        "image_size": bench.baseline.image_size,
        "train_flops_per_image": 3 * flops,
        "cpu_capability": cpu_capability(),
        "native_bf16": cpu_has_native_bf16() if bench.device.type == "cpu" else None,
        "skipped_precisions": list(bench.skipped), "max_seconds": bench.max_seconds,
    }


def _measure_baseline_side(bench: Bench, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    if args.no_baseline:
        return {"baseline_img_s": None, "baseline_workers": None, "baseline_data_img_s": None, "bounded": []}
    _log(f"baseline: DataLoader ({bench.baseline_workers} workers) + PIL transforms, fp32 NCHW")
    measured = measure_baseline(bench.baseline, data_dir, bench.device, bench.baseline_workers, bench.warmup,
                                bench.repeats, args.data_repeats, bench.max_seconds)
    bounded = [name for name, hit in (("baseline data pipeline", measured["data_bounded"]),
                                      ("baseline training", measured["bounded"])) if hit]
    return {"baseline_img_s": measured["img_s"], "baseline_workers": bench.baseline_workers,
            "baseline_data_img_s": measured["data_img_s"], "bounded": bounded}


def _measure_modes(bench: Bench, data_dir: Path, baseline_img_s: float | None, flops: int) -> list[dict[str, Any]]:
    """The suite in each mode, against the baseline and a matrix-multiply peak in its precision."""
    peaks: dict[tuple[str, bool], float] = {}
    modes = []
    for cfg in bench.configs:
        settings = runtime_settings(cfg, bench.device)
        _log(f"suite: {describe(settings.precision, settings.channels_last, cfg.compile)}")
        img_s, bounded = measure_suite(cfg, data_dir, bench.device, bench.warmup, time.monotonic() + bench.max_seconds)
        key = (settings.precision, cfg.tf32)
        if key not in peaks:
            peaks[key] = matmul_peak(bench.device, *key)
        achieved = None if img_s is None else 3 * flops * img_s
        modes.append({
            "precision": settings.precision, "compute_mode": compute_mode(cfg, bench.device.type),
            "channels_last": settings.channels_last,
            "compile": cfg.compile, "suite_img_s": img_s, "ratio": _ratio(img_s, baseline_img_s),
            "epoch_50k_s": None if img_s is None else EPOCH_IMAGES / img_s, "achieved_flops": achieved,
            "peak_flops": peaks[key], "mfu": None if achieved is None else achieved / peaks[key],
            "device_tflops": None if achieved is None else achieved / 1e12, "bounded": bounded,
            "emulated": (bench.device.type == "cpu" and settings.precision == "bf16" and not cpu_has_native_bf16()),
        })
    return modes


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not args.worker:
        result["rates_file"] = str(record_measurements(args.results, measurements(result)))
    print(json.dumps(result) if args.json or args.worker else format_report(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
