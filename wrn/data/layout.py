"""Where each dataset's files live: the data directory, each dataset's folder under it and the files
that make up its splits, the official files' md5 sums and image counts, and the cache of derived data.

Every other data module finds its files through these functions, so the on-disk layout (torchvision's
own folder and file names for CIFAR and SVHN, ImageFolder trees for ImageNet) is stated once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torchvision

from wrn.config import DATASET_SIZES
from wrn.errors import DataError

ARRAY_DATASETS = ("cifar10", "cifar100", "svhn")
IMAGENET_SPLITS = {"train": "train", "test": "val"}
DATA_DIR_VARIABLE = "WRN_DATA_DIR"


def default_data_dir() -> Path:
    """The data directory when none is given: $WRN_DATA_DIR, else ./data."""
    return Path(os.environ.get(DATA_DIR_VARIABLE, "data")).absolute()


def official_counts(name: str) -> dict[str, int]:
    """{"train": N, "test": M} of the official dataset (`wrn.config.DATASET_SIZES`)."""
    train, test = DATASET_SIZES[name]
    return {"train": train, "test": test}


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


def official_md5(name: str) -> dict[str, str]:
    """{file: md5} of `name`'s official files, as torchvision's dataset classes hard-code them."""
    if name == "svhn":
        return {v[1]: v[2] for v in torchvision.datasets.SVHN.split_list.values()}
    tv = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    return {**dict(tv.train_list + tv.test_list), tv.meta["filename"]: tv.meta["md5"]}


def data_cache_dir(data_dir: str | Path) -> Path:
    """Where derived data (the fitted ZCA transform) is cached, next to the data it came from."""
    return Path(data_dir) / "wrn-cache"
