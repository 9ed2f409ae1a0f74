"""Deterministic fault injection for the reliability tests, without touching production code.

`run_worker(faults, argv)` patches a few calls in this process, then runs `experiments.worker.main`
exactly as `python -m experiments.worker` would; the faults fire at the Nth matching call:

    step:N:kill             SIGKILL before the Nth optimizer step (mid-epoch)
    step:N:SIGTERM          send the process SIGTERM (or SIGINT, SIGUSR2) during the Nth step
    step:N:nan              after the Nth step, fill the first parameter with NaN (a diverging run)
    replace:NAME:N:kill     SIGKILL before the Nth os.replace whose destination is named NAME
    fsync:PART:N:kill       SIGKILL at the Nth fsync of a file whose name contains PART (the data is
                            written, the rename has not happened)
    fsync:PART:N:truncate   as above, but first cut the file to half its size (a torn write)
    fsync:PART:N:enospc     raise OSError(ENOSPC) there instead: the disk is full
    append:NAME:N:kill      SIGKILL before the Nth append-open of NAME by wrn.train (metrics.jsonl)
    append:NAME:N:torn      the Nth append writes half its line, then SIGKILL

`--count FILE` appends one byte per optimizer step (how many steps a launch really trained) and
`--slow S` sleeps S seconds per step, so a test can signal a live process mid-epoch.

Command line (a real process, as the local executor would start it):

    python tests/reliability/faultinject.py [--fault SPEC ...] [--count F] [--slow S] -- RUN_DIR ...

The reliability tests mostly start it from a forkserver (`multiprocessing`), which has imported torch
once, so each killed or relaunched worker is a real process that costs a fork, not a torch import.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script: make the suite importable
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

import experiments.worker  # noqa: E402,F401  (preloaded by the forkserver)
import wrn.data.tensor_pipeline  # noqa: E402,F401
import wrn.models  # noqa: E402,F401
import wrn.train  # noqa: E402

ACTIONS = ("kill", "truncate", "torn", "nan", "enospc", "SIGTERM", "SIGINT", "SIGUSR2")


@dataclass
class Fault:
    point: str  # step | replace | fsync | append
    match: str  # file name (replace, append) or part of it (fsync); "" for step
    n: int  # fires at the nth matching call (1-based)
    action: str
    seen: int = 0

    @classmethod
    def parse(cls, text: str) -> Fault:
        parts = text.split(":")
        if parts[0] == "step" and len(parts) == 3:
            return cls("step", "", int(parts[1]), parts[2])
        if parts[0] in ("replace", "fsync", "append") and len(parts) == 4:
            return cls(parts[0], parts[1], int(parts[2]), parts[3])
        raise ValueError(f"bad fault spec {text!r}")

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}: allowed {', '.join(ACTIONS)}")

    def hit(self) -> bool:
        self.seen += 1
        return self.seen == self.n


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached


def _fd_name(fd: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return ""


def install(faults: list[Fault], count_file: str | None = None, slow: float = 0.0) -> None:
    """Patch the optimizer step, os.replace, os.fsync and wrn.train's open for `faults`."""
    by_point = {p: [f for f in faults if f.point == p] for p in ("step", "replace", "fsync", "append")}

    real_step = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        nan_after = False
        for f in by_point["step"]:
            if f.hit():
                if f.action == "kill":
                    _die()
                elif f.action == "nan":
                    nan_after = True
                else:
                    os.kill(os.getpid(), getattr(signal, f.action))
        out = real_step(self, *args, **kwargs)
        if nan_after:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        if count_file is not None:
            with open(count_file, "a") as fh:
                fh.write("x")
        if slow:
            time.sleep(slow)
        return out

    torch.optim.SGD.step = step

    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        for f in by_point["replace"]:
            if os.path.basename(os.fspath(dst)) == f.match and f.hit():
                _die()
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace

    real_fsync = os.fsync

    def fsync(fd):
        name = _fd_name(fd if isinstance(fd, int) else fd.fileno())
        for f in by_point["fsync"]:
            if f.match in name and f.hit():
                if f.action == "enospc":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if f.action == "truncate":
                    size = os.fstat(fd).st_size
                    os.ftruncate(fd, size // 2)
                _die()
        return real_fsync(fd)

    os.fsync = fsync

    class TornFile:
        def __init__(self, fh):
            self._fh = fh

        def write(self, text):
            self._fh.write(text[: len(text) // 2])
            self._fh.flush()
            _die()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def open_(path, mode="r", *args, **kwargs):
        if "a" in mode:
            for f in by_point["append"]:
                if os.path.basename(os.fspath(path)) == f.match and f.hit():
                    if f.action == "kill":
                        _die()
                    return TornFile(open(path, mode, *args, **kwargs))
        return open(path, mode, *args, **kwargs)

    wrn.train.open = open_  # a module global shadows the builtin for wrn.train only


def run_worker(faults: list[str] | tuple[str, ...], argv: list[str], count_file: str | None = None,
               slow: float = 0.0, log: str | None = None) -> int:
    """Install `faults`, then run the worker's command line in this process; its exit code."""
    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    torch.set_num_threads(1)  # every launch alike, so that results can be compared bit for bit
    install([Fault.parse(f) for f in faults], count_file, slow)
    return experiments.worker.main(list(argv))


def child(faults, argv, count_file=None, slow=0.0, log=None) -> None:
    """Forkserver target: the worker's exit code becomes the process's."""
    code = run_worker(faults, argv, count_file, slow, log)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="faultinject")
    parser.add_argument("--fault", action="append", default=[])
    parser.add_argument("--count", default=None)
    parser.add_argument("--slow", type=float, default=0.0)
    args = parser.parse_args(argv[:split])
    return run_worker(args.fault, argv[split + 1:], args.count, args.slow)


if __name__ == "__main__":
    sys.exit(main())
