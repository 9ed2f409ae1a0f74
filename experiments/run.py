"""Run a spec: plan its runs, train what is missing, store every result, write its table and plots.

    python -m experiments.run table_block_type                   # the paper's recipe, real data
    python -m experiments.run table_block_type --profile smoke   # whole pipeline on CPU in ~a minute
    python -m experiments.run table_width --dry-run --json       # what would run, and its cost
    python -m experiments.run my_spec.toml --executor slurm --cluster mycluster --wait

Completed runs are skipped, interrupted ones resume from their last checkpoint, missing ones run. A
changed config is a new run (a new run id), never an overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from experiments import store
from experiments.errors import UserError

EXECUTORS = ("local", "slurm", "debug")
CPU_GUARD_HOURS = 1.0
MIN_FREE_BYTES = 200 * 2**20


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m experiments.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Profiles live in experiments/profiles.toml, specs in experiments/specs/, cluster "
               "profiles in slurm/clusters/. Bad input exits with code 2 and one line on stderr.",
    )
    p.add_argument("spec", nargs="?", help="a spec name (see --list) or the path of a spec .toml file")
    p.add_argument("--list", action="store_true", help="list the shipped specs with their paper reference")
    p.add_argument("--profile", default="paper",
                   help="paper (default: the paper's recipe on the real data) or smoke (tiny generated "
                        "data, every network trained briefly on CPU), or one you add")
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local (default): subprocesses on this machine, one run per GPU (one on CPU); "
                        "slurm: one job array through submitit; debug: in-process, for breakpoints")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds per configuration "
                   "(default: the spec's; the paper used 5)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run-config field for every run, e.g. --set epochs=10 "
                        "--set lr_milestones=[5,8] (repeatable; values are TOML literals)")
    p.add_argument("--dry-run", action="store_true", help="print every run and its estimated cost; train nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: print a JSON list instead of a table")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder for everything a launch writes: runs/, tables/, figures/ (default: results)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset folder (default: $WRN_DATA_DIR or ./data); missing data is downloaded")
    p.add_argument("--max-parallel", type=int, default=None,
                   help="cap on concurrent runs (local: default one per GPU, one on CPU; slurm: "
                        "the job array's parallelism)")
    p.add_argument("--runs-per-gpu", type=int, default=1,
                   help="local executor: runs sharing each GPU (small networks cannot fill a large GPU)")
    p.add_argument("--cluster", default="local",
                   help="with --executor slurm: a cluster profile name in slurm/clusters/ or a path")
    p.add_argument("--wait", action="store_true",
                   help="with --executor slurm: block until the jobs finish, then write the report")
    p.add_argument("--device-tflops", type=float, default=None,
                   help="sustained training TFLOP/s used for estimates (measure it with "
                        "python -m benchmarks.train_speed); default: wrn/throughput.py")
    p.add_argument("--yes", action="store_true", help="start a CPU launch estimated to take over an hour")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # SpecError, ConfigError, DataError: one-line by construction
        if type(e).__name__ in ("SpecError", "ConfigError", "DataError", "ClusterError"):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _main(argv: list[str] | None) -> int:
    from experiments.profiles import load_profile
    from experiments.spec import expand, list_specs, load_spec, parse_overrides

    args = build_parser().parse_args(argv)
    args.results = args.results.absolute()
    if args.list:
        for spec in list_specs():
            print(f"{spec.name:<22} {spec.paper_ref:<28} {spec.title}")
        return 0
    if args.spec is None:
        raise UserError("python -m experiments.run: a spec is required (see --list)")
    if args.json and not args.dry_run:
        raise UserError("--json: only meaningful with --dry-run")
    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds: {args.seeds}: expected an integer >= 1")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError(f"--max-parallel: {args.max_parallel}: expected an integer >= 1")
    if args.runs_per_gpu < 1:
        raise UserError(f"--runs-per-gpu: {args.runs_per_gpu}: expected an integer >= 1")
    if args.device_tflops is not None and not args.device_tflops > 0:
        raise UserError(f"--device-tflops: {args.device_tflops}: expected a number > 0")
    if args.wait and args.executor != "slurm":
        raise UserError("--wait: only meaningful with --executor slurm (local runs always wait)")

    spec = load_spec(args.spec)
    profile = load_profile(args.profile)
    overrides = parse_overrides(args.overrides)
    planned = expand(spec, profile, overrides, seeds=args.seeds)
    cluster = None
    if args.executor == "slurm":
        from experiments.clusters import load_cluster

        cluster = load_cluster(args.cluster)

    import torch

    from experiments.plan import describe, format_table

    # Dry runs plan GPU-hours (what a cluster allocation is asked in); a launch is estimated on the
    # device that will train it.
    device_type = "cuda" if (args.dry_run or args.executor == "slurm" or torch.cuda.is_available()) else "cpu"
    sizes = _synthetic_sizes(planned)
    rows = describe(planned, device_type, args.device_tflops, spec.kind, sizes)
    records = {}
    for row in rows:
        path = store.run_dir(args.results, spec.name, row.run_id)
        if path.is_dir():
            records[row.run_id] = store.read_run(path)
            row.state = records[row.run_id].state
    if args.dry_run:
        if args.json:
            print(json.dumps([r.to_json() for r in rows], indent=2))
        else:
            print(f"{spec.name}: {spec.title} ({spec.paper_ref}), profile {profile.name}")
            print(format_table(rows, "GPU"))
        return 0

    corrupt = [r for r in rows if r.state == "corrupt"]
    if corrupt:
        rec = records[corrupt[0].run_id]
        raise UserError(f"{rec.path}: {rec.reason}; move the run folder away to train this run again "
                        f"({len(corrupt)} damaged run folder(s))")
    todo = [r for r in rows if r.state not in ("done", "diverged")]
    total_h = sum(r.est_seconds for r in todo) / 3600
    _log(f"{spec.name}: {len(rows)} runs, {len(rows) - len(todo)} complete, {len(todo)} to run; "
         f"estimated {total_h:.2f} {device_type.upper()}-hours on this plan")
    if device_type == "cpu" and total_h > CPU_GUARD_HOURS and not args.yes:
        raise UserError(
            f"{spec.name}: about {total_h:.0f} CPU-hours of training on a machine without a GPU; "
            f"pass --yes to start anyway, or try --profile smoke, or --executor slurm")
    if args.executor == "slurm":
        from experiments.slurm import check_available

        check_available()
    if sizes is None:
        data_dir = _real_data_dir(args, [r.config for r in todo])
    _check_results_writable(args.results)
    if sizes is not None:
        data_dir = _synthetic_data_dir(args.results, sizes, {r.config.dataset for r in todo})

    timing = {p.run_id: p.timing for p in planned}
    run_dirs = [_materialise(args.results, spec, row, timing[row.run_id]) for row in todo]
    if args.executor == "slurm":
        from experiments.slurm import submit_runs, wait_for

        owned = {r.run_id for r in todo if r.state in ("queued", "running")}
        if owned:
            _log(f"{len(owned)} runs are already queued or running under a live job; not resubmitted")
        to_submit = [p for p in run_dirs if p.name not in owned]
        job_ids = submit_runs(to_submit, cluster, data_dir, args.max_parallel) if to_submit else []
        if job_ids:
            _log(f"submitted {len(to_submit)} runs as SLURM job(s) {', '.join(job_ids)}; follow with "
                 f"`squeue -j {job_ids[0]}` or `python -m experiments.status {args.spec} "
                 f"--results {args.results}`")
        if not args.wait:
            return 0
        wait_for(run_dirs)  # the runs already owned by live jobs too: the report needs them all
    elif args.executor == "debug":
        from experiments.executors import run_debug

        run_debug(run_dirs, data_dir, _log)
    else:
        from experiments.executors import plan_slots, run_local

        counts = run_local(run_dirs, data_dir, plan_slots(args.max_parallel, args.runs_per_gpu), _log)
        _log("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
        if counts["interrupted"]:
            _log("interrupted runs resume from their checkpoint on the next launch")
            return 130
    return _report(spec, args.results, profile.name)


def _report(spec, results: Path, profile: str) -> int:
    from analysis.report import write_index, write_spec_report

    paths = write_spec_report(spec, results, profile)
    index = write_index(results, profile)
    for p in paths:
        _log(f"wrote {p}")
    _log(f"wrote {index}")
    states = [r.state for r in store.spec_runs(results, spec.name)]
    return 1 if "failed" in states else 0


def _synthetic_sizes(planned) -> tuple[int, int] | None:
    """The generated data's size when the runs train on synthetic data (one source per launch)."""
    from wrn.config import synthetic_sizes

    sources = {p.config.data_source for p in planned}
    if len(sources) > 1:
        raise UserError(f"data_source: {sorted(sources)}: one launch trains on one data source")
    return synthetic_sizes(sources.pop()) if sources else None


