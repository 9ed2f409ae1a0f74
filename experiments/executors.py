"""Where runs execute on this machine: `local` (subprocesses under a concurrency cap) and `debug`
(in-process, so a breakpoint or post-mortem debugger works).

The local executor exists because submitit's LocalExecutor starts every job at once and shows every
job GPU 0 (peers.md B.2). Here each run is a `python -m experiments.worker` subprocess, at most
`slots` at a time, each pinned to one GPU through CUDA_VISIBLE_DEVICES; with `runs_per_gpu > 1`
several small runs share a GPU (the ablation networks cannot fill a large GPU alone). On CPU the
cores are split between the concurrent runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from experiments import store
from experiments.worker import EXIT_INTERRUPTED, EXIT_LOCKED, execute_run

Log = Callable[[str], None]


@dataclass
class Slot:
    gpu: int | None
    threads: int


def plan_slots(max_parallel: int | None, runs_per_gpu: int = 1) -> list[Slot]:
    """One slot per concurrent run: GPUs x runs_per_gpu on a GPU machine, else one run on the CPU
    (more if asked, each with its share of the cores)."""
    import torch

    n_gpus = torch.cuda.device_count()
    cores = os.cpu_count() or 1
    if n_gpus:
        slots = [Slot(gpu=g, threads=max(1, cores // (n_gpus * runs_per_gpu)))
                 for _ in range(runs_per_gpu) for g in range(n_gpus)]
        return slots[: max_parallel] if max_parallel else slots
    n = max_parallel or 1
    return [Slot(gpu=None, threads=max(1, cores // n)) for _ in range(n)]


def _describe(path: Path) -> str:
    rec = store.read_run(path)
    cfg = rec.config or {}
    return f"{rec.label} seed {cfg.get('seed')} [{rec.run_id}]"


def run_local(run_dirs: list[Path], data_dir: Path | None, slots: list[Slot], log: Log) -> dict[str, int]:
    """Run every run of `run_dirs` in subprocesses, `len(slots)` at a time; return outcome counts.

    Ctrl-C (or SIGTERM) is passed on to the running children, which checkpoint at their next step
    and exit; the runs resume on the next launch."""
    pending = list(run_dirs)
    running: dict[int, tuple[subprocess.Popen, Path, Slot, int]] = {}
    free = list(slots)
    counts = {"done": 0, "diverged": 0, "failed": 0, "interrupted": 0, "skipped": 0}
    total = len(pending)
    stopping = threading.Event()

    def forward(signum, _frame):
        stopping.set()
        for proc, *_ in running.values():
            proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or running:
            while pending and free and not stopping.is_set():
                path, slot = pending.pop(0), free.pop(0)
                env = dict(os.environ, OMP_NUM_THREADS=str(slot.threads), PYTHONUNBUFFERED="1")
                if slot.gpu is not None:
                    env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
                cmd = [sys.executable, "-m", "experiments.worker", str(path)]
                if data_dir is not None:
                    cmd += ["--data-dir", str(data_dir)]
                log_file = open(path / "train.log", "a")
                proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                        cwd=Path(__file__).resolve().parent.parent)
                log_file.close()
                running[proc.pid] = (proc, path, slot, 0)
                where = f"GPU {slot.gpu}" if slot.gpu is not None else f"CPU x{slot.threads}"
                log(f"start  {_describe(path)} on {where}")
            if pending and stopping.is_set():
                pending.clear()
            time.sleep(0.5)
            for pid, (proc, path, slot, epochs) in list(running.items()):
                now = len(store.read_metrics(path / store.METRICS))
                if now != epochs:
                    row = store.read_metrics(path / store.METRICS)[-1]
                    log(f"epoch  {_describe(path)}: epoch {row['epoch']} "
                        f"test error {row['test_error']:.2f}% ({row['images_per_s']:.0f} img/s)")
                    running[pid] = (proc, path, slot, now)
                code = proc.poll()
                if code is None:
                    continue
                del running[pid]
                free.append(slot)
                outcome = _outcome(path, code)
                counts[outcome] += 1
                tail = ""
                if outcome == "failed":
                    rec = store.read_run(path)
                    tail = f": {rec.reason or 'exit code ' + str(code)} (log: {path / 'train.log'})"
                log(f"{outcome:<6} {_describe(path)}{tail}")
                todo = len(pending)
                log(f"        {sum(counts.values())}/{total} finished, {len(running)} running, {todo} to do")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return counts


def _outcome(path: Path, code: int) -> str:
    if code == EXIT_INTERRUPTED:
        return "interrupted"
    if code == EXIT_LOCKED:
        return "skipped"
    state = store.read_run(path).state
    if code == 0 and state in ("done", "diverged"):
        return state
    return "failed"


def run_debug(run_dirs: list[Path], data_dir: Path | None, log: Log) -> dict[str, int]:
    """Run every run in this process, one after another: breakpoints work and errors propagate."""
    counts = {"done": 0, "diverged": 0, "failed": 0, "interrupted": 0, "skipped": 0}
    for path in run_dirs:
        log(f"start  {_describe(path)} (in-process)")
        state = execute_run(path, data_dir, progress=None)
        counts[state] += 1
        log(f"{state:<6} {_describe(path)}")
    return counts
