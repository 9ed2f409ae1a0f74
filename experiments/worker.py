"""Run one stored run to completion: the single entry point every executor calls.

`execute_run` owns the run (lock), resumes from the run's last good checkpoint whenever it starts
(a requeue that bypasses submitit's checkpoint, such as `scontrol requeue` or a node failure, reruns
the original submission, so resuming must not depend on how the process was started), and writes
result.json last and atomically. A distributed run (`world_size` > 1) is `execute_run` in each of its
processes, started with torch's env:// variables: rank 0 owns the run and writes its files, the other
ranks train their share. `python -m experiments.worker RUN_DIR` is what the local executor
spawns; it turns SIGTERM, SIGINT and SIGUSR2 into a checkpoint at the next step boundary.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from pathlib import Path

from experiments import store
from experiments.locking import RunLock, RunLocked
from experiments.provenance import collect
from wrn.cli import ArgumentParser, run_main
from wrn import distributed
from wrn.config import RunConfig
from wrn.distributed import SINGLE, Processes
from wrn.files import remove_temp_files
from wrn.runtime import bind_device, runtime_settings
from wrn.timing import measure_step_time
from wrn.train import TrainingInterrupted, train

EXIT_INTERRUPTED = 3
EXIT_LOCKED = 4


def execute_run(
    run_dir: Path,
    data_dir: Path | None,
    stop: threading.Event | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> str:
    """Train (or resume) the run in `run_dir`; return its final state ("done" or "diverged").

    Raises `TrainingInterrupted` when `stop` is set (a training run's checkpoint written; a timing
    run's `MeasurementInterrupted`, nothing kept), `RunLocked` when another live process owns the run;
    any other error is recorded in failure.json and re-raised. `progress`: as `wrn.train.train`'s (a
    bar on a terminal, else a line every few seconds in the log; False for none)."""
    run_dir = Path(run_dir)
    meta = store.read_meta(run_dir)
    cfg = meta.config
    dev = bind_device(device)
    if cfg.world_size > 1:
        return _execute_distributed(run_dir, meta, cfg, data_dir, stop, dev, progress)
    with RunLock(run_dir / store.LOCK):
        if (result := store.read_result(run_dir)) is not None:
            return result.status
        return _train_and_record(run_dir, meta, cfg, data_dir, stop, dev, progress, SINGLE)


def _execute_distributed(run_dir: Path, meta: store.RunMeta, cfg: RunConfig, data_dir: Path | None,
                         stop: threading.Event | None, dev, progress: bool | None) -> str:
    """`execute_run` in one process of a distributed run: the processes join first; rank 0 takes the
    lock and tells the others whether there is anything to train; each trains its share; rank 0
    records the outcome. A process that fails (a collective that timed out because another rank
    died, included) leaves the group and re-raises."""
    processes = distributed.join(cfg.world_size, dev)
    try:
        if not processes.is_writer:
            if distributed.any_rank(False):  # rank 0 found the run finished or owned elsewhere
                return _skipped(run_dir)
            return train(cfg, run_dir, data_dir, device=dev, should_stop=_should_stop(stop), progress=False).status
        lock = RunLock(run_dir / store.LOCK)
        try:
            lock.acquire()
        except RunLocked:
            distributed.any_rank(True)
            raise
        try:
            if distributed.any_rank((run_dir / store.RESULT).exists()):
                return store.read_result(run_dir).status
            return _train_and_record(run_dir, meta, cfg, data_dir, stop, dev, progress, processes)
        finally:
            lock.release()
    finally:
        distributed.leave()


def _skipped(run_dir: Path) -> str:
    """What a rank other than 0 returns when rank 0 found nothing to train."""
    if (result := store.read_result(run_dir)) is not None:
        return result.status
    raise RunLocked(f"{run_dir.name}: owned by another live process (rank 0 could not take its lock)")


def _should_stop(stop: threading.Event | None):
    return stop.is_set if stop is not None else None


def _train_and_record(run_dir: Path, meta: store.RunMeta, cfg: RunConfig, data_dir: Path | None,
                      stop: threading.Event | None, dev, progress: bool | None, processes: Processes) -> str:
    """Train or time the run as its owner (rank 0) and write its result, or its failure."""
    store.clear_failure(run_dir)
    remove_temp_files(run_dir)
    try:
        store.write_provenance(run_dir, collect(runtime_settings(cfg, dev, processes)))
        if meta.kind == "timing":
            result = measure_step_time(cfg, device=dev, should_stop=_should_stop(stop), progress=progress,
                                       **(meta.timing or {}))
        else:
            result = train(cfg, run_dir, data_dir, device=dev, should_stop=_should_stop(stop), progress=progress)
        store.write_result(run_dir, meta, result)
    except TrainingInterrupted:
        raise
    except BaseException as e:
        _record_failure(run_dir, e)
        raise
    return result.status


def _record_failure(run_dir: Path, error: BaseException) -> None:
    """failure.json for a run that raised; best effort, since a full disk may refuse it too."""
    try:
        store.write_failure(run_dir, store.Failure.of(error, traceback.format_exc()))
    except OSError:
        pass


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="python -m experiments.worker", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        signal.signal(sig, lambda *_: stop.set())
    try:
        state = execute_run(args.run_dir, args.data_dir, stop=stop, device=args.device)
    except TrainingInterrupted as e:
        print(f"{args.run_dir.name}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunLocked as e:
        print(f"{args.run_dir.name}: skipped, {e}", file=sys.stderr)
        return EXIT_LOCKED
    print(f"{args.run_dir.name}: {state}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
