"""``wrn-manifest.json``, read and written: the file that lets prepared (non-official) data through the
real torchvision loader instead of around it.

torchvision only accepts its official files (hard-coded md5 sums). A manifest beside the files
records every file's sha256 and the train/test counts; the loader (wrn.data.datasets) then checks the
files against the manifest instead, and the parsed arrays against its counts. This module owns the
file: its name and format, `read_manifest` and `Manifest.verify` for the loader, `Manifest.write`
for the command that vouches for a folder (wrn.data.prepared, ``python -m wrn.manifest``), which
writes a manifest only after the loader accepted the folder through it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wrn.errors import DataError
from wrn.files import atomic_write_text

MANIFEST_NAME = "wrn-manifest.json"
MANIFEST_FORMAT = "wrn-manifest/1"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """``wrn-manifest.json``: {"format": "wrn-manifest/1", "dataset": NAME, "counts": {"train": N,
    "test": M}, "files": {relative/posix/path: sha256, ...}}, plus ``"generated": true`` when
    wrn.data.fake wrote the data (so that generated data cannot pass for real data or a subset of
    it). Paths are relative to the folder holding the manifest."""

    path: Path
    dataset: str
    counts: dict[str, int]
    files: dict[str, str]
    generated: bool = False
    _verified: bool = field(default=False, repr=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def require(self, needed: Iterable[str]) -> None:
        """Every file the loader reads must be covered by the manifest."""
        for name in needed:
            if name not in self.files:
                raise DataError(f"{self.folder / name}: not listed in {self.path}; "
                                f"rewrite it with `python -m wrn.manifest {self.folder.parent} "
                                f"--dataset {self.dataset}`")

    def verify(self) -> None:
        """Hash every listed file once (later calls are free) and compare with the manifest."""
        if self._verified:
            return
        for rel, expected in sorted(self.files.items()):
            path = self.folder / rel
            if not path.is_file():
                raise DataError(f"{path}: listed in {self.path} but missing")
            actual = sha256_file(path)
            if actual != expected:
                raise DataError(f"{path}: sha256 {actual[:16]}... does not match {expected[:16]}... "
                                f"in {self.path} (file changed or corrupt)")
        self._verified = True

    def content(self) -> dict[str, Any]:
        """The JSON object the file holds (files sorted by path)."""
        return {"format": MANIFEST_FORMAT, "dataset": self.dataset, "counts": self.counts,
                "files": dict(sorted(self.files.items())), **({"generated": True} if self.generated else {})}

    def write(self) -> Path:
        """Write the manifest atomically at its `path` (another run may be reading the folder);
        returns the path."""
        return atomic_write_text(self.path, json.dumps(self.content(), indent=1) + "\n")


def read_manifest(folder: Path, dataset: str) -> Manifest | None:
    """The manifest in `folder`, or None when there is none (official route)."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON manifest ({exc})") from None
    ok = (isinstance(raw, dict) and raw.get("format") == MANIFEST_FORMAT
          and isinstance(raw.get("files"), dict) and isinstance(raw.get("counts"), dict)
          and all(isinstance(raw["counts"].get(s), int) and raw["counts"][s] >= 0
                  for s in ("train", "test"))
          and all(isinstance(k, str) and isinstance(v, str) for k, v in raw["files"].items())
          and isinstance(raw.get("generated", False), bool))
    if not ok:
        raise DataError(f"{path}: expected {{\"format\": \"{MANIFEST_FORMAT}\", \"dataset\", "
                        "\"counts\": {\"train\", \"test\"}, \"files\": {path: sha256}} "
                        "(and optionally \"generated\": true)")
    if raw.get("dataset") != dataset:
        raise DataError(f"{path}: manifest is for dataset {raw.get('dataset')!r}, expected {dataset!r}")
    counts = {s: raw["counts"][s] for s in ("train", "test")}
    return Manifest(path=path, dataset=dataset, counts=counts, files=dict(raw["files"]),
                    generated=raw.get("generated", False))
