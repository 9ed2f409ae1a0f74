"""Run one stored run to completion: the single entry point every executor calls.

`execute_run` owns the run (lock), resumes from the run's last good checkpoint whenever it starts
(a requeue that bypasses submitit's checkpoint, such as `scontrol requeue` or a node failure, reruns
the original submission, so resuming must not depend on how the process was started), and writes
result.json last and atomically. `python -m experiments.worker RUN_DIR` is what the local executor
spawns; it turns SIGTERM, SIGINT and SIGUSR2 into a checkpoint at the next step boundary.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from experiments import store
from experiments.locking import RunLock, RunLocked
from experiments.provenance import collect
from wrn.config import RunConfig
from wrn.train import TrainingInterrupted, pick_device, runtime_settings

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

    Raises `TrainingInterrupted` when `stop` is set (checkpoint written), `RunLocked` when another live
    process owns the run; any other error is recorded in failure.json and re-raised."""
    from wrn.timing import measure_step_time
    from wrn.train import train

    run_dir = Path(run_dir)
    meta = store.read_json(run_dir / store.CONFIG)
    cfg = RunConfig.from_dict(meta["config"])
    with RunLock(run_dir / store.LOCK):
        if (run_dir / store.RESULT).exists():
            return store.read_json(run_dir / store.RESULT)["status"]
        (run_dir / store.FAILURE).unlink(missing_ok=True)
        _remove_torn_writes(run_dir)
        try:
            dev = pick_device(device)
            store.atomic_write_json(run_dir / store.PROVENANCE, collect(runtime_settings(cfg, dev)))
            if meta.get("kind", "train") == "timing":
                result = measure_step_time(cfg, device=dev, **meta.get("timing", {}))
            else:
                result = train(cfg, run_dir, data_dir, device=dev,
                               should_stop=stop.is_set if stop is not None else None, progress=progress)
            result = {"run_id": meta["run_id"], "spec": meta["spec"], "label": meta["label"], **result,
                      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            store.atomic_write_json(run_dir / store.RESULT, result)
        except TrainingInterrupted:
            raise
        except BaseException as e:
            _record_failure(run_dir, e)
            raise
        return result["status"]


def _remove_torn_writes(run_dir: Path) -> None:
    """Temp files of writes a kill interrupted; never read, but they would pile up."""
    for pattern in (".checkpoint.*.tmp", ".*.json.*.tmp", f".{store.METRICS}.tmp"):
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)


def _record_failure(run_dir: Path, error: BaseException) -> None:
    """failure.json for a run that raised; best effort, since a full disk may refuse it too."""
    try:
        store.atomic_write_json(run_dir / store.FAILURE, {
            "error_type": type(error).__name__,
            "message": str(error).splitlines()[0] if str(error) else "",
            "traceback_tail": traceback.format_exc()[-4000:],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.worker", description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    sys.exit(main())
