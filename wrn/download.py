"""Fetch the official datasets on a machine with internet, so that compute nodes without it can train.

Usage: ``python -m wrn.download {cifar10,cifar100,svhn}... [--data-dir DIR]`` (DIR defaults to
$WRN_DATA_DIR, else ./data). Each set is fetched with torchvision's own download code from the URLs
of its dataset classes and checked against their md5 sums (`wrn.datasets.download_official`); a set
already complete is only checked. DIR is then what training gets as ``--data-dir`` (copied to, or
shared with, the compute nodes). ImageNet cannot be downloaded: the command says how to supply it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wrn.cli import ArgumentParser, run_main
from wrn.config import DATASETS
from wrn.datasets import ARRAY_DATASETS, dataset_folder, default_data_dir, download_official, imagenet_hint
from wrn.errors import DataError, UsageError


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
