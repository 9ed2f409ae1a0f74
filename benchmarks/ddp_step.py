"""The cost of data parallelism: a training step of N processes against one process, measured in one run.

    python -m benchmarks.ddp_step --model WRN-28-10 --processes 2     # a table
    python -m benchmarks.ddp_step --model WRN-16-2 --json             # one JSON object

Weak scaling at a fixed share per process (`--batch-size` images each, the engine's per-process batch):
first one process trains alone (the baseline, the engine's single-process step), then `--processes`
processes train together (each side in processes of its own, with the same CPU threads per process), each the engine's step under DistributedDataParallel
(`wrn.train.build_trainable` with the run's `wrn.distributed.Processes`), NCCL on GPUs and gloo on CPUs,
one GPU per process. Both on random batches already on the device, so the numbers are the step and its
gradient all-reduce, nothing of the input pipeline (`benchmarks.input_speed` measures that). The result
is images/s of each side and the efficiency, (N-process images/s) / (N x one-process images/s): 1.0
means the all-reduce is hidden behind the backward pass.

With one GPU (or `--processes 1`) the N-process side is still DistributedDataParallel, in one process,
so the per-step price of its hooks and bucketing is measured where no second GPU exists.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from experiments.executors import rank_environments
from wrn import distributed
from wrn.cli import ArgumentParser, run_main
from wrn.config import RunConfig, resolve
from wrn.errors import UsageError
from wrn.names import parse_label
from wrn.runtime import bind_device, pick_device, runtime_settings, synchronize
from wrn.train import build_trainable, training_step

ROOT = Path(__file__).resolve().parents[1]
EXIT_FAILED = 1


def parse_args(argv: list[str] | None):
    p = ArgumentParser(prog="python -m benchmarks.ddp_step", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="WRN-16-2", help="a paper-style network name (default WRN-16-2)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--processes", type=int, default=None,
                   help="processes of the data-parallel side (default: 2 GPUs if there are 2, else 1; 2 on CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="images per process and step (default 128 on "
                                                                  "CUDA, 8 on CPU)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 on CUDA, fp32 on CPU (the fast profile's numerics)")
    p.add_argument("--steps", type=int, default=None, help="timed steps after 3 warm-up steps (default 30 on "
                                                             "CUDA, 5 on CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--side", choices=("single", "ddp"), default=None, help=argparse.SUPPRESS)  # a process of a side
    return p.parse_args(argv)


def bench_config(model: str, processes: int, batch_size: int, precision: str) -> RunConfig:
    """The run whose step is timed: the paper's CIFAR-10 recipe for `model` at `batch_size` per process."""
    return resolve(RunConfig(dataset="cifar10", data_source="synthetic:64:32", preprocessing="meanstd",
                             **parse_label(model), batch_size=batch_size * processes, world_size=processes,
                             precision=precision))


def time_steps(cfg: RunConfig, device: torch.device, processes: distributed.Processes, steps: int,
               force_ddp: bool = False) -> float:
    """Median seconds of one training step of `cfg` in this process, after 3 warm-up steps."""
    settings = runtime_settings(cfg, device, processes)
    model, step_model, optimizer = build_trainable(cfg, device, settings, processes)
    if force_ddp:  # the engine never wraps a single process; here its hooks' cost is the point
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    share = cfg.batch_size // cfg.world_size
    x = torch.randn(share, 3, 32, 32, device=device)
    y = torch.randint(0, cfg.num_classes, (share,), device=device)
    model.train()
    times = []
    for i in range(3 + steps):
        synchronize(device)
        started = time.perf_counter()
        training_step(step_model, optimizer, x, y, settings, device)
        synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def _rank_main(args) -> int:
    """One process of a side (started by `run` with torch's env:// variables): "single", the engine's
    one-process step; "ddp", the step under DistributedDataParallel, of one process or of several."""
    device = bind_device(args.device)
    world = int(os.environ["WORLD_SIZE"])
    cfg = bench_config(args.model, world, args.batch_size, args.precision)
    if args.side == "single":
        seconds, processes = time_steps(cfg, device, distributed.SINGLE, args.steps), distributed.SINGLE
    elif world == 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
        seconds, processes = time_steps(cfg, device, distributed.SINGLE, args.steps, force_ddp=True), distributed.SINGLE
    else:
        processes = distributed.join(world, device)
        seconds = time_steps(cfg, device, processes, args.steps)
    if processes.is_writer:
        print(json.dumps({"step_s": seconds, "backend": "nccl" if device.type == "cuda" else "gloo"}))
    distributed.leave()
    return 0


def _side(args, side: str, n: int, threads: int | None) -> dict:
    """Rank 0's measurement of `side` run as `n` processes."""
    envs = rank_environments(n) if n > 1 else [{**rank_environments(2)[0], "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}]
    argv = [sys.executable, "-m", "benchmarks.ddp_step", "--model", args.model, "--device", args.device,
            "--batch-size", str(args.batch_size), "--precision", args.precision, "--steps", str(args.steps),
            "--side", side]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, **env, **({"OMP_NUM_THREADS": str(threads)} if threads else {})))
             for env in envs]
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"the {side} side failed (exit codes {[p.returncode for p in procs]})")
    return json.loads(outputs[0].strip().splitlines()[-1])


def run(args) -> dict:
    """Both sides, each in processes of their own with the same CPU threads per process."""
    device = pick_device(args.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    n = args.processes or (min(2, gpus) if device.type == "cuda" else 2)
    if device.type == "cuda" and n > gpus:
        raise UsageError(f"--processes {n}: this machine has {gpus} GPU(s), one per process")
    threads = max(1, (os.cpu_count() or 1) // n) if device.type == "cpu" else None
    single, ddp = _side(args, "single", 1, threads), _side(args, "ddp", n, threads)
    single_img_s = args.batch_size / single["step_s"]
    ddp_img_s = n * args.batch_size / ddp["step_s"]
    return {"model": args.model, "device": device.type, "processes": n, "backend": ddp["backend"],
            "batch_per_process": args.batch_size, "precision": args.precision,
            "single_step_ms": 1000 * single["step_s"], "single_img_s": single_img_s,
            "ddp_step_ms": 1000 * ddp["step_s"], "ddp_img_s": ddp_img_s,
            "efficiency": ddp_img_s / (n * single_img_s)}


def format_report(r: dict) -> str:
    return "\n".join([
        f"data-parallel step of {r['model']} on {r['device']}, {r['batch_per_process']} images per process, "
        f"{r['precision']}",
        f"  1 process              {r['single_step_ms']:9.1f} ms/step {r['single_img_s']:10,.0f} img/s",
        f"  {r['processes']} process(es), {r['backend']:<5}  {r['ddp_step_ms']:9.1f} ms/step {r['ddp_img_s']:10,.0f} img/s",
        f"  efficiency {r['efficiency']:.2f} (N-process img/s over N x one process's; 1.00 = all-reduce hidden)",
    ])


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    for flag in ("processes", "batch_size", "steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: expected an integer >= 1")
    device = pick_device(args.device)
    args.batch_size = args.batch_size or (128 if device.type == "cuda" else 8)
    args.steps = args.steps or (30 if device.type == "cuda" else 5)
    args.device = device.type
    if args.side is not None:
        return _rank_main(args)
    result = run(args)
    print(json.dumps(result) if args.json else format_report(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
