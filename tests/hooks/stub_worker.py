"""Stand-in for `python -m experiments.worker RUN_DIR [--data-dir D]` in the local executor's tests
(`experiments.executors.WORKER`): it imports no torch, so it starts in a blink, and it does what
WRN_TEST_STUB says, for every run it is given:

- "finish": writes the run's result.json (a done run) and exits 0;
- "stop": takes SIGTERM as the worker does, appends the run's next epoch to metrics.jsonl and a
  progress line to its log, then waits for SIGTERM and exits as a stopped worker (code 3);
- "deaf": sleeps with SIGTERM's default action, as a worker still importing torch: SIGTERM kills it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from wrn.progress import PREFIX
from wrn.records import EpochMetrics, RunResult, RuntimeSettings

EXIT_INTERRUPTED = 3  # experiments.worker.EXIT_INTERRUPTED (importing it would import torch)
PATIENCE_S = 60  # no stub outlives its test for long, whatever happens to the launcher
RUNTIME = RuntimeSettings(device="cpu", device_name="cpu", precision="fp32", channels_last=True, tf32=False,
                          compile=False, torch="2", threads=1)


def finish(run_dir: Path) -> int:
    final = EpochMetrics(epoch=2, lr=0.1, train_loss=0.1, train_error=1.0, test_loss=0.2, test_error=5.0,
                         test_top5_error=0.0)
    result = RunResult(kind="train", status="done", final=final, diverged=None, params=1, flops=1,
                       epoch_time_s=0.0, train_time_s=0.0, images_per_s=None, timing=None, runtime=RUNTIME)
    (run_dir / "result.json").write_text(json.dumps(result.to_dict()))
    return 0


def wait(seconds: float, done=lambda: False) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def stop(run_dir: Path) -> int:
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    metrics = run_dir / "metrics.jsonl"
    epoch = len(metrics.read_text().splitlines()) + 1 if metrics.exists() else 1
    with open(metrics, "a") as f:
        f.write(json.dumps({"epoch": epoch, "test_error": 50.0, "images_per_s": 100.0}) + "\n")
    print(f"{PREFIX}epoch {epoch + 1}: 1 of 8 steps done, 00:10 elapsed", flush=True)
    wait(PATIENCE_S, lambda: bool(stopped))
    return EXIT_INTERRUPTED if stopped else 1


def main() -> int:
    run_dir = Path(sys.argv[1])
    mode = os.environ["WRN_TEST_STUB"]
    if mode == "deaf":
        wait(PATIENCE_S)
        return 1
    return {"finish": finish, "stop": stop}[mode](run_dir)


if __name__ == "__main__":
    sys.exit(main())
