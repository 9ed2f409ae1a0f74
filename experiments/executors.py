"""Where runs execute on this machine: `local` (subprocesses under a concurrency cap) and `debug`
(in-process, so a breakpoint or post-mortem debugger works).

The local executor is the suite's own rather than submitit's LocalExecutor, which starts every job at
once and shows every job GPU 0 (docs/design.md, "Executors"). Here each run is a `python -m
experiments.worker` subprocess, at most `slots` at a time, each pinned to one GPU through
CUDA_VISIBLE_DEVICES; with `runs_per_gpu > 1` several small runs share a GPU (the ablation networks
cannot fill a large GPU alone). On CPU the cores are split between the concurrent runs.

Both executors stop the same way on Ctrl-C or SIGTERM: nothing more starts, every run under way
checkpoints at its next step and is counted "interrupted", every run not reached is counted "not
started", and all of them resume or start on the next launch. Each worker is started in a process
group of its own (start_new_session), so that a Ctrl-C at the terminal reaches the launcher alone and
each worker gets the one SIGTERM it turns into a checkpoint; a worker that SIGTERM kills before it
could take it (still importing torch) left nothing behind, and counts as not started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from experiments import store
from experiments.console import OUTCOMES, Log, run_name, tally
from experiments.locking import RunLocked, lock_is_live
from experiments.worker import EXIT_INTERRUPTED, EXIT_LOCKED, execute_run
from wrn import checkpoint
from wrn.progress import PREFIX, clock
from wrn.errors import UserError
from wrn.train import TrainingInterrupted

WORKER = "experiments.worker"  # the module every local run is, as `python -m WORKER RUN_DIR [--data-dir D]`
POLL_S = 0.5
HEARTBEAT_S = 30.0  # a run the console has said nothing of for this long gets a line on where it stands
LOG_TAIL_BYTES = 8192
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    return run_name(store.read_run(path))


def resume_point(path: Path) -> tuple[int, int] | None:
    """(epoch, step) at which the run in `path` goes on, from its last good checkpoint (the one its
    worker will resume from: a damaged newest checkpoint falls back to the previous one there too);
    None for a run that starts from scratch."""
    if not (path / store.CHECKPOINT).exists():
        return None
    with warnings.catch_warnings():  # the worker reports a damaged checkpoint in its own log
        warnings.simplefilter("ignore")
        state = checkpoint.load_latest(path)
    return None if state is None else (state["epoch"], state["step"])


def _starting(path: Path) -> tuple[str, int]:
    """The line that says a run starts or resumes, and how many of its epochs were finished before."""
    point = resume_point(path)
    if point is None:
        return f"start  {_describe(path)}", 0
    epoch, step = point
    return f"resume {_describe(path)} at epoch {epoch}, step {step}", epoch - 1


@dataclass
class _Running:
    """A run under way: its processes (one, or one per rank of a distributed run, rank 0 first) and
    the slots they hold."""

    processes: list[subprocess.Popen]
    path: Path
    slots: list[Slot]
    epochs_reported: int  # epochs finished before this start are never reported as news
    log_offset: int  # the size of train.log at the start: earlier launches' lines are not this one's
    started: float = field(default_factory=time.monotonic)
    last_news: float = field(default_factory=time.monotonic)  # when the console last said something of it


class _LocalLaunch:
    """The subprocesses of one local launch: started into free slots, followed epoch by epoch."""

    def __init__(self, run_dirs: list[Path], data_dir: Path | None, slots: list[Slot], log: Log):
        self.pending, self.free, self.all_slots = list(run_dirs), list(slots), list(slots)
        self.data_dir, self.log = data_dir, log
        self.running: list[_Running] = []
        self.waiting: list[Path] = []
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.stopping = threading.Event()
        self.stop_reported = False

    def forward_stop(self, signum, _frame) -> None:
        """Ctrl-C or SIGTERM: start nothing more, and have every running child checkpoint and exit (the
        ranks of a distributed run agree on the step). (Nothing is printed here: a signal handler may
        interrupt a print.)"""
        self.stopping.set()
        for run in self.running:
            for process in run.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

    def busy(self) -> bool:
        return bool(self.running or (not self.stopping.is_set() and (self.pending or self.waiting)))

    def start_into_free_slots(self) -> None:
        """Start pending runs in order while the next one's processes find free slots."""
        while self.pending and not self.stopping.is_set():
            path = self.pending[0]
            taken = take_slots(self.free, self.all_slots, _world_size(path))
            if taken is None:
                return
            per_process, held = taken
            self.pending.pop(0)
            for slot in held:
                self.free.remove(slot)
            line, epochs_done = _starting(path)
            processes, offset = self._spawn(path, per_process)
            self.running.append(_Running(processes, path, held, epochs_done, offset))
            self.log(f"{line} on {_where(per_process)}")

    def _spawn(self, path: Path, slots: list[Slot]) -> tuple[list[subprocess.Popen], int]:
        """The worker processes of a run, one per slot: rank r logs to train.log (rank 0) or
        train.rank<r>.log. Returns them and rank 0's log offset."""
        cmd = [sys.executable, "-m", WORKER, str(path)]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        ranks = rank_environments(len(slots))
        processes, offset = [], 0
        for rank, (slot, rank_env) in enumerate(zip(slots, ranks)):
            env = dict(os.environ, OMP_NUM_THREADS=str(slot.threads), PYTHONUNBUFFERED="1", **rank_env)
            if slot.gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
            else:
                # OpenMP threads that spin while waiting make a CPU run several times slower when the
                # cores are shared (other runs, other users); sleeping threads cost little when idle.
                env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            with open(path / rank_log_name(rank), "a") as log_file:
                if rank == 0:
                    offset = log_file.tell()
                processes.append(subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                                  cwd=Path(__file__).resolve().parent.parent,
                                                  start_new_session=True))
        return processes, offset

    def report_stop(self) -> None:
        """Once, after a stop signal: what the launch is waiting for before it ends."""
        if self.stopping.is_set() and not self.stop_reported:
            self.stop_reported = True
            self.log(f"stopping: {len(self.running)} running run(s) checkpoint and exit; "
                     f"{len(self.pending)} not started")

    def requeue_released(self) -> None:
        """A run another launcher was training: once its lock is released, count it if it finished
        there, else queue it here to resume (its owner was stopped or died)."""
        for path in list(self.waiting):
            if lock_is_live(path / store.LOCK):
                continue
            self.waiting.remove(path)
            state = _finished_elsewhere(path)
            if state is not None:
                self.counts[state] += 1
                self.log(f"{state:<6} {_describe(path)} (trained by another launcher)")
                self.log_progress()
            else:
                self.pending.append(path)

    def follow(self) -> None:
        """Report the newly finished epochs of the running runs, where a silent one stands, and the
        outcome of each that has ended."""
        for run in list(self.running):
            for row in store.read_metrics(run.path / store.METRICS):
                if row["epoch"] > run.epochs_reported:
                    self.log(f"epoch  {_describe(run.path)}: epoch {row['epoch']} "
                             f"test error {row['test_error']:.2f}% ({row['images_per_s']:.0f} img/s)")
                    run.epochs_reported, run.last_news = row["epoch"], time.monotonic()
            code = _run_exit_code(run)
            if code is not None:
                self._ended(run, code)
            elif time.monotonic() - run.last_news >= HEARTBEAT_S:
                self.log(f"still  {_describe(run.path)}: {_latest_progress(run)}")
                run.last_news = time.monotonic()

    def _ended(self, run: _Running, code: int) -> None:
        self.running.remove(run)
        self.free.extend(run.slots)
        outcome = _outcome(run.path, code, self.stopping.is_set())
        if outcome == "skipped" and not self.stopping.is_set():
            self.waiting.append(run.path)
            self.log(_waiting_line(run.path))
            return
        self.counts[outcome] += 1
        tail = ""
        if outcome == "failed":
            rec = store.read_run(run.path)
            tail = f": {rec.reason or 'exit code ' + str(code)} (log: {run.path / 'train.log'})"
        self.log(f"{outcome:<6} {_describe(run.path)}{tail}")
        self.log_progress()

    def log_progress(self) -> None:
        to_do = len(self.pending) + len(self.waiting)
        counts = dict(self.counts)
        if self.stopping.is_set():
            counts["not started"] += to_do
            to_do = 0
        self.log(f"        {tally(counts, len(self.running), to_do)}")

    def finish(self) -> dict[str, int]:
        """The outcome counts, every run given accounted for (the runs not reached after a stop)."""
        self.counts["not started"] += len(self.pending)
        self.counts["skipped"] += len(self.waiting)
        self.pending.clear()
        self.waiting.clear()
        return self.counts


