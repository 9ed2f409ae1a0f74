"""The array tasks of a SLURM submission (`experiments.slurm`), as submitit pickles them and runs them on
the cluster's nodes: `SlurmRunJob` trains one run (alone, or as one of the W processes of a distributed
run) and `SlurmPackJob` several runs side by side on one GPU, each in a worker process of its own.

Both are submitit Checkpointables: on USR2 (preemption, or the time limit drawing near) their
`checkpoint()` stops training at the next step boundary, where each run writes its checkpoint, and
submitit requeues the task once; the requeued task resumes from the run store's last good checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import submitit

from experiments import store

POLL_S = 0.2
# How long a process of a distributed run other than rank 0, stopped with the others at a step
# boundary, waits for the requeue that rank 0 asks for right after writing the checkpoint (SLURM then
# kills every process: submitit ignores the SIGTERM, the SIGKILL follows KillWait, 30 s by default).
# Exiting earlier could end the job step before the requeue; a wait this long means rank 0 did not
# requeue (out of requeues, or dead), and the process exits.
REQUEUE_WAIT_S = 180

class SlurmRunJob(submitit.helpers.Checkpointable):
    """One array task that trains (or resumes) the run in `run_dir` through
    `experiments.worker.execute_run`: alone, or as one of the W processes (SLURM tasks) of a distributed
    run.

    Training runs in a worker thread. submitit calls `checkpoint()` from its USR2 handler, at an
    arbitrary point of the main thread, and only in rank 0 (the other ranks' handlers just log); the
    main thread only waits for the worker in short joins, so the handler runs promptly, asks the
    worker to stop at its next step boundary (where it writes the checkpoint), waits for it, and hands
    submitit a fresh job to requeue. In a distributed run the engine's collective agreement stops every
    rank at that same step boundary; the other ranks then wait for the requeue to end them
    (`REQUEUE_WAIT_S`) rather than end the job step first."""

    def __init__(self, data_dir: str | None, threads: int):
        self.data_dir = data_dir
        self.threads = threads
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict:
        return {"data_dir": self.data_dir, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["data_dir"], state["threads"])

    def __call__(self, run_dir: str) -> str:
        import torch  # deferred: the job needs torch and the engine when it runs, not when it is submitted

        from experiments.worker import execute_run  # deferred: as torch
        from wrn.train import TrainingInterrupted  # deferred: as torch

        torch.set_num_threads(self.threads)  # SLURM does not confine CPUs here (no task/cgroup)
        job = submitit.JobEnvironment()
        rank = ""
        if job.num_tasks > 1:
            # torch's env:// variables (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK), from which
            # execute_run joins the process group. CUDA_VISIBLE_DEVICES stays SLURM's: every process of
            # the node sees the job's GPUs of the node (--gpus-per-node), which NCCL needs to use NVLink
            # (https://github.com/NVIDIA/nccl/issues/1066), and the engine takes cuda:LOCAL_RANK among
            # them. submitit's set_cuda_visible_devices would write the local rank as a physical index
            # instead: another job's GPU, on a node shared without device cgroups.
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
            rank = f" as rank {job.global_rank} of {job.num_tasks} on {job.hostname}"
        code = Path(__file__).resolve().parent.parent
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
        print(f"training {run_dir} with the code in {code}{rank}" + ("" if gpus is None else f", GPUs {gpus}"),
              file=sys.stderr, flush=True)
        self._stop = threading.Event()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["state"] = execute_run(Path(run_dir), None if self.data_dir is None else Path(self.data_dir),
                                               stop=self._stop, progress=False)
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread below
                outcome["error"] = e

        self._thread = threading.Thread(target=work, name="train")
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(timeout=POLL_S)
        if isinstance(outcome.get("error"), TrainingInterrupted) and job.global_rank != 0:
            print(f"rank {job.global_rank}: stopped with rank 0 at a step boundary; waiting up to "
                  f"{REQUEUE_WAIT_S} s for its requeue", file=sys.stderr, flush=True)
            time.sleep(REQUEUE_WAIT_S)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["state"]

    def checkpoint(self, run_dir: str) -> submitit.helpers.DelayedSubmission:
        if self._thread is not None and self._thread.is_alive():
            print(f"checkpointing {Path(run_dir).name} at the next step boundary", file=sys.stderr, flush=True)
            self._stop.set()
            self._thread.join()
        return submitit.helpers.DelayedSubmission(SlurmRunJob(self.data_dir, self.threads), run_dir)


def worker_log(log_dir: Path, run_dir: str | Path) -> Path:
    """The log of a packed run's worker process: in its job's folder, named by the run."""
    return Path(log_dir) / f"{Path(run_dir).name}.log"


class SlurmPackJob(submitit.helpers.Checkpointable):
    """One array task that trains several runs of world_size 1 side by side on its one GPU, each in a
    `python -m experiments.worker` process of its own with `threads` CPU threads: each run has its own
    checkpoint, resume and log (`worker_log`), and one that fails leaves the others training.

    On USR2 `checkpoint()` passes the signal on to every worker, which checkpoints at its next step
    boundary and exits (SLURM may also have signalled the workers themselves: a second USR2 changes
    nothing), waits for them, and requeues the task once, for its runs neither finished nor failed. A
    run finished before a requeue that bypasses submitit (which reruns the original task) is not
    trained again: its worker returns the stored result."""

    def __init__(self, data_dir: str | None, threads: int):
        self.data_dir = data_dir
        self.threads = threads
        self._workers: dict[str, subprocess.Popen] = {}

    def __getstate__(self) -> dict:
        return {"data_dir": self.data_dir, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["data_dir"], state["threads"])

    def __call__(self, run_dirs: list[str]) -> dict[str, int]:
        code = Path(__file__).resolve().parent.parent
        log_dir = submitit.JobEnvironment().paths.folder
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads),
                   PYTHONUNBUFFERED="1")
        data = [] if self.data_dir is None else ["--data-dir", self.data_dir]
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
        for run_dir in run_dirs:
            log = worker_log(log_dir, run_dir)
            with open(log, "a") as out:
                worker = subprocess.Popen([sys.executable, "-m", "experiments.worker", run_dir, *data], env=env,
                                          stdout=out, stderr=subprocess.STDOUT, cwd=code)
            self._workers[run_dir] = worker
            print(f"training {run_dir} with the code in {code} in process {worker.pid} on {self.threads} "
                  f"thread(s)" + ("" if gpus is None else f", GPUs {gpus}") + f"; log: {log}", file=sys.stderr,
                  flush=True)
        while any(w.poll() is None for w in self._workers.values()):
            time.sleep(POLL_S)
        for run_dir, worker in self._workers.items():
            print(f"{Path(run_dir).name}: exit code {worker.returncode}, {store.read_run(Path(run_dir)).state}",
                  file=sys.stderr, flush=True)
        return {run_dir: worker.returncode for run_dir, worker in self._workers.items()}

    def checkpoint(self, run_dirs: list[str]) -> submitit.helpers.DelayedSubmission:
        for run_dir, worker in self._workers.items():
            if worker.poll() is None:
                print(f"checkpointing {Path(run_dir).name} at the next step boundary", file=sys.stderr, flush=True)
                worker.send_signal(signal.SIGUSR2)
        for worker in self._workers.values():
            worker.wait()
        unfinished = [d for d in run_dirs if store.read_run(Path(d)).state not in ("done", "diverged", "failed")]
        return submitit.helpers.DelayedSubmission(SlurmPackJob(self.data_dir, self.threads), unfinished)