def _check_results_writable(results: Path) -> None:
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


def _real_data_dir(args, configs) -> Path:
    """The real datasets' folder, checked (and downloaded once, md5-verified, when missing) here,
    before any run folder exists, rather than by every worker: a launch with missing or damaged data
    stops with one line naming the file and writes nothing."""
    from wrn.datasets import dataset_folder, load_arrays
    from wrn.train import check_data_source

    data_dir = args.data_dir or Path(os.environ.get("WRN_DATA_DIR", "data"))
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"--data-dir: {args.data_dir}: no such folder")
    data_dir = data_dir.absolute()
    for cfg in {c.dataset: c for c in configs}.values():
        if cfg.dataset == "imagenet":
            folder = dataset_folder("imagenet", data_dir)
            if not all((folder / split).is_dir() for split in ("train", "val")):
                raise UserError(f"--data-dir: {folder}: ImageNet needs train/ and val/ in ImageFolder "
                                "layout (<split>/<class>/<image>); it cannot be downloaded automatically")
            continue
        arrays = load_arrays(cfg.dataset, data_dir, download=True)
        check_data_source(cfg, len(arrays.train_y), len(arrays.test_y), data_dir)
    return data_dir


def _synthetic_data_dir(results: Path, sizes: tuple[int, int], datasets: set[str]) -> Path:
    """Small generated datasets in the real on-disk formats under <results>/data/synthetic-<n>-<m>,
    read back through the real loaders by the runs."""
    from wrn.datasets import MANIFEST_NAME, dataset_folder
    from wrn.fake_data import write_fake_dataset

    root = results / "data" / f"synthetic-{sizes[0]}-{sizes[1]}"
    for name in sorted(datasets):
        if not (dataset_folder(name, root) / MANIFEST_NAME).exists():  # written last: complete
            write_fake_dataset(name, root, sizes[0], sizes[1], seed=0)
    return root


def _materialise(results: Path, spec, row, timing: dict | None) -> Path:
    """The run's folder with its config.json (kept if already there: same id, same config)."""
    path = store.run_dir(results, spec.name, row.run_id)
    if (path / store.CONFIG).exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    meta = {"run_id": row.run_id, "spec": spec.name, "label": row.label, "kind": spec.kind,
            "config": row.config.to_dict(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if timing is not None:
        meta["timing"] = dict(timing)
    store.atomic_write_json(path / store.CONFIG, meta)
    return path


if __name__ == "__main__":
    sys.exit(main())
