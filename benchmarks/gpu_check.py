"""The check a first GPU machine runs: does the suite compute on this device what it computes on a CPU,
and how fast?

    python -m benchmarks.gpu_check                        # a table; exit 1 if a required check fails
    python -m benchmarks.gpu_check --json --out check.json
    python -m benchmarks.gpu_check --device cpu --quick   # the same checks at tiny sizes (CI runs it)

First the checks (`benchmarks/device_checks.py`, each with its tolerance): the paper profile's numerics
are full fp32; its training steps equal the CPU's step by step; a resumed run equals an uninterrupted
one; fused SGD equals foreach SGD; an epoch's steps never make the host wait (CUDA); the data pipeline
on the device gives the CPU's batches; nvJPEG decodes as PIL does; the fast profile and torch.compile
train and agree with fp32; two processes with sync_bn train what one does (NCCL with 2 GPUs; gloo on a
CPU). Then, in the time left, the speed (`benchmarks/device_speed.py`): WRN-28-10's seconds per CIFAR
epoch in the paper and the fast profile, WRN-40-2 alone and packed, ImageNet's input paths.

Every device has its list of required checks (`REQUIRED`). The command exits 1 when one of them
failed or is missing (it raised, or the deadline came first), 0 otherwise; a check that cannot run
here says why (a CUDA-only check on a CPU, NCCL with one GPU) and is not missing. The JSON holds the
device, driver, torch, CUDA, cuDNN and NCCL versions, `checks` ([{name, passed, detail, seconds}],
passed null when skipped) and `measurements`. On one H100 the whole check is meant to finish within
4.5 minutes (`--budget-s`, default 270 s on CUDA), so that a 15-minute lease runs it twice. The
training rates measured at full size on a GPU are kept in the rates file of `--results`
(`experiments.rates`), where every later dry run estimating for this GPU finds them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import check_context, device_checks, device_speed, engine_checks
from experiments.rates import DEFAULT_RESULTS, Measurement, record_measurements
from wrn.cli import ArgumentParser, run_main
from wrn.cpuinfo import cpu_name
from wrn.errors import UsageError
from wrn.files import atomic_write_json
from wrn.records import timestamp
from wrn.runtime import bind_device, cpu_capability, pick_device

EXIT_FAILED = 1
ALL_CHECKS = tuple(device_checks.CHECKS)
# A CPU has no host-device synchronisation to check; everything else runs on it.
REQUIRED = {"cuda": ALL_CHECKS, "cpu": tuple(c for c in ALL_CHECKS if c != "no_host_sync_per_step")}
BUDGET_S = {"cuda": 270.0, "cpu": 600.0, "quick": 170.0}  # seconds


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "gpus": torch.cuda.device_count() if cuda else 0,
        "driver": _driver_version() if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda else None,
        "cpu": cpu_name(), "cpu_capability": cpu_capability(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def verdict(checks: list[dict], device_type: str) -> dict[str, list[str]]:
    """The required checks of `device_type` sorted into passed, failed, skipped (with a reason) and
    missing (never reported)."""
    by_name = {c["name"]: c for c in checks}
    out: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": [], "missing": []}
    for name in REQUIRED[device_type]:
        check = by_name.get(name)
        key = ("missing" if check is None else "skipped" if check["passed"] is None else
               "passed" if check["passed"] else "failed")
        out[key].append(name)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The checks, then the measurements that fit the budget, as the JSON object the command writes."""
    device = _device(args.device)
    started = time.monotonic()
    budget = args.budget_s or BUDGET_S["quick" if args.quick else device.type]
    deadline = started + budget
    report: dict[str, Any] = {"environment": environment(device), "quick": args.quick, "budget_s": budget,
                              "required": list(REQUIRED[device.type]), "checks": [], "measurements": [],
                              "skipped_measurements": []}
    sizes = check_context.QUICK if args.quick else check_context.FULL
    with tempfile.TemporaryDirectory(prefix="wrn-gpu-check-") as tmp:
        ctx = check_context.Context(device, sizes, Path(tmp))
        for name in ALL_CHECKS:
            if time.monotonic() > deadline:
                _log(f"{name}: not run, the {budget:g} s budget is spent")
                continue
            _log(f"checking {name}")
            report["checks"].append(device_checks.run_check(name, ctx))
            _log(f"  {_word(report['checks'][-1]['passed'])}: {report['checks'][-1]['detail']}")
    # On a CPU the GPU sizes would take hours (WRN-28-10 trains about 10 images/s on 2 cores).
    speed_sizes = device_speed.QUICK if args.quick or device.type == "cpu" else device_speed.FULL
    report["measurements"], report["skipped_measurements"] = device_speed.measure_all(
        device, speed_sizes, deadline, _log)
    report["verdict"] = verdict(report["checks"], device.type)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def _device(name: str) -> torch.device:
    try:
        device = pick_device(name)
    except RuntimeError:
        raise UsageError(f"--device: {name!r}: allowed: auto, cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: {name!r}: allowed: auto, cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device: {name!r}: no CUDA device here; allowed: cpu, auto")
    return bind_device(device)


