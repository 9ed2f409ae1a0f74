"""How the commands over the run store grow with the number of runs it holds.

    python -m benchmarks.store_scale                     # stores of 1,000 and 10,000 runs
    python -m benchmarks.store_scale --sizes 200 2000    # other sizes (the first is the baseline)
    python -m benchmarks.store_scale --json

A researcher who adds seeds (`--until-resolved`, or `--seeds 40` over every spec) ends with thousands
of run folders, and every command that reads the store reads all of them. This fabricates finished
stores of one spec (`--spec`, Table 2 by default: each cell's seeds 0..n-1 until the store holds the
size asked for) through the store's own writers (`experiments.store`: config, provenance, result and
a metrics line per epoch, as a finished run of the paper's recipe has), then times each command as a user runs it, in a fresh interpreter:

* status:  `python -m experiments.status SPEC --seeds S`
* dry run: `python -m experiments.run SPEC --dry-run --seeds S`
* report:  `python -m analysis.report SPEC` (tables, figures and REPORT.md)

and prints, per command, its time at each size and the growth factor against the first size beside
the growth of the store: a command whose factor stays near the store's grows linearly; one near its
square, quadratically. Exit status 1 when a command fails or takes over `--limit-s` (30 s) at the
largest size.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from experiments import store
from experiments.plan import PlannedRun, expand
from experiments.spec import load_spec
from wrn.cli import ArgumentParser, run_main
from wrn.errors import UsageError
from wrn.records import EpochMetrics, RunResult, RuntimeSettings

COMMANDS = ("status", "dry run", "report")


def fabricate(results: Path, spec_name: str, planned: list[PlannedRun], rng: np.random.Generator) -> None:
    """Write each planned run as a finished run folder, through the store's writers; several folders at
    once, since each atomic write waits on the disk (fsync)."""
    errors = rng.normal(0, 0.15, len(planned))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda args: _finished_run(results, spec_name, *args), zip(planned, errors)))


def _finished_run(results: Path, spec_name: str, run: PlannedRun, noise: float) -> None:
    cfg = run.config
    path = store.run_dir(results, run.run_id)
    path.mkdir(parents=True, exist_ok=True)
    meta = store.RunMeta(run.run_id, spec_name, run.label, cfg, "2026-01-01T00:00:00Z", "paper")
    store.write_meta(path, meta)
    runtime = RuntimeSettings(device="cuda", device_name="NVIDIA A100-SXM4-80GB", precision="fp32",
                              channels_last=False, tf32=False, compile=False, torch="2.4.0", threads=8,
                              world_size=1, per_rank_batch=cfg.batch_size, backend="none")
    store.write_provenance(path, store.Provenance(git_commit="0" * 40, git_dirty=False,
                                                  started_at="2026-01-01T00:00:00Z", runtime=runtime))
    error = float(5.5 + noise)
    lines = [{"epoch": e, "lr": cfg.lr_at(e), "train_loss": 1.0 / e, "train_error": 30.0 / e,
              "test_loss": 1.2 / e, "test_error": error + 20.0 / e, "train_time_s": 60.0, "images_per_s": 800.0}
             for e in range(1, cfg.epochs + 1)]
    (path / store.METRICS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    final = EpochMetrics(epoch=cfg.epochs, lr=cfg.lr_at(cfg.epochs), train_loss=0.01, train_error=0.1,
                         test_loss=0.2, test_error=error, test_top5_error=0.5)
    store.write_result(path, meta, RunResult(
        kind="train", status="done", final=final, diverged=None, params=2_700_000, flops=800_000_000,
        epoch_time_s=60.0, train_time_s=60.0 * cfg.epochs, images_per_s=800.0, timing=None, runtime=runtime),
        finished_at="2026-01-02T00:00:00Z")


def build_store(results: Path, spec_name: str, size: int) -> int:
    """A finished store of `size` runs of `spec_name` (the paper profile); returns the seeds per cell."""
    spec = load_spec(spec_name)
    cells = len(expand(spec, "paper", seeds=1))
    seeds = math.ceil(size / cells)
    fabricate(results, spec.name, expand(spec, "paper", seeds=seeds)[:size], np.random.default_rng(size))
    return seeds


def command_lines(spec_name: str, results: Path, seeds: int) -> dict[str, list[str]]:
    common = ["--profile", "paper", "--results", str(results)]
    return {"status": [sys.executable, "-m", "experiments.status", spec_name, *common, f"--seeds={seeds}"],
            "dry run": [sys.executable, "-m", "experiments.run", spec_name, *common, "--dry-run", f"--seeds={seeds}"],
            "report": [sys.executable, "-m", "analysis.report", spec_name, *common]}


def time_command(words: list[str]) -> float:
    """Seconds `words` takes, start to exit; RuntimeError with its output's tail when it fails."""
    start = time.perf_counter()
    done = subprocess.run(words, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(words[1:4])} exited {done.returncode}: {(done.stderr or done.stdout)[-800:]}")
    return took


def measure(spec_name: str, sizes: list[int]) -> dict[str, dict[int, float]]:
    times: dict[str, dict[int, float]] = {name: {} for name in COMMANDS}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="store_scale_") as tmp:
            results = Path(tmp) / "results"
            start = time.perf_counter()
            seeds = build_store(results, spec_name, size)
            print(f"{size} runs ({seeds} seeds per cell) fabricated in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr)
            for name, words in command_lines(spec_name, results, seeds).items():
                times[name][size] = time_command(words)
                print(f"  {name}: {times[name][size]:.1f} s", file=sys.stderr)
    return times


def report_lines(times: dict[str, dict[int, float]], sizes: list[int], limit_s: float) -> list[str]:
    base, top = sizes[0], sizes[-1]
    head = ["command", *(f"{n} runs" for n in sizes), f"growth x{top / base:g} runs", f"under {limit_s:g} s"]
    rows = [[name, *(f"{per[n]:.1f} s" for n in sizes), f"x{per[top] / per[base]:.1f}", "yes" if per[top] < limit_s else "NO"]
            for name, per in times.items()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows]]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.store_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="table_block_type", help="the spec whose runs fill the stores")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000],
                        help="runs per store, smallest first: the first is the baseline of the growth factor")
    parser.add_argument("--limit-s", type=float, default=30.0, help="the most seconds a command may take at the largest size")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if any(n < 1 for n in args.sizes) or args.sizes != sorted(args.sizes):
        raise UsageError(f"--sizes: {args.sizes}: expected positive run counts, smallest first")
    times = measure(args.spec, args.sizes)
    if args.json:
        print(json.dumps({"spec": args.spec, "sizes": args.sizes, "seconds": times}))
    else:
        print("\n".join(report_lines(times, args.sizes, args.limit_s)))
    return 0 if all(per[args.sizes[-1]] < args.limit_s for per in times.values()) else 1


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
