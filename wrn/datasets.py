"""Raw datasets, loaded once and checked: CIFAR-10/100 and SVHN as uint8 NCHW tensors, ImageNet as
torchvision ImageFolders.

The files are always parsed by torchvision's own code (its CIFAR10/CIFAR100/SVHN classes), so what
we train on is what everyone else who uses torchvision trains on. Integrity takes one of two routes:

* official: the files are torchvision's downloads and pass its hard-coded md5 sums (`download_official`
  fetches a missing set, md5-checked: ``python -m wrn.download`` on a machine with internet, or the
  loader when `download` is allowed);
* manifest: the dataset folder holds ``wrn-manifest.json`` (written by ``python -m wrn.manifest``)
  listing every file's sha256 and the train/test counts. The subclasses below replace only
  torchvision's integrity check by the manifest's, so prepared or generated data still goes through
  the real parser instead of around it.

Either way the parsed arrays are checked for shape, dtype, label range and count, and every failure
is a one-line `DataError` naming the file and what was expected, so a bad folder can never train
silently. `check_data_source` then holds the folder to what a run's ``data_source`` says it trains on
(the real data, a prepared subset, or generated data: a manifest written by wrn.fake_data says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import urllib.error
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
import torchvision
from torchvision.datasets.utils import calculate_md5, check_integrity, download_and_extract_archive, download_url

from wrn.config import DATASET_SIZES, NUM_CLASSES, RunConfig, expected_sizes, parse_data_source
from wrn.errors import DataError

MANIFEST_NAME = "wrn-manifest.json"
MANIFEST_FORMAT = "wrn-manifest/1"

ARRAY_DATASETS = ("cifar10", "cifar100", "svhn")
IMAGE_SHAPE = (3, 32, 32)

IMAGENET_SPLITS = {"train": "train", "test": "val"}
DATA_DIR_VARIABLE = "WRN_DATA_DIR"


def default_data_dir() -> Path:
    """The data directory when none is given: $WRN_DATA_DIR, else ./data."""
    return Path(os.environ.get(DATA_DIR_VARIABLE, "data")).absolute()


def official_counts(name: str) -> dict[str, int]:
    """{"train": N, "test": M} of the official dataset (`wrn.config.DATASET_SIZES`)."""
    train, test = DATASET_SIZES[name]
    return {"train": train, "test": test}


# ------------------------------------------------------------------------------------------------
# Torchvision with a swappable integrity check
# ------------------------------------------------------------------------------------------------
class _ManifestIntegrity:
    """Mixin for torchvision datasets: with a manifest, integrity means "every file matches the
    manifest's sha256"; without one it is torchvision's own md5 check, untouched."""

    def __init__(self, *args: Any, manifest: Manifest | None, **kwargs: Any):
        self._manifest = manifest
        if manifest is not None and hasattr(self, "meta"):
            # CIFAR's meta file is md5-checked outside `_check_integrity`; the manifest covers it.
            self.meta = {**type(self).meta, "md5": None}
        super().__init__(*args, **kwargs)

    def _check_integrity(self) -> bool:
        if self._manifest is None:
            return super()._check_integrity()
        self._manifest.verify()
        return True


class CIFAR10(_ManifestIntegrity, torchvision.datasets.CIFAR10):
    pass


class CIFAR100(_ManifestIntegrity, torchvision.datasets.CIFAR100):
    pass


class SVHN(_ManifestIntegrity, torchvision.datasets.SVHN):
    pass


@dataclass(frozen=True)
class Layout:
    """Where a dataset's files live and which of them make up each split."""

    folder: str  # under data_dir
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: tuple[str, ...] = ()


def dataset_layout(name: str) -> Layout:
    if name in ("cifar10", "cifar100"):
        tv = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        return Layout(tv.base_folder, tuple(f for f, _ in tv.train_list),
                       tuple(f for f, _ in tv.test_list), (tv.meta["filename"],))
    if name == "svhn":
        files = {s: v[1] for s, v in torchvision.datasets.SVHN.split_list.items()}
        return Layout("svhn", (files["train"], files["extra"]), (files["test"],))
    if name == "imagenet":
        return Layout("imagenet", (), ())
    raise DataError(f"dataset={name!r}: allowed: {', '.join((*ARRAY_DATASETS, 'imagenet'))}")


def dataset_folder(name: str, data_dir: str | Path) -> Path:
    """The folder holding `name`'s files (and its manifest): torchvision's own folder names for
    CIFAR (cifar-10-batches-py, cifar-100-python), data_dir/svhn and data_dir/imagenet."""
    return Path(data_dir) / dataset_layout(name).folder


