"""Progress of a long loop (an epoch's steps, Figure 4's timed steps), shown however the output is read.

On a terminal it is a tqdm bar; written to a log (a worker's train.log, a SLURM job's output) it is a
plain line every `LOG_INTERVAL_S` seconds, which a log keeps readable and greppable where tqdm's
carriage returns would make one endless line. A single step can itself take minutes (one training
step of preact-ResNet-1001 on a laptop CPU), so a ticker thread keeps both moving between steps: the
bar's clock is redrawn every second and a line is written when `LOG_INTERVAL_S` passed without one.
A launcher following a worker's log reads the lines that start with `PREFIX`.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from tqdm import tqdm

PREFIX = "progress: "
LOG_INTERVAL_S = 10.0
REDRAW_S = 1.0


def clock(seconds: float) -> str:
    """`seconds` as [h:]mm:ss, as tqdm shows elapsed time."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Steps done of `total`, shown as a bar (`bar=True`) or as lines on `file` (`bar=False`), with
    the subset of tqdm's interface the engine calls: `update`, `reset`, `set_description_str`,
    `set_postfix_str`, `close`."""

    def __init__(self, total: int, desc: str, bar: bool, file: TextIO | None = None, unit: str = "step",
                 log_interval_s: float = LOG_INTERVAL_S):
        self.total, self.desc, self.unit, self.postfix = total, desc, unit, ""
        self.n = 0
        self.file = file or sys.stderr
        self.log_interval_s = log_interval_s
        self.started = self.step_started = self.written = time.monotonic()
        self.lock = threading.Lock()
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                        file=self.file) if bar else None
        self.closed = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self.ticker.start()

    def update(self, n: int = 1) -> None:
        with self.lock:
            self.n += n
            self.step_started = time.monotonic()
            if self.bar is not None:
                self.bar.update(n)

    def reset(self, total: int | None = None) -> None:
        with self.lock:
            self.total = total if total is not None else self.total
            self.n = 0
            self.started = self.step_started = self.written = time.monotonic()
            if self.bar is not None:
                self.bar.reset(total)

    def set_description_str(self, desc: str, refresh: bool = True) -> None:
        with self.lock:
            self.desc = desc
            if self.bar is not None:
                self.bar.set_description_str(desc, refresh=refresh)

    def set_postfix_str(self, postfix: str, refresh: bool = True) -> None:
        with self.lock:
            self.postfix = postfix
            if self.bar is not None:
                self.bar.set_postfix_str(postfix, refresh=refresh)

    def close(self) -> None:
        self.closed.set()
        self.ticker.join()
        if self.bar is not None:
            self.bar.close()

    def line(self) -> str:
        """Where the loop stands, as one line: the steps done, the time taken, and how long the step
        under way has been running when it is a long one."""
        now = time.monotonic()
        text = f"{PREFIX}{self.desc}: {self.n} of {self.total} {self.unit}s done, {clock(now - self.started)} elapsed"
        if self.n < self.total and now - self.step_started >= self.log_interval_s:
            text += f"; {self.unit} {self.n + 1} running for {clock(now - self.step_started)}"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def _tick(self) -> None:
        while not self.closed.wait(REDRAW_S if self.bar is not None else min(REDRAW_S, self.log_interval_s)):
            with self.lock:
                if self.bar is not None:
                    self.bar.refresh()
                elif time.monotonic() - self.written >= self.log_interval_s:
                    print(self.line(), file=self.file, flush=True)
                    self.written = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def progress_meter(enabled: bool | None, total: int, desc: str, unit: str = "step") -> Progress | None:
    """The meter of a loop: None when `enabled` is False; a bar when stderr is a terminal or
    `enabled` is True; lines on stderr otherwise (`enabled` None: the caller did not say)."""
    if enabled is False:
        return None
    return Progress(total, desc, bar=bool(enabled) or sys.stderr.isatty(), unit=unit)
