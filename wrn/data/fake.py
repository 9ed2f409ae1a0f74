"""Small datasets in the real on-disk formats, for tests and the smoke profile.

They are written exactly as the real downloads are laid out (CIFAR python pickles with their meta
files, SVHN MATLAB files with digit 0 stored as 10, ImageNet-style class folders of JPEGs) plus a
``wrn-manifest.json`` written by wrn.data.prepared, so they are loaded by the real loader through its
manifest route: nothing in the suite has a separate code path for fake data. The manifest marks them
``"generated": true``, so they train only as ``data_source = "synthetic:<train>:<test>"`` and never
pass for the real data or a subset of it.

With ``learnable=True`` every class has its own colour and stripe pattern under pixel noise, so a
small network's loss falls within an epoch or two; with ``learnable=False`` images are pure noise.

Usage: ``python -m wrn.fake_data {cifar10,cifar100,svhn,imagenet} ROOT --train N --test M``, where
ROOT is then passed to training as ``--data-dir`` with ``data_source = "synthetic:N:M"``.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from wrn.cli import ArgumentParser, run_main
from wrn.config import DATASET_SIZES, DATASETS
from wrn.data.layout import dataset_folder, dataset_layout
from wrn.data.prepared import write_manifest
from wrn.errors import UserError
from wrn.files import atomic_write

CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 10}
IMAGENET_SIZE = (40, 48)  # (height, width): not square, larger than a 32-pixel crop
SVHN_TRAIN_SHARE = 73_257 / DATASET_SIZES["svhn"][0]  # train_32x32.mat's share of train + extra


def _prototypes(rng: np.random.Generator, classes: int, height: int, width: int) -> np.ndarray:
    """One float image (H, W, 3) per class: a colour plus a stripe pattern of its own angle and
    frequency, so classes differ in colour and in texture (what survives crops and flips)."""
    colour = rng.uniform(40, 215, (classes, 1, 1, 3))
    angle = rng.uniform(0, np.pi, (classes, 1, 1, 1))
    freq = rng.uniform(1.0, 4.0, (classes, 1, 1, 1))
    yy, xx = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    phase = 2 * np.pi * freq * (np.cos(angle) * xx[None, :, :, None] + np.sin(angle) * yy[None, :, :, None])
    return colour + 40.0 * np.sin(phase)


def _images(rng: np.random.Generator, labels: np.ndarray, protos: np.ndarray | None,
            height: int, width: int) -> np.ndarray:
    """uint8 images (N, H, W, 3) for `labels` (pure noise when `protos` is None)."""
    if protos is None:
        return rng.integers(0, 256, (len(labels), height, width, 3), dtype=np.uint8)
    noisy = protos[labels] + rng.normal(0.0, 20.0, (len(labels), height, width, 3))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _dump(obj: dict, path: Path) -> None:
    """A CIFAR pickle, written atomically: another launcher's run may be reading the folder."""
    atomic_write(path, lambda handle: pickle.dump(obj, handle, protocol=2), binary=True)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072) channel-major rows, the CIFAR pickle layout."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def _write_cifar(name: str, folder: Path, train: tuple, test: tuple) -> None:
    layout = dataset_layout(name)
    classes = CLASSES[name]
    if name == "cifar10":
        for i, part in enumerate(np.array_split(np.arange(len(train[1])), len(layout.train))):
            _dump({"batch_label": f"training batch {i + 1} of {len(layout.train)}",
                   "labels": train[1][part].tolist(), "data": _cifar_rows(train[0][part]),
                   "filenames": [f"fake_{j}.png" for j in part]}, folder / layout.train[i])
        _dump({"batch_label": "testing batch 1 of 1", "labels": test[1].tolist(),
               "data": _cifar_rows(test[0]), "filenames": [f"fake_{j}.png" for j in range(len(test[1]))]},
              folder / layout.test[0])
        _dump({"label_names": [f"class_{c}" for c in range(classes)], "num_cases_per_batch": 10000,
               "num_vis": 3072}, folder / layout.meta[0])
        return
    for filename, (images, labels) in ((layout.train[0], train), (layout.test[0], test)):
        _dump({"batch_label": filename, "fine_labels": labels.tolist(),
               "coarse_labels": (labels // 5).tolist(), "data": _cifar_rows(images),
               "filenames": [f"fake_{j}.png" for j in range(len(labels))]}, folder / filename)
    _dump({"fine_label_names": [f"class_{c}" for c in range(classes)],
           "coarse_label_names": [f"superclass_{c}" for c in range(classes // 5)]}, folder / layout.meta[0])


def _write_svhn(folder: Path, train: tuple, test: tuple) -> None:
    layout = dataset_layout("svhn")
    n_train = len(train[1])
    cut = min(max(1, round(n_train * SVHN_TRAIN_SHARE)), n_train - 1)
    parts = {layout.train[0]: slice(0, cut), layout.train[1]: slice(cut, n_train)}
    for filename, (images, labels) in [(f, (train[0][s], train[1][s])) for f, s in parts.items()] + [
            (layout.test[0], test)]:
        digits = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)  # SVHN: 0 is 10
        arrays = {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "y": digits}
        atomic_write(folder / filename, lambda handle, arrays=arrays: scipy.io.savemat(handle, arrays),
                     binary=True)


def _write_imagenet(folder: Path, train: tuple, test: tuple) -> None:
    for split, (images, labels) in (("train", train), ("val", test)):
        for i, (image, label) in enumerate(zip(images, labels)):
            class_dir = folder / split / f"n{label:08d}"
            class_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(class_dir / f"{split}_{i:06d}.JPEG", lambda handle, image=image: Image.fromarray(
                image).save(handle, format="JPEG", quality=95), binary=True)


def write_fake_dataset(name: str, root: str | Path, n_train: int, n_test: int, seed: int = 0,
                       learnable: bool = True) -> Path:
    """Write `name` with `n_train`/`n_test` images under data directory `root` and its manifest;
    returns the dataset's folder. Deterministic in `seed`."""
    if name not in DATASETS:
        raise UserError(f"dataset={name!r}: allowed: {', '.join(DATASETS)}")
    classes = CLASSES[name]
    # SVHN splits its training images over train and extra; ImageFolder needs every class in both
    # splits (labels are balanced, so `classes` images cover them all).
    minimum = {"svhn": (2, 1), "imagenet": (classes, classes)}.get(name, (1, 1))
    for field, value, least in (("n_train", n_train, minimum[0]), ("n_test", n_test, minimum[1])):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise UserError(f"{field}={value!r}: expected an integer >= {least} for {name}")
    height, width = IMAGENET_SIZE if name == "imagenet" else (32, 32)
    protos = _prototypes(np.random.default_rng([seed, 0]), classes, height, width) if learnable else None
    splits = []
    for stream, n in ((1, n_train), (2, n_test)):
        rng = np.random.default_rng([seed, stream])
        labels = rng.permutation(np.arange(n) % classes)  # balanced: every class when n >= classes
        splits.append((_images(rng, labels, protos, height, width), labels))
    folder = dataset_folder(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    if name in ("cifar10", "cifar100"):
        _write_cifar(name, folder, *splits)
    elif name == "svhn":
        _write_svhn(folder, *splits)
    else:
        _write_imagenet(folder, *splits)
    write_manifest(name, root, generated=True)
    return folder


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="python -m wrn.fake_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("root", help="data directory to write into (then pass it as --data-dir)")
    parser.add_argument("--train", type=int, required=True, help="number of training images")
    parser.add_argument("--test", type=int, required=True, help="number of test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", action="store_true", help="pure-noise images (no class signal)")
    args = parser.parse_args(argv)
    try:
        folder = write_fake_dataset(args.dataset, args.root, args.train, args.test, args.seed,
                                    learnable=not args.noise)
    except OSError as exc:
        raise UserError(f"{args.root}: cannot write the dataset there ({exc.strerror or exc})") from None
    print(f"wrote {args.dataset} ({args.train} train, {args.test} test) to {folder}; train on it with "
          f"--data-dir {Path(args.root).absolute()} and data_source=synthetic:{args.train}:{args.test}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
