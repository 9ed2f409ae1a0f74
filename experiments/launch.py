"""Launching planned runs: the data and the results folder checked, every run's folder written, and the
runs handed to an executor (local subprocesses, in-process debug, or a SLURM job array).

Everything a launch can find wrong with its input (a damaged or missing dataset, an unwritable or full
results folder, a damaged run folder) is found here, before the first run folder is written, and
reported as one `UserError` line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from experiments import store
from experiments.clusters import ClusterProfile
from experiments.console import Log, summary, tally
from experiments.estimate import Estimate, format_duration
from experiments.executors import plan_slots, run_debug, run_local
from experiments.plan import PlannedRun
from experiments.profiles import Profile
from experiments.slurm import check_available, submit_runs, wait_for
from experiments.spec import SPECS_DIR, Spec
from wrn.data.datasets import load_arrays
from wrn.data.download import imagenet_hint
from wrn.data.fake import write_fake_dataset
from wrn.data.layout import ARRAY_DATASETS, dataset_folder, default_data_dir
from wrn.data.manifest import MANIFEST_NAME
from wrn.data.origin import check_data_source
from wrn.data.sources import synthetic_sizes
from wrn.errors import UserError
from wrn.files import atomic_write_text
from wrn.records import timestamp

CPU_GUARD_HOURS = 1.0
MIN_FREE_BYTES = 200 * 2**20
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class LaunchOptions:
    """How to launch, from the command line."""

    executor: str  # local, slurm or debug (experiments.run's --executor)
    results: Path
    profile: Profile
    data_dir: Path | None  # None: $WRN_DATA_DIR or ./data (wrn.data.layout.default_data_dir)
    max_parallel: int | None
    runs_per_gpu: int
    cluster: ClusterProfile | None  # the executor "slurm" only
    wait: bool  # the executor "slurm": block until the jobs end
    yes: bool  # start a CPU launch estimated over CPU_GUARD_HOURS
    status_command: str  # the command that shows where this spec's runs stand, for messages
    relaunch_command: str  # the command that launches these runs again, every flag included


def launch(spec: Spec, planned: list[PlannedRun], estimates: list[Estimate], device_type: str,
           options: LaunchOptions, log: Log) -> int | None:
    """Train the runs of `planned` that are not finished; None when the report should follow, else
    the exit status to stop with (submitted without waiting, or interrupted)."""
    corrupt = [e for e in estimates if e.state == "corrupt"]
    if corrupt:
        rec = store.read_run(store.run_dir(options.results, corrupt[0].run_id))
        raise UserError(f"{rec.path}: {rec.reason}; move the run folder away to train this run again "
                        f"({len(corrupt)} damaged run folder(s))")
    todo = [e for e in estimates if e.state not in ("done", "diverged")]
    total_h = sum(e.est_seconds for e in todo) / 3600
    log(f"{spec.name}: {len(estimates)} runs, {len(estimates) - len(todo)} complete, {len(todo)} to run; "
        f"estimated {format_duration(total_h * 3600, device_type)} on this plan")
    if device_type == "cpu" and options.executor != "slurm" and total_h > CPU_GUARD_HOURS and not options.yes:
        raise UserError(
            f"{spec.name}: about {total_h:.0f} CPU-hours of training on a machine without a GPU; "
            f"pass --yes to start anyway, or try --profile smoke, or --executor slurm")
    if options.executor == "slurm":
        check_available()
    data_dir = _checked_data_dir(planned, todo, options)
    keep_spec(spec, options.results)
    timing = {p.run_id: p.timing for p in planned}
    run_dirs = [materialise(options.results, spec, options.profile, e, timing[e.run_id]) for e in todo]
    if options.executor == "slurm":
        return _launch_slurm(spec, todo, run_dirs, data_dir, options, log)
    if options.executor == "debug":
        counts = run_debug(run_dirs, data_dir, log)
    else:
        counts = run_local(run_dirs, data_dir, plan_slots(options.max_parallel, options.runs_per_gpu), log)
    log(summary(counts, {state: sum(e.state == state for e in estimates) for state in ("done", "diverged")}))
    left = {k: counts[k] for k in ("interrupted", "not started", "skipped") if counts[k]}
    if left:
        log(f"{tally(left)}: relaunch with `{options.relaunch_command}` (interrupted runs resume from "
            "their last checkpoint)")
        return EXIT_INTERRUPTED
    return None


def _launch_slurm(spec: Spec, todo: list[Estimate], run_dirs: list[Path], data_dir: Path | None, options: LaunchOptions,
                  log: Log) -> int | None:
    owned = {e.run_id for e in todo if e.state in ("queued", "running")}
    if owned:
        log(f"{len(owned)} runs are already queued or running under a live job; not resubmitted")
    to_submit = [p for p in run_dirs if p.name not in owned]
    job_ids = submit_runs(to_submit, spec.name, options.cluster, data_dir, options.max_parallel) if to_submit else []
    if job_ids:
        log(f"submitted {len(to_submit)} runs as SLURM job(s) {', '.join(job_ids)}; follow with "
            f"`squeue -j {job_ids[0]}` or `{options.status_command}`")
    if not options.wait:
        return 0
    wait_for(run_dirs)  # the runs already owned by live jobs too: the report needs them all
    return None


def _checked_data_dir(planned: list[PlannedRun], todo: list[Estimate], options: LaunchOptions) -> Path:
    """The data folder the runs read, checked before anything is written: a --data-dir given must be a
    readable folder under any profile; then the real datasets (downloaded when missing) or a prepared
    subset there, or the generated data written under the results folder."""
    source = _data_source(planned)
    sizes = synthetic_sizes(source)
    datasets = {e.config.dataset for e in todo}
    if options.data_dir is not None:
        _check_data_dir_arg(options.data_dir, sizes is not None, datasets)
    if sizes is not None:
        check_results_writable(options.results)
        return _synthetic_data_dir(options.results, sizes, datasets)
    data_dir = _prepared_data_dir(options.data_dir, [e.config for e in todo], download=source == "real")
    check_results_writable(options.results)
    return data_dir


def _data_source(planned: list[PlannedRun]) -> str:
    """The data_source the runs train on: one per launch."""
    sources = {p.config.data_source for p in planned}
    if len(sources) > 1:
        raise UserError(f"data_source: {sorted(sources)}: one launch trains on one data source")
    return sources.pop() if sources else "real"


def _check_data_dir_arg(data_dir: Path, generated: bool, datasets: set[str]) -> None:
    """A --data-dir that is given is a readable folder, even where the launch reads nothing from it
    (`generated`: it trains on the data it generates)."""
    if not data_dir.exists():
        how = ("this launch trains on generated data and reads no --data-dir: leave it out" if generated
               else _how_to_get(datasets, data_dir))
        raise UserError(f"--data-dir: {data_dir}: no such folder; {how}")
    if not data_dir.is_dir():
        raise UserError(f"--data-dir: {data_dir}: not a folder")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise UserError(f"--data-dir: {data_dir}: not readable (permission denied)")


def _how_to_get(datasets: set[str], data_dir: Path) -> str:
    """How to put `datasets` into `data_dir`: the download command, and ImageNet's own way."""
    fetchable = sorted(datasets & set(ARRAY_DATASETS))
    ways = [f"fetch the data into it with `python -m wrn.download {' '.join(fetchable)} --data-dir {data_dir}` "
            "on a machine with internet"] if fetchable else []
    return "; ".join(ways + ([imagenet_hint(data_dir)] if "imagenet" in datasets else []))


