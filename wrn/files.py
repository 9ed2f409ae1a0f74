"""Atomic file writes: the one way every file of the suite is written.

A reader (another launcher, a status command, a requeued job) must see either the old file or the
whole new one, never a truncated one, even when the writer is killed mid-write or the machine loses
power. So every write goes to a hidden temp file in the same folder (``.<name>.<random>.tmp``), is
flushed and fsynced, renamed over the target with `os.replace` (atomic on POSIX filesystems), and
the folder is fsynced so that the rename itself survives a crash. A kill before the rename leaves
only the temp file, which `remove_temp_files` clears when the folder is next used.

The file gets the permissions any newly created file gets (0666 masked by the umask: 0644 under the
usual 022), not the private 0600 of a temp file, so that a results folder shared by a group on a
cluster stays readable by it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_GLOB = ".*.tmp"


def atomic_write(path: str | Path, write: Callable[[IO], None], *, binary: bool = False,
                 keep_previous: str | Path | None = None) -> Path:
    """Write `path` by calling `write(file)` on a temp file, then renaming it into place.

    `keep_previous`: rename the existing `path` to this name first, so that the last complete
    version survives as well (checkpoints keep ``checkpoint.prev.pt``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel reports it (Linux), since
    setting it to read it back would race with other threads creating files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data), binary=True)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Pretty, key-sorted JSON, so that two equal records are equal files."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def fsync_folder(folder: str | Path) -> None:
    """Make the renames and creations in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temp_files(folder: str | Path) -> None:
    """Delete the temp files of writes that a kill interrupted: never read, but they would pile up."""
    for path in Path(folder).glob(TEMP_GLOB):
        path.unlink(missing_ok=True)