def _word(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "skipped"}[passed]


def format_report(r: dict[str, Any]) -> str:
    env = r["environment"]
    versions = ", ".join(f"{k} {env[k]}" for k in ("driver", "torch", "cuda", "cudnn", "nccl") if env[k] is not None)
    lines = [f"gpu_check on {env['device']} ({env['device_name']}; {versions}){' --quick' if r['quick'] else ''}, "
             f"{r['seconds']} s of a {r['budget_s']:g} s budget", "",
             f"{'check':<34}{'result':<9}{'s':>6}  detail"]
    for c in r["checks"]:
        lines.append(f"{c['name']:<34}{_word(c['passed']):<9}{c['seconds']:>6.1f}  {c['detail']}")
    v = r["verdict"]
    lines.append(f"required: {len(v['passed'])} passed, {len(v['failed'])} failed, {len(v['skipped'])} skipped "
                 f"with a reason, {len(v['missing'])} missing" + (f" ({', '.join(v['missing'])})" if v["missing"] else ""))
    lines += ["", f"{'measurement':<18}{'images/s':>10}{'s/epoch':>9}{'TFLOP/s':>9}{'of peak':>9}{'memory GB':>11}  notes"]
    for m in r["measurements"]:
        lines.append(_measurement_line(m))
    for name in r["skipped_measurements"]:
        lines.append(f"{name:<18}skipped: the budget is spent")
    if r.get("rates_file"):
        lines += ["", f"training rates kept in {r['rates_file']} for the dry runs on this GPU"]
    return "\n".join(lines)


def _measurement_line(m: dict[str, Any]) -> str:
    if "error" in m:
        return f"{m['name']:<18}failed: {m['error']}"
    if m["name"] == "imagenet_input":
        paths = "; ".join(f"{k} {v:,.0f}" if v else f"{k} -" for k, v in m["paths_img_s"].items())
        return f"{m['name']:<18}need {m['need_img_s']:,.0f} images/s per GPU ({m['need_from']}): {paths}"

    def num(key: str, fmt: str) -> str:
        return "-" if m.get(key) is None else format(m[key], fmt)

    notes = f"{m['model']}, {m['precision']}"
    if "processes" in m:
        notes += f", {m['processes']} processes: {m['speedup']:.2f}x one alone ({m['alone_img_s']:,.0f})"
    return (f"{m['name']:<18}{num('img_s', ',.0f'):>10}{num('epoch_s', '.1f'):>9}{num('tflops', '.1f'):>9}"
            f"{num('mfu', '.0%'):>9}{num('peak_memory_gb', '.2f'):>11}  {notes}")


def measurements(report: dict[str, Any]) -> list[Measurement]:
    """The training rates worth keeping for estimates: those of a GPU at the full sizes (the quick sizes
    and a CPU's train a few dozen images, too few to say what a run sustains); a packed measurement
    gives the rate of its network alone."""
    env = report["environment"]
    if report["quick"] or env["device"] != "cuda":
        return []
    when = timestamp()
    out = []
    for m in report["measurements"]:
        tflops = m.get("alone_tflops", m.get("tflops"))
        if "model" in m and tflops:
            out.append(Measurement(env["device_name"], m["compute_mode"], m["model"], 32, m["forward_flops"],
                                   tflops, when, "benchmarks.gpu_check"))
    return out


def _log(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (default: CUDA when there is one), cpu, cuda, cuda:N")
    p.add_argument("--quick", action="store_true", help="tiny sizes: every check and measurement in a few "
                                                         "minutes on a CPU (what CI runs)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds for everything; past them no further check or measurement starts (default "
                        "270 on CUDA, 170 with --quick, 600 on a CPU)")
    p.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON object to this file")
    p.add_argument("--results", type=Path, default=Path(DEFAULT_RESULTS),
                   help="the results folder whose rates.json keeps the training rates measured at full size on "
                        "a GPU, for the dry runs on this device (default: results)")
    p.add_argument("--train-rank", nargs=3, default=None, help=argparse.SUPPRESS)  # a process of a 2-process check
    args = p.parse_args(argv)
    if args.budget_s is not None and not args.budget_s > 0:
        raise UsageError(f"--budget-s: {args.budget_s}: expected a number of seconds > 0")
    return args


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    if args.train_rank:
        return engine_checks.train_rank(*args.train_rank, device=args.device)
    report = run(args)
    kept = measurements(report)
    if kept:
        report["rates_file"] = str(record_measurements(args.results, kept))
    if args.out is not None:
        atomic_write_json(args.out, report)
    print(json.dumps(report) if args.json else format_report(report))
    v = report["verdict"]
    return EXIT_FAILED if v["failed"] or v["missing"] else 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
