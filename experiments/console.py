"""What the launcher prints while it works: one timestamped line per event, flushed at once so that a
log file can be followed while the runs train; every line about a run names it the same way (network,
dataset, seed, run id), and every count of runs accounts for all of the launch's runs."""

from __future__ import annotations

import time
from collections.abc import Callable

from experiments import store

Log = Callable[[str], None]

# What became of each run a launch was given. "skipped": another launcher held it when this one stopped.
OUTCOMES = ("done", "diverged", "failed", "interrupted", "skipped", "not started")


def log_line(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_name(rec: store.RunRecord) -> str:
    """A run as every progress line names it: two runs of one network differ by dataset or seed."""
    cfg = rec.config
    return f"{rec.label} {cfg.dataset if cfg else None} seed {cfg.seed if cfg else None} [{rec.run_id}]"


def tally(counts: dict[str, int], running: int = 0, to_do: int = 0) -> str:
    """The launch's runs by where they stand, e.g. "2 done, 1 running, 3 to do"; nothing left out."""
    parts = [f"{n} {outcome}" for outcome, n in counts.items() if n]
    parts += [f"{running} running"] if running else []
    parts += [f"{to_do} to do"] if to_do else []
    return ", ".join(parts) or "nothing"


def summary(counts: dict[str, int], already: dict[str, int]) -> str:
    """The launch's last line: what became of its runs, and the planned runs that were already finished
    before it (`already`: state -> number, "done" and "diverged")."""
    before = ", ".join(f"{n} already {state}" for state, n in already.items() if n)
    if not any(counts.values()):
        return "summary: nothing to run" + (f", {before}" if before else "")
    return f"summary: {tally(counts)}" + (f"; {before}" if before else "")