def _official_md5(name: str) -> dict[str, str]:
    if name == "svhn":
        return {v[1]: v[2] for v in torchvision.datasets.SVHN.split_list.values()}
    tv = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    return {**dict(tv.train_list + tv.test_list), tv.meta["filename"]: tv.meta["md5"]}


# ------------------------------------------------------------------------------------------------
# Manifest (reading and verifying; writing lives in wrn.manifest)
# ------------------------------------------------------------------------------------------------
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
    wrn.fake_data wrote the data (so that generated data cannot pass for real data or a subset of
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


# ------------------------------------------------------------------------------------------------
# CIFAR and SVHN as tensors
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayDataset:
    """A whole dataset in memory: uint8 images (N, 3, 32, 32) and int64 labels (N,), on the CPU."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str  # "official" (torchvision md5) or "manifest" (sha256 in wrn-manifest.json)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.name]


def download_command(name: str, data_dir: str | Path) -> str:
    """The command that fetches `name`'s official files into `data_dir`."""
    return f"python -m wrn.download {name} --data-dir {data_dir}"


def _supply_hint(name: str, data_dir: Path) -> str:
    folder = dataset_layout(name).folder
    return (f"get it with `{download_command(name, data_dir)}` (on a machine without internet: run it on "
            f"one with internet and copy {folder}/ here), pass --data-dir pointing at the folder that "
            f"holds {folder}/, or for prepared data write a manifest with "
            f"`python -m wrn.manifest {data_dir} --dataset {name}`")


def imagenet_hint(data_dir: str | Path) -> str:
    """How to supply ImageNet, which no command can download."""
    return (f"ImageNet cannot be downloaded automatically (ILSVRC-2012 is distributed under the terms of "
            f"image-net.org): copy its train/ and val/ (val sorted into one folder per class) into "
            f"{dataset_folder('imagenet', data_dir)}/ as ImageFolder trees (<split>/<class>/<image>) and "
            f"pass --data-dir {data_dir}, or for a prepared subset write a manifest with "
            f"`python -m wrn.manifest {data_dir} --dataset imagenet`")


def _failing_md5(name: str, folder: Path) -> list[str]:
    """`name`'s official files under `folder` that are missing or fail torchvision's md5 sums."""
    return [f for f, md5 in _official_md5(name).items() if not check_integrity(str(folder / f), md5)]


def download_official(name: str, data_dir: str | Path) -> list[str]:
    """Fetch the official CIFAR-10/100 or SVHN files into `data_dir` with torchvision's download code
    (the URLs and md5 sums of its dataset classes), unless they are there and pass those sums; then
    md5-check every file. Returns the files that were missing or damaged and are now in place.

    What ``python -m wrn.download`` runs on a machine with internet, so that compute nodes without it
    find the set in place, and what the loader runs for a missing set when `download` is allowed."""
    if name not in ARRAY_DATASETS:
        raise DataError(f"dataset={name!r}: allowed: {', '.join(ARRAY_DATASETS)} (imagenet cannot be downloaded)")
    data_dir, folder = Path(data_dir), dataset_folder(name, data_dir)
    if read_manifest(folder, name) is not None:
        raise DataError(f"{folder}: holds prepared data ({MANIFEST_NAME}); the official files are not "
                        "downloaded over it: pass another --data-dir")
    needed = _failing_md5(name, folder)
    if not needed:
        return []
    try:
        if name == "svhn":
            for url, filename, md5 in torchvision.datasets.SVHN.split_list.values():
                if filename in needed:
                    download_url(url, str(folder), filename, md5)
        else:
            tv = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
            download_and_extract_archive(tv.url, str(data_dir), filename=tv.filename, md5=tv.tgz_md5)
    except (OSError, urllib.error.URLError, RuntimeError) as exc:
        raise DataError(f"could not download {name} into {data_dir} ({type(exc).__name__}: {exc}); "
                        f"{_supply_hint(name, data_dir)}") from None
    failing = _failing_md5(name, folder)
    if failing:
        raise DataError(f"{folder / failing[0]}: missing or not matching torchvision's official md5 after "
                        f"the download")
    return needed


def _check_cifar_file(path: Path, label_key: str, num_classes: int, is_meta: bool) -> int:
    """Shape, dtype and label checks of one CIFAR pickle before torchvision merges the batches
    (after the merge a malformed batch can no longer be traced to its file)."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(entry).__name__}")
    if is_meta:
        key = "label_names" if label_key == "labels" else "fine_label_names"
        names = entry.get(key)
        if not isinstance(names, list) or len(names) != num_classes:
            raise DataError(f"{path}: expected {key!r} with {num_classes} class names")
        return 0
    data, labels = entry.get("data"), entry.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        found = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' has dtype {found}, expected uint8")
    if data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise DataError(f"{path}: 'data' has shape {tuple(data.shape)}, expected (N, 3072) "
                        "(32x32 RGB, channel-major rows)")
    if labels is None:
        raise DataError(f"{path}: no {label_key!r} key")
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {label_key!r} has shape {labels.shape}, expected ({data.shape[0]},) "
                        "(one label per image)")
    _check_label_range(path, label_key, labels, 0, num_classes - 1)
    return int(data.shape[0])


def _check_svhn_file(path: Path) -> int:
    """Shape/dtype from the .mat headers and the raw label range (SVHN writes digit 0 as 10; a raw
    0 would silently become a valid label after torchvision's 10 -> 0 mapping)."""
    try:
        header = {n: (shape, kind) for n, shape, kind in scipy.io.whosmat(str(path))}
        labels = scipy.io.loadmat(str(path), variable_names=["y"]).get("y")
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    if "X" not in header or labels is None:
        raise DataError(f"{path}: expected variables 'X' and 'y', found {sorted(header)}")
    shape, kind = header["X"]
    if kind != "uint8":
        raise DataError(f"{path}: 'X' has dtype {kind}, expected uint8")
    if len(shape) != 4 or tuple(shape[:3]) != (32, 32, 3):
        raise DataError(f"{path}: 'X' has shape {tuple(shape)}, expected (32, 32, 3, N)")
    if labels.shape != (shape[3], 1):
        raise DataError(f"{path}: 'y' has shape {labels.shape}, expected ({shape[3]}, 1)")
    _check_label_range(path, "y", labels, 1, 10)
    return int(shape[3])


def _check_label_range(path: Path, key: str, labels: np.ndarray, low: int, high: int) -> None:
    if labels.size == 0:
        return
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise DataError(f"{path}: {key!r} must be integers in {low}..{high}")
    lo, hi = labels.min(), labels.max()
    if lo < low or hi > high:
        raise DataError(f"{path}: {key!r} ranges {int(lo)}..{int(hi)}, expected {low}..{high}")


def _to_tensors(x: np.ndarray, y: Any, layout_nhwc: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.transpose(0, 3, 1, 2) if layout_nhwc else x
    return torch.from_numpy(np.ascontiguousarray(x)), torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _check_split(name: str, split: str, folder: Path, files: tuple[str, ...], x: torch.Tensor,
                 y: torch.Tensor, expected: int, source: str) -> None:
    where = ", ".join(str(folder / f) for f in files)
    if x.dtype != torch.uint8 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise DataError(f"{where}: {split} images are {x.dtype} {tuple(x.shape)}, "
                        f"expected uint8 (N, 3, 32, 32)")
    if y.shape != (x.shape[0],):
        raise DataError(f"{where}: {y.shape[0]} {split} labels for {x.shape[0]} images")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES[name]):
        raise DataError(f"{where}: {split} labels range {int(y.min())}..{int(y.max())}, "
                        f"expected 0..{NUM_CLASSES[name] - 1}")
    if x.shape[0] != expected:
        what = "the official count" if source == "official" else "the manifest's count"
        raise DataError(f"{where}: {x.shape[0]} {split} images, expected {expected} ({what})")


def _official_failure(name: str, data_dir: Path, folder: Path, exc: Exception) -> DataError:
    """torchvision says only "not found or corrupted": find the file and say which."""
    for filename, md5 in _official_md5(name).items():
        path = folder / filename
        if path.is_file() and calculate_md5(str(path)) != md5:
            return DataError(f"{path}: md5 does not match torchvision's official {md5}; fetch the "
                             f"official files again with `{download_command(name, data_dir)}`, or if "
                             f"this is prepared (non-official) data, write a manifest with "
                             f"`python -m wrn.manifest {data_dir} --dataset {name}`")
    return DataError(f"{folder}: torchvision could not load {name} ({exc})")


def load_arrays(name: str, data_dir: str | Path, download: bool = True) -> ArrayDataset:
    """Load CIFAR-10, CIFAR-100 or SVHN (train = train + extra) into memory and check it.

    `download` lets torchvision fetch a missing official set (md5-checked). A folder with a
    manifest is never downloaded into."""
    if name not in ARRAY_DATASETS:
        raise DataError(f"dataset={name!r}: allowed: {', '.join(ARRAY_DATASETS)}")
    return _load_arrays(name, Path(data_dir), read_manifest(dataset_folder(name, data_dir), name), download)


def load_arrays_with_manifest(name: str, data_dir: str | Path, manifest: Manifest) -> ArrayDataset:
    """`load_arrays` through the manifest route with `manifest` in memory: how `wrn.manifest` makes
    sure the loader accepts a folder before it writes a manifest that vouches for it."""
    return _load_arrays(name, Path(data_dir), manifest, download=False)


def array_file_counts(name: str, data_dir: str | Path) -> dict[str, int]:
    """Check each of `name`'s files on its own (shape, dtype, labels) and count its images; what
    `python -m wrn.manifest` declares. Names the first missing or malformed file."""
    layout, folder = dataset_layout(name), dataset_folder(name, data_dir)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    counts, needed = {}, layout.train + layout.test + layout.meta
    for f in needed:
        if not (folder / f).is_file():
            raise DataError(f"{folder / f}: missing ({name} needs {', '.join(needed)})")
        if name == "svhn":
            counts[f] = _check_svhn_file(folder / f)
        else:
            counts[f] = _check_cifar_file(folder / f, label_key, NUM_CLASSES[name], f in layout.meta)
    return counts


def _load_arrays(name: str, data_dir: Path, manifest: Manifest | None, download: bool) -> ArrayDataset:
    layout, folder = dataset_layout(name), dataset_folder(name, data_dir)
    needed = layout.train + layout.test + layout.meta
    if manifest is None:
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing and download:
            download_official(name, data_dir)
            missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            raise DataError(f"{name} not found: looked in {folder} for {', '.join(needed)} "
                            f"(missing {', '.join(missing)}); {_supply_hint(name, data_dir)}")
        expected, source = official_counts(name), "official"
    else:
        manifest.require(needed)
        manifest.verify()
        array_file_counts(name, data_dir)
        expected, source = manifest.counts, "manifest"

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    try:
        if name == "svhn":
            parts = {s: SVHN(str(folder), split=s, manifest=manifest) for s in ("train", "extra", "test")}
            tr = [_to_tensors(parts[s].data, parts[s].labels, False) for s in ("train", "extra")]
            splits["train"] = (torch.cat([x for x, _ in tr]), torch.cat([y for _, y in tr]))
            splits["test"] = _to_tensors(parts["test"].data, parts["test"].labels, False)
        else:
            cls = CIFAR10 if name == "cifar10" else CIFAR100
            for split in ("train", "test"):
                ds = cls(str(data_dir), train=split == "train", manifest=manifest)
                splits[split] = _to_tensors(ds.data, ds.targets, True)
    except DataError:
        raise
    except (RuntimeError, ValueError, KeyError, OSError, pickle.UnpicklingError) as exc:
        if source == "official":
            raise _official_failure(name, data_dir, folder, exc) from None
        raise DataError(f"{folder}: torchvision could not parse {name} "
                        f"({type(exc).__name__}: {exc})") from None
    for split in ("train", "test"):
        files = layout.train if split == "train" else layout.test
        _check_split(name, split, folder, files, *splits[split], expected[split], source)
    return ArrayDataset(name, *splits["train"], *splits["test"], source=source)


# ------------------------------------------------------------------------------------------------
# ImageNet as folders (too big to hold in memory; decoded per batch by a DataLoader)
# ------------------------------------------------------------------------------------------------
def load_image_folders(data_dir: str | Path, train_transform: Any = None, test_transform: Any = None
                       ) -> tuple[torchvision.datasets.ImageFolder, torchvision.datasets.ImageFolder, str]:
    """ImageNet at data_dir/imagenet/{train,val}/<class>/*.JPEG as (train, val, source).

    ImageNet cannot be downloaded automatically (licence). Official route: 1000 classes and the
    ILSVRC-2012 counts; manifest route: the manifest's counts and hashes, so a small prepared subset
    can stand in."""
    folder = dataset_folder("imagenet", data_dir)
    return _load_image_folders(Path(data_dir), read_manifest(folder, "imagenet"), train_transform,
                               test_transform)


def load_image_folders_with_manifest(data_dir: str | Path, manifest: Manifest):
    """`load_image_folders` through the manifest route with `manifest` in memory (see
    `load_arrays_with_manifest`)."""
    return _load_image_folders(Path(data_dir), manifest, None, None)


def _load_image_folders(data_dir: Path, manifest: Manifest | None, train_transform: Any,
                        test_transform: Any):
    folder = dataset_folder("imagenet", data_dir)
    dirs = {s: folder / sub for s, sub in IMAGENET_SPLITS.items()}
    missing = [str(d) for d in dirs.values() if not d.is_dir()]
    if missing:
        raise DataError(f"imagenet not found: looked for {' and '.join(missing)}; {imagenet_hint(data_dir)}")
    try:
        train = torchvision.datasets.ImageFolder(str(dirs["train"]), transform=train_transform)
        test = torchvision.datasets.ImageFolder(str(dirs["test"]), transform=test_transform)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"{folder}: not a valid ImageFolder tree ({exc})") from None
    if train.classes != test.classes:
        extra = sorted(set(train.classes) ^ set(test.classes))[:3]
        raise DataError(f"{dirs['test']}: class folders differ from {dirs['train']} (e.g. {extra})")
    if manifest is None:
        source, expected = "official", official_counts("imagenet")
        if len(train.classes) != NUM_CLASSES["imagenet"]:
            raise DataError(f"{dirs['train']}: {len(train.classes)} class folders, expected 1000 "
                            "(the official count; use a manifest for a prepared subset)")
    else:
        source, expected = "manifest", manifest.counts
        if len(train.classes) > NUM_CLASSES["imagenet"]:
            raise DataError(f"{dirs['train']}: {len(train.classes)} class folders, expected at most 1000")
        listed = set(manifest.files)
        for ds in (train, test):
            for path, _ in ds.samples:
                rel = Path(path).relative_to(folder).as_posix()
                if rel not in listed:
                    raise DataError(f"{path}: not listed in {manifest.path}; rewrite it with "
                                    f"`python -m wrn.manifest {data_dir} --dataset imagenet`")
        manifest.verify()
    for split, ds in (("train", train), ("test", test)):
        if len(ds) != expected[split]:
            what = "the official count" if source == "official" else "the manifest's count"
            raise DataError(f"{dirs[split]}: {len(ds)} images, expected {expected[split]} ({what})")
    return train, test, source


def image_folder_files(folder: Path) -> list[str]:
    """The image files ImageFolder would read under imagenet/{train,val}, relative to `folder`."""
    out = []
    for sub in IMAGENET_SPLITS.values():
        ds = torchvision.datasets.ImageFolder(str(folder / sub))
        out += [Path(p).relative_to(folder).as_posix() for p, _ in ds.samples]
    return out


def data_cache_dir(data_dir: str | Path) -> Path:
    """Where derived data (the fitted ZCA transform) is cached, next to the data it came from."""
    return Path(data_dir) / "wrn-cache"


# ------------------------------------------------------------------------------------------------
# The data a run's config names
# ------------------------------------------------------------------------------------------------
ORIGINS = {
    "official": "the official files",
    "prepared": f"prepared data ({MANIFEST_NAME})",
    "generated": "data generated by wrn.fake_data",
}
_SOURCE_KINDS = {"real": "the real dataset", "subset": "a prepared subset", "synthetic": "generated data"}


def data_origin(name: str, data_dir: str | Path) -> str:
    """Where `name`'s files under `data_dir` come from (a key of `ORIGINS`): "official" (no manifest:
    torchvision's md5 sums), "generated" (a manifest written by wrn.fake_data) or "prepared" (any
    other manifest)."""
    manifest = read_manifest(dataset_folder(name, data_dir), name)
    if manifest is None:
        return "official"
    return "generated" if manifest.generated else "prepared"


def fitting_data_source(name: str, train_size: int, test_size: int, origin: str) -> str:
    """The data_source a folder of `origin` holding these counts of `name` is honestly trained as."""
    if origin == "generated":
        return f"synthetic:{train_size}:{test_size}"
    if (train_size, test_size) == DATASET_SIZES[name]:
        return "real"
    return f"subset:{train_size}:{test_size}"


def check_data_source(cfg: RunConfig, train_size: int, test_size: int, data_dir: str | Path) -> None:
    """Refuse to train a run on data other than what its config names: a "real" run on a subset or on
    generated data (or the reverse) would be stored as a result it is not. The message names the
    data_source that fits the folder. "synthetic:N:M" accepts prepared data of its counts too: runs
    planned before "subset" existed named their subsets so, and keep their run ids."""
    kind, _ = parse_data_source(cfg.data_source)
    origin = data_origin(cfg.dataset, data_dir)
    expected = expected_sizes(cfg)
    if (train_size, test_size) == expected and (origin != "generated" or kind == "synthetic"):
        return
    fits = fitting_data_source(cfg.dataset, train_size, test_size, origin)
    raise DataError(f"{data_dir}: {cfg.dataset} holds {train_size} train / {test_size} test images of "
                    f"{ORIGINS[origin]}, but data_source={cfg.data_source!r} means {_SOURCE_KINDS[kind]} "
                    f"of {expected[0]} / {expected[1]}; data_source={fits} fits this folder")
