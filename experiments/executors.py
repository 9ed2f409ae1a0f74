"""Where runs execute on this machine: `local` (subprocesses under a concurrency cap) and `debug`
(in-process, so a breakpoint or post-mortem debugger works).

The local executor is the suite's own rather than submitit's LocalExecutor, which starts every job at
once and shows every job GPU 0 (docs/design.md, "Executors"). Here each run is a `python -m
experiments.worker` subprocess, at most `slots` at a time, each pinned to one GPU through
CUDA_VISIBLE_DEVICES; with `runs_per_gpu > 1` several small runs share a GPU (the ablation networks
cannot fill a large GPU alone). On CPU the cores are split between the concurrent runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments import store
from experiments.console import Log
from experiments.locking import RunLocked, lock_is_live
from experiments.worker import EXIT_INTERRUPTED, EXIT_LOCKED, execute_run

OUTCOMES = ("done", "diverged", "failed", "interrupted", "skipped")
POLL_S = 0.5


@dataclass
class Slot:
    gpu: int | None
    threads: int


def plan_slots(max_parallel: int | None, runs_per_gpu: int = 1) -> list[Slot]:
    """One slot per concurrent run: GPUs x runs_per_gpu on a GPU machine, else one run on the CPU
    (more if asked, each with its share of the cores)."""
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


@dataclass
class _Running:
    process: subprocess.Popen
    path: Path
    slot: Slot
    epochs_reported: int = 0


class _LocalLaunch:
    """The subprocesses of one local launch: started into free slots, followed epoch by epoch."""

    def __init__(self, run_dirs: list[Path], data_dir: Path | None, slots: list[Slot], log: Log):
        self.pending, self.free = list(run_dirs), list(slots)
        self.data_dir, self.log, self.total = data_dir, log, len(run_dirs)
        self.running: list[_Running] = []
        self.waiting: list[Path] = []
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.stopping = threading.Event()

    def forward_stop(self, signum, _frame) -> None:
        """Ctrl-C or SIGTERM: start nothing more, and have every running child checkpoint and exit."""
        self.stopping.set()
        for run in self.running:
            run.process.send_signal(signal.SIGTERM)

    def start_into_free_slots(self) -> None:
        while self.pending and self.free and not self.stopping.is_set():
            path, slot = self.pending.pop(0), self.free.pop(0)
            env = dict(os.environ, OMP_NUM_THREADS=str(slot.threads), PYTHONUNBUFFERED="1")
            if slot.gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
            cmd = [sys.executable, "-m", "experiments.worker", str(path)]
            if self.data_dir is not None:
                cmd += ["--data-dir", str(self.data_dir)]
            with open(path / "train.log", "a") as log_file:
                process = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                           cwd=Path(__file__).resolve().parent.parent)
            self.running.append(_Running(process, path, slot))
            where = f"GPU {slot.gpu}" if slot.gpu is not None else f"CPU x{slot.threads}"
            self.log(f"start  {_describe(path)} on {where}")
        if self.stopping.is_set():
            self.pending.clear()
            self.counts["skipped"] += len(self.waiting)
            self.waiting.clear()

    def requeue_released(self) -> None:
        """A run another launcher was training: once its lock is released, count it if it finished
        there, else queue it here to resume (its owner was stopped or died)."""
        for path in list(self.waiting):
            if lock_is_live(path / store.LOCK):
                continue
            self.waiting.remove(path)
            state = store.read_run(path).state
            if state in ("done", "diverged"):
                self.counts[state] += 1
                self.log(f"{state:<6} {_describe(path)} (trained by another launcher)")
            else:
                self.pending.append(path)

    def follow(self) -> None:
        """Report new epochs of the running runs, and the outcome of each that has ended."""
        for run in list(self.running):
            rows = store.read_metrics(run.path / store.METRICS)
            if rows and len(rows) != run.epochs_reported:
                row = rows[-1]
                self.log(f"epoch  {_describe(run.path)}: epoch {row['epoch']} "
                         f"test error {row['test_error']:.2f}% ({row['images_per_s']:.0f} img/s)")
                run.epochs_reported = len(rows)
            code = run.process.poll()
            if code is not None:
                self._ended(run, code)

    def _ended(self, run: _Running, code: int) -> None:
        self.running.remove(run)
        self.free.append(run.slot)
        outcome = _outcome(run.path, code)
        if outcome == "skipped" and not self.stopping.is_set():
            self.waiting.append(run.path)
            self.log(f"wait   {_describe(run.path)}: being trained by another launcher")
            return
        self.counts[outcome] += 1
        tail = ""
        if outcome == "failed":
            rec = store.read_run(run.path)
            tail = f": {rec.reason or 'exit code ' + str(code)} (log: {run.path / 'train.log'})"
        self.log(f"{outcome:<6} {_describe(run.path)}{tail}")
        self.log(f"        {sum(self.counts.values())}/{self.total} finished, {len(self.running)} running, "
                 f"{len(self.pending)} to do")


def run_local(run_dirs: list[Path], data_dir: Path | None, slots: list[Slot], log: Log) -> dict[str, int]:
    """Run every run of `run_dirs` in subprocesses, `len(slots)` at a time; return outcome counts.

    A run that another launcher is training (its lock is live) is waited for, not skipped, so that
    the report written after this launch counts it; if its owner stops first, it resumes here.

    Ctrl-C (or SIGTERM) is passed on to the running children, which checkpoint at their next step
    and exit; the runs resume on the next launch."""
    launch = _LocalLaunch(run_dirs, data_dir, slots, log)
    previous = {s: signal.signal(s, launch.forward_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while launch.pending or launch.running or launch.waiting:
            launch.start_into_free_slots()
            time.sleep(POLL_S)
            launch.follow()
            launch.requeue_released()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return launch.counts


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
    """Run every run in this process, one after another: breakpoints work and errors propagate. A run
    another launcher is training is waited for, as in `run_local`."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for path in run_dirs:
        log(f"start  {_describe(path)} (in-process)")
        while True:
            try:
                state = execute_run(path, data_dir, progress=None)
                break
            except RunLocked:
                log(f"wait   {_describe(path)}: being trained by another launcher")
                while lock_is_live(path / store.LOCK):
                    time.sleep(POLL_S)
                state = store.read_run(path).state
                if state in ("done", "diverged"):
                    break
        counts[state] += 1
        log(f"{state:<6} {_describe(path)}")
    return counts
