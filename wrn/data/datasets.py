"""Raw datasets, loaded once and checked: CIFAR-10/100 and SVHN as uint8 NCHW tensors, ImageNet as
torchvision ImageFolders.

The files are always parsed by torchvision's own code (its CIFAR10/CIFAR100/SVHN classes), so what
we train on is what everyone else who uses torchvision trains on. Integrity takes one of two routes:

* official: the files are torchvision's downloads and pass its hard-coded md5 sums
  (`wrn.data.download.download_official` fetches a missing set, md5-checked: ``python -m wrn.download``
  on a machine with internet, or the loader when `download` is allowed);
* manifest: the dataset folder holds ``wrn-manifest.json`` (wrn.data.manifest; written by
  ``python -m wrn.manifest``) listing every file's sha256 and the train/test counts. The subclasses
  below replace only torchvision's integrity check by the manifest's, so prepared or generated data
  still goes through the real parser instead of around it.

Either way the parsed arrays are checked for shape, dtype, label range and count, and every failure
is a one-line `DataError` naming the file and what was expected, so a bad folder can never train
silently. wrn.data.origin then holds the folder to what a run's ``data_source`` says it trains on
(the real data, a prepared subset, or generated data: a manifest written by wrn.data.fake says so).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
import torchvision
from torchvision.datasets.utils import calculate_md5

from wrn.config import NUM_CLASSES
from wrn.data.download import download_command, download_official, imagenet_hint, supply_hint
from wrn.data.layout import (ARRAY_DATASETS, IMAGENET_SPLITS, dataset_folder, dataset_layout, official_counts,
                             official_md5)
from wrn.data.manifest import Manifest, read_manifest
from wrn.errors import DataError

IMAGE_SHAPE = (3, 32, 32)


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
    for filename, md5 in official_md5(name).items():
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
    """`load_arrays` through the manifest route with `manifest` in memory: how wrn.data.prepared
    makes sure the loader accepts a folder before it writes a manifest that vouches for it."""
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
                            f"(missing {', '.join(missing)}); {supply_hint(name, data_dir)}")
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
