"""What the launcher prints while it works: one timestamped line per event, flushed at once so that a
log file can be followed while the runs train."""

from __future__ import annotations

import time
from collections.abc import Callable

Log = Callable[[str], None]


def log_line(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
