"""TensorBoard curves for the runs of a results folder, written from their metrics.jsonl.

    python -m analysis.tensorboard                     # results/ and every results/<profile>/
    python -m analysis.tensorboard results/smoke/      # one profile's folder
    python -m analysis.tensorboard results/runs/<run_id>

Training writes each run's curves as it goes when the tensorboard package is installed
(`wrn.tensorboard`); this brings those of runs trained without it, or cut short, up to their
metrics.jsonl. It appends only the epochs a run's event file lacks, so running it again changes
nothing, and it leaves running runs to their trainers. Then ``tensorboard --logdir results/`` shows
them all.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from experiments import store
from wrn.cli import ArgumentParser, run_main
from wrn.errors import UserError
from wrn.tensorboard import INSTALL_HINT, sync_curves

DEFAULT_FOLDER = Path("results")


def run_folders(folder: Path) -> list[Path]:
    """The run folders under `folder`: itself if it is one, else those of the results folder it is
    and of the profiles' results folders inside it (results/<profile>/)."""
    if (folder / store.CONFIG).is_file():
        return [folder]
    nested = [child for child in sorted(folder.iterdir()) if child.is_dir() and store.runs_root(child).is_dir()]
    return [path for results in (folder, *nested) for path in store.run_folders(results)]


def write_folder(folder: Path) -> Counter:
    """Bring the curves of every run under `folder` up to its metrics; count what each run needed."""
    counts: Counter = Counter()
    for path in run_folders(folder):
        record = store.read_run(path)
        rows = store.read_metrics(path / store.METRICS)
        if record.state == "running":
            counts["running (their trainers write them)"] += 1
        elif record.config is None or not rows:
            counts["without a config or a finished epoch"] += 1
        else:
            written = sync_curves(path, record.config, rows)
            counts["written" if written else "up to date"] += 1
            counts["epochs"] += written
    return counts


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="python -m analysis.tensorboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[DEFAULT_FOLDER], metavar="FOLDER",
                        help="a results folder (results/, results/<profile>/) or a run folder (default: results/)")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder; expected a results folder (results/, results/<profile>/) "
                            "or a run folder")
        if not run_folders(folder):
            raise UserError(f"{folder}: holds no run folders (runs/<run_id>/, here or in results/<profile>/) "
                            f"and is not one")
    for folder in args.folders:
        try:
            counts = write_folder(folder)
        except ImportError as error:
            raise UserError(f"the curves need the tensorboard package ({error}): {INSTALL_HINT}") from None
        epochs = counts.pop("epochs", 0)
        summary = ", ".join(f"{n} {what}" + (f" ({epochs} epochs)" if what == "written" else "")
                            for what, n in sorted(counts.items()))
        print(f"{folder}: {sum(counts.values())} runs: {summary}; tensorboard --logdir {folder} shows them")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
