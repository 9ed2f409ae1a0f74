"""Write ``wrn-manifest.json`` for prepared data: the route by which non-official files (a subset,
a re-export, the generated smoke data) go through the real torchvision loader instead of around it.

torchvision only accepts its official files (hard-coded md5 sums). A manifest (wrn.data.manifest,
which reads and writes the file) records every file's sha256 and the train/test counts; the loader
(wrn.data.datasets) then checks the files against the manifest instead, and the parsed arrays against
its counts. The manifest is written only after the data has been loaded and checked through that same
route, so a manifest never vouches for a folder the loader would reject. (This step sits above the
loader, which reads manifests: hence a module of its own.)

Usage: ``python -m wrn.manifest DATA_DIR --dataset {cifar10,cifar100,svhn,imagenet}``, where
DATA_DIR is what training gets as ``--data-dir`` (the manifest goes into the dataset's own folder:
cifar-10-batches-py/, cifar-100-python/, svhn/ or imagenet/). A run trains on such a folder as
``data_source = "real"`` when it holds the whole dataset and as ``"subset:<train>:<test>"`` (the
manifest's counts, which this command prints) when it holds part of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wrn.cli import ArgumentParser, run_main
from wrn.config import DATASETS
from wrn.data import datasets
from wrn.data.layout import IMAGENET_SPLITS, dataset_folder, dataset_layout
from wrn.data.manifest import MANIFEST_NAME, Manifest, sha256_file
from wrn.data.origin import fitting_data_source
from wrn.errors import DataError


def build_manifest(name: str, data_dir: str | Path, generated: bool = False) -> Manifest:
    """Hash, load and check `name` under `data_dir`; return the manifest that vouches for it, marked
    ``"generated": true`` for data wrn.data.fake wrote (`generated`)."""
    if name not in DATASETS:
        raise DataError(f"dataset={name!r}: allowed: {', '.join(DATASETS)}")
    data_dir = Path(data_dir)
    folder = dataset_folder(name, data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (DATA_DIR is the directory passed as --data-dir; "
                        f"{name} files go in {folder.name}/ under it)")
    if name == "imagenet":
        try:
            files = datasets.image_folder_files(folder)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"{folder}: not a valid ImageFolder tree ({exc})") from None
    else:
        per_file = datasets.array_file_counts(name, data_dir)
        files = list(per_file)
    hashes = {rel: sha256_file(folder / rel) for rel in files}
    if name == "imagenet":
        counts = {s: sum(1 for f in files if f.startswith(sub + "/")) for s, sub in IMAGENET_SPLITS.items()}
    else:
        layout = dataset_layout(name)
        counts = {"train": sum(per_file[f] for f in layout.train),
                  "test": sum(per_file[f] for f in layout.test)}
    manifest = Manifest(path=folder / MANIFEST_NAME, dataset=name, counts=counts, files=hashes,
                        generated=generated, _verified=True)
    # The loader's own route, with this manifest in memory: what it rejects is never written.
    if name == "imagenet":
        datasets.load_image_folders_with_manifest(data_dir, manifest)
    else:
        datasets.load_arrays_with_manifest(name, data_dir, manifest)
    return manifest


def write_manifest(name: str, data_dir: str | Path, generated: bool = False) -> Path:
    """Build the manifest and write it atomically into the dataset's folder; returns its path."""
    return build_manifest(name, data_dir, generated).write()


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="python -m wrn.manifest", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", metavar="DATA_DIR", help="the directory passed to training as --data-dir")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    args = parser.parse_args(argv)
    path = write_manifest(args.dataset, args.data_dir)
    content = json.loads(path.read_text())
    counts = content["counts"]
    fits = fitting_data_source(args.dataset, counts["train"], counts["test"], "prepared")
    print(f"wrote {path}: {len(content['files'])} files, train {counts['train']}, test {counts['test']}; "
          f"train on it with --data-dir {Path(args.data_dir).absolute()} and data_source={fits}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
