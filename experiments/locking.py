"""One owner per run, also across hosts on a shared filesystem.

The lock is a file created with O_CREAT|O_EXCL (atomic on local filesystems and NFSv3+), holding the
owner's host, pid and SLURM task. The owner refreshes its mtime as a heartbeat. A lock is stale when
its heartbeat is older than `STALE_AFTER_S`, when it names this host and a pid that no longer exists,
or when it was left by an earlier incarnation of this same SLURM task (a requeued job). A stale lock
is removed only under a second O_EXCL guard file and after re-checking it there, so two contenders
can never both break it and both win.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0


class RunLocked(RuntimeError):
    """Another live process owns the run."""


def _slurm_task() -> str | None:
    """This process's SLURM job (array task), if any: SLURM runs one incarnation of a job at a time."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job is None:
        return None
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if task is not None else job


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(),
            "slurm_task": _slurm_task()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_is_live(path: Path) -> bool:
    path = Path(path)
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return False
    try:
        owner = json.loads(text)
    except ValueError:
        return True  # being written by its new owner right now; only age makes it stale
    if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
        return False
    mine = _slurm_task()
    if mine is not None and owner.get("slurm_task") == mine and owner.get("pid") != os.getpid():
        return False  # left by this job's previous incarnation (requeued, maybe onto another node)
    return True


class RunLock:
    """Context manager: acquire the run's lock or raise `RunLocked`; heartbeat while held."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if lock_is_live(self.path):
                    raise RunLocked(f"{self.path.parent} is being trained by {self._describe()}")
                self._break_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_owner(), f)
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()
            return
        raise RunLocked(f"{self.path.parent}: could not take the lock")

    def _break_stale(self) -> None:
        """Remove a stale lock, re-checked under a guard file: without the guard, a contender that
        judged the lock stale could remove the live lock another contender has just taken."""
        guard = self.path.with_name(f".{self.path.name}.breaking")
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > STALE_AFTER_S:
                    guard.unlink()  # a breaker died mid-break
            except FileNotFoundError:
                pass
            time.sleep(0.1)
            return
        try:
            if not lock_is_live(self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)
            guard.unlink(missing_ok=True)

    def _describe(self) -> str:
        try:
            o = json.loads(self.path.read_text())
            return f"pid {o.get('pid')} on {o.get('host')}"
        except (OSError, ValueError):
            return "another process"

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            owner = json.loads(self.path.read_text())
            if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