def take_slots(free: list[Slot], all_slots: list[Slot], world_size: int) -> tuple[list[Slot], list[Slot]] | None:
    """(the slot of each of a run's `world_size` processes, the launch's slots they hold), from `free`;
    None until enough are free.

    On GPUs each process needs a GPU of its own (NCCL allows one rank per GPU), so a distributed run
    waits for `world_size` free slots on distinct GPUs. On the CPU it takes `world_size` free slots,
    or, when the launch has fewer slots in all, every slot, its processes sharing their threads."""
    if all_slots[0].gpu is not None:
        by_gpu = {s.gpu: s for s in reversed(free)}  # the first free slot of each GPU
        if len(by_gpu) < world_size:
            return None
        taken = [by_gpu[gpu] for gpu in sorted(by_gpu)[:world_size]]  # rank r on the r-th free GPU
        return taken, taken
    if len(all_slots) >= world_size:
        return (free[:world_size], free[:world_size]) if len(free) >= world_size else None
    if len(free) < len(all_slots):
        return None
    threads = max(1, sum(s.threads for s in free) // world_size)
    return [Slot(gpu=None, threads=threads) for _ in range(world_size)], list(free)


def _world_size(path: Path) -> int:
    config = store.read_run(path).config
    return 1 if config is None else config.world_size


def check_slots_fit(run_dirs: list[Path], slots: list[Slot]) -> None:
    """Raise `UserError` when a run needs more GPUs than this machine's launch has."""
    gpus = {s.gpu for s in slots if s.gpu is not None}
    for path in run_dirs:
        world_size = _world_size(path)
        if gpus and world_size > len(gpus):
            raise UserError(f"world_size={world_size} (run {path.name}): needs {world_size} GPUs, one per "
                            f"process; this launch has {len(gpus)} (--executor slurm spans nodes)")


def rank_environments(world_size: int) -> list[dict[str, str]]:
    """torch's env:// variables for each process of a run on this machine (none for one process)."""
    if world_size == 1:
        return [{}]
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [{"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(r), "LOCAL_RANK": str(r),
             "WORLD_SIZE": str(world_size), "LOCAL_WORLD_SIZE": str(world_size)} for r in range(world_size)]


def rank_log_name(rank: int) -> str:
    return "train.log" if rank == 0 else f"train.rank{rank}.log"


def _where(slots: list[Slot]) -> str:
    if slots[0].gpu is not None:
        return f"GPU {','.join(str(s.gpu) for s in slots)}"
    if len(slots) == 1:
        return f"CPU x{slots[0].threads}"
    return f"CPU, {len(slots)} processes x{slots[0].threads}"


def _run_exit_code(run: _Running) -> int | None:
    """Rank 0's exit code once every process of the run has ended; None while any runs. A rank that
    fails while others still run ends the rest (SIGKILL: they would only wait for it until their
    collective timeout), so a crashed rank fails the run at once."""
    codes = [p.poll() for p in run.processes]
    if all(c is not None for c in codes):
        return codes[0] if codes[0] != 0 or all(c == 0 for c in codes) else next(c for c in codes if c)
    if any(c not in (None, 0, EXIT_INTERRUPTED) for c in codes):
        for process in run.processes:
            if process.poll() is None:
                process.kill()
    return None


def _latest_progress(run: _Running) -> str:
    """The last progress line the run's worker wrote to its log in this launch (`wrn.progress`)."""
    try:
        with open(run.path / "train.log", "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(run.log_offset, size - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    lines = [line for line in tail.replace("\r", "\n").splitlines() if line.startswith(PREFIX)]
    if lines:
        return lines[-1][len(PREFIX):]
    return (f"no step reported yet, {clock(time.monotonic() - run.started)} since its start "
            f"(log: {run.path / 'train.log'})")


def run_local(run_dirs: list[Path], data_dir: Path | None, slots: list[Slot], log: Log) -> dict[str, int]:
    """Run every run of `run_dirs` in subprocesses, `len(slots)` at a time; return outcome counts.

    A run that another launcher is training (its lock is live) is waited for, not skipped, so that
    the report written after this launch counts it; if its owner stops first, it resumes here.

    Ctrl-C (or SIGTERM) is passed on to the running children, which checkpoint at their next step
    and exit; the runs resume on the next launch."""
    check_slots_fit(run_dirs, slots)
    launch = _LocalLaunch(run_dirs, data_dir, slots, log)
    previous = {s: signal.signal(s, launch.forward_stop) for s in STOP_SIGNALS}
    try:
        while launch.busy():
            launch.start_into_free_slots()
            time.sleep(POLL_S)
            launch.report_stop()
            launch.follow()
            launch.requeue_released()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return launch.finish()


def _waiting_line(path: Path) -> str:
    return f"wait   {_describe(path)}: being trained by another launcher"


def _finished_elsewhere(path: Path) -> str | None:
    """Once another launcher released the run: its final state if it finished there, else None (it
    was stopped or died, and the run resumes here)."""
    state = store.read_run(path).state
    return state if state in ("done", "diverged") else None


def _outcome(path: Path, code: int, stopping: bool) -> str:
    if code == EXIT_INTERRUPTED:
        return "interrupted"
    if code == EXIT_LOCKED:
        return "skipped"
    state = store.read_run(path).state
    if code == 0 and state in ("done", "diverged"):
        return state
    if stopping and code < 0:  # the stop's SIGTERM reached the worker before it could take it as a stop
        return "interrupted" if state == "interrupted" else "not started"
    return "failed"


def run_debug(run_dirs: list[Path], data_dir: Path | None, log: Log) -> dict[str, int]:
    """Run every run in this process, one after another: breakpoints work and errors propagate. A run
    another launcher is training is waited for, as in `run_local`. Ctrl-C (or SIGTERM) stops as the
    local executor does: the run under way checkpoints at its next step, nothing more starts."""
    for path in run_dirs:
        if _world_size(path) > 1:
            raise UserError(f"world_size={_world_size(path)} (run {path.name}): --executor debug trains in this "
                            "one process; use --executor local or slurm for a run of several processes")
    counts = dict.fromkeys(OUTCOMES, 0)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in STOP_SIGNALS}
    try:
        for i, path in enumerate(run_dirs):
            if stop.is_set():
                counts["not started"] += len(run_dirs) - i
                break
            line, _ = _starting(path)
            log(f"{line} (in-process)")
            outcome, detail = _run_in_process(path, data_dir, stop, log)
            counts[outcome] += 1
            log(f"{outcome:<6} {_describe(path)}{detail}")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return counts


def _run_in_process(path: Path, data_dir: Path | None, stop: threading.Event, log: Log) -> tuple[str, str]:
    """One run of the debug executor: its outcome, and what the outcome line adds."""
    while True:
        try:
            return execute_run(path, data_dir, stop=stop, progress=None), ""
        except TrainingInterrupted as e:
            return "interrupted", f": {e}"
        except RunLocked:
            log(_waiting_line(path))
            while lock_is_live(path / store.LOCK) and not stop.is_set():
                time.sleep(POLL_S)
            if stop.is_set():
                return "skipped", " (another launcher holds it)"
            state = _finished_elsewhere(path)
            if state is not None:
                return state, " (trained by another launcher)"
