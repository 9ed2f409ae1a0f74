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
import warnings
from pathlib import Path
from typing import Any

import torch

from wrn.files import atomic_write
from wrn.records import CHECKPOINT_FILE as CURRENT
from wrn.records import PREVIOUS_CHECKPOINT_FILE as PREVIOUS

MAGIC = b"WRNCKPT1"


class CorruptCheckpoint(ValueError):
    """A checkpoint file whose header or checksum does not verify."""


def save(state: dict[str, Any], run_dir: Path) -> Path:
    """Atomically replace `run_dir`/checkpoint.pt with `state`, keeping the old one as .prev."""
    run_dir = Path(run_dir)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()

    def write(handle) -> None:
        handle.write(MAGIC)
        handle.write(hashlib.sha256(payload).digest())
        handle.write(payload)

    return atomic_write(run_dir / CURRENT, write, binary=True, keep_previous=run_dir / PREVIOUS)


def read(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, verified; `CorruptCheckpoint` when it is truncated or damaged."""
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
            return read(path)
        except (CorruptCheckpoint, OSError, RuntimeError, EOFError) as e:
            warnings.warn(f"ignoring damaged checkpoint: {e}; falling back to an older one", stacklevel=2)
    return None
