"""Checkpoints that are either whole and verified, or ignored.

A checkpoint file is a magic header, the sha256 of the payload, then the `torch.save` payload. It is
written to a temp file, fsynced and renamed over the previous one, which is first kept as
``checkpoint.prev.pt``; so a kill at any instant leaves at least one complete, verifiable checkpoint.
Loading verifies the checksum and falls back to the previous checkpoint with a warning, because a
truncated or bit-flipped file must never be resumed from as if it were good.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

MAGIC = b"WRNCKPT1"
CURRENT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"


class CorruptCheckpoint(ValueError):
    pass


def save(state: dict[str, Any], run_dir: Path) -> Path:
    """Atomically replace `run_dir`/checkpoint.pt with `state`, keeping the old one as .prev."""
    run_dir = Path(run_dir)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".checkpoint.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(hashlib.sha256(payload).digest())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        current = run_dir / CURRENT
        if current.exists():
            os.replace(current, run_dir / PREVIOUS)
        os.replace(tmp, current)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return run_dir / CURRENT


def _read(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    if len(data) < len(MAGIC) + 32 or not data.startswith(MAGIC):
        raise CorruptCheckpoint(f"{path}: not a checkpoint (bad header or truncated)")
    digest, payload = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpoint(f"{path}: checksum mismatch (truncated or corrupted)")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


def load_latest(run_dir: Path) -> dict[str, Any] | None:
    """The newest verifiable checkpoint of `run_dir`, or None if there is none.

    A damaged current checkpoint is reported with a warning and the previous one is used instead."""
    run_dir = Path(run_dir)
    for name in (CURRENT, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            return _read(path)
        except (CorruptCheckpoint, OSError, RuntimeError, EOFError) as e:
            warnings.warn(f"ignoring damaged checkpoint: {e}; falling back to an older one", stacklevel=2)
    return None
