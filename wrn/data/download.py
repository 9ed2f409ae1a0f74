"""Fetch the official datasets on a machine with internet, so that compute nodes without it can train.

Usage: ``python -m wrn.download {cifar10,cifar100,svhn}... [--data-dir DIR]`` (DIR defaults to
$WRN_DATA_DIR, else ./data). Each set is fetched with torchvision's own download code from the URLs
of its dataset classes and checked against their md5 sums (`download_official`); a set already
complete is only checked. DIR is then what training gets as ``--data-dir`` (copied to, or shared
with, the compute nodes). ImageNet cannot be downloaded: the command says how to supply it.

The loader (wrn.data.datasets) runs `download_official` too, for a missing set when its `download` is
allowed, and words its "not found" errors with the hints below: how to get each dataset.
"""

from __future__ import annotations

import sys
import urllib.error
from pathlib import Path

import torchvision
from torchvision.datasets.utils import check_integrity, download_and_extract_archive, download_url

from wrn.cli import ArgumentParser, run_main
from wrn.config import DATASETS
from wrn.data.layout import ARRAY_DATASETS, dataset_folder, dataset_layout, default_data_dir, official_md5
from wrn.data.manifest import MANIFEST_NAME, read_manifest
from wrn.errors import DataError, UsageError


def download_command(name: str, data_dir: str | Path) -> str:
    """The command that fetches `name`'s official files into `data_dir`."""
    return f"python -m wrn.download {name} --data-dir {data_dir}"


def supply_hint(name: str, data_dir: Path) -> str:
    """How to supply CIFAR-10/100 or SVHN: download it, point --data-dir at it, or write a manifest."""
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
    return [f for f, md5 in official_md5(name).items() if not check_integrity(str(folder / f), md5)]


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
                        f"{supply_hint(name, data_dir)}") from None
    failing = _failing_md5(name, folder)
    if failing:
        raise DataError(f"{folder / failing[0]}: missing or not matching torchvision's official md5 after "
                        f"the download")
    return needed


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
def _created_data_dir(data_dir: Path) -> Path:
    """`data_dir`, created if missing; a path that cannot hold data is a one-line error."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"--data-dir: {data_dir}: cannot create it ({exc.strerror or exc})") from None
    if not data_dir.is_dir():
        raise DataError(f"--data-dir: {data_dir}: not a folder")
    return data_dir


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="python -m wrn.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", choices=DATASETS, metavar="DATASET",
                        help=f"one or more of {', '.join(ARRAY_DATASETS)} (imagenet is supplied by hand)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to put the data: what training gets as --data-dir "
                             "(default: $WRN_DATA_DIR, else ./data)")
    args = parser.parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).absolute()
    if "imagenet" in args.datasets:  # refused before anything is fetched
        raise UsageError(f"dataset='imagenet': {imagenet_hint(data_dir)}")
    _created_data_dir(data_dir)
    for name in dict.fromkeys(args.datasets):
        fetched = download_official(name, data_dir)
        where = dataset_folder(name, data_dir)
        if fetched:
            print(f"{name}: fetched {', '.join(fetched)} into {where} (md5-checked)")
        else:
            print(f"{name}: already complete in {where} (md5-checked)")
    print(f"train with --data-dir {data_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