def check_results_writable(results: Path) -> None:
    """Fail before any training if the results folder cannot take the run files."""
    try:
        results.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"--results: {results}: not writable ({e.strerror or e})") from None
    free = shutil.disk_usage(results).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"--results: {results}: only {free // 2**20} MiB free; "
                        f"at least {MIN_FREE_BYTES // 2**20} MiB needed for checkpoints")


def _prepared_data_dir(data_dir_arg: Path | None, configs, download: bool) -> Path:
    """The folder of the real datasets or of a prepared subset, checked (a missing real set downloaded
    once, md5-verified, when `download`) here, before any run folder exists, rather than by every
    worker: a launch with missing or damaged data, or data other than its data_source names, stops
    with one line naming the file and writes nothing."""
    data_dir = (data_dir_arg or default_data_dir()).absolute()
    for cfg in {c.dataset: c for c in configs}.values():
        if cfg.dataset == "imagenet":
            folder = dataset_folder("imagenet", data_dir)
            if not all((folder / split).is_dir() for split in ("train", "val")):
                raise UserError(f"--data-dir: {folder}: no train/ and val/ folders; {imagenet_hint(data_dir)}")
            continue
        arrays = load_arrays(cfg.dataset, data_dir, download=download)
        check_data_source(cfg, len(arrays.train_y), len(arrays.test_y), data_dir)
    return data_dir


def _synthetic_data_dir(results: Path, sizes: tuple[int, int], datasets: set[str]) -> Path:
    """Small generated datasets in the real on-disk formats under <results>/data/synthetic-<n>-<m>,
    read back through the real loaders by the runs."""
    root = results / "data" / f"synthetic-{sizes[0]}-{sizes[1]}"
    for name in sorted(datasets):
        if not (dataset_folder(name, root) / MANIFEST_NAME).exists():  # written last: complete
            write_fake_dataset(name, root, sizes[0], sizes[1], seed=0)
    return root


def keep_spec(spec: Spec, results: Path) -> None:
    """A copy of a user's spec file in <results>/specs/, so that the results folder holds what its
    runs were planned by and `python -m analysis.report --all` reports the spec with the shipped ones."""
    if spec.path.resolve().parent == SPECS_DIR.resolve():
        return
    folder = results / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{spec.name}.toml", spec.path.read_text(encoding="utf-8"))


def materialise(results: Path, spec: Spec, profile: Profile, estimate: Estimate, timing: dict | None) -> Path:
    """The run's folder with its config.json (kept if already there: same id, same config, whichever
    spec or profile planned it first)."""
    path = store.run_dir(results, estimate.run_id)
    if (path / store.CONFIG).exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    store.write_meta(path, store.RunMeta(estimate.run_id, spec.name, estimate.label, estimate.config, timestamp(),
                                         profile.source, spec.kind, None if timing is None else dict(timing)))
    return path
