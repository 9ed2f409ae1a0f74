"""Run a spec: plan its runs, train what is missing, store every result, write its table and plots.

    python -m experiments.run table_block_type                   # the paper's recipe, real data
    python -m experiments.run table_block_type --profile smoke   # whole pipeline on CPU in ~a minute
    python -m experiments.run table_width --dry-run --json       # what would run, and its cost
    python -m experiments.run my_spec.toml --executor slurm --cluster mycluster --wait

Completed runs are skipped, interrupted ones resume from their last checkpoint, missing ones run. A
changed config is a new run (a new run id), never an overwrite. The command goes through the stages
of the pipeline in order: validate the command line, plan (spec, profile, overrides -> runs and their
cost), launch (`experiments.launch`), report (`analysis.report`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.paper import read_paper_results
from experiments import store
from experiments.clusters import ArrayTask, ClusterProfile, load_cluster, place_runs
from experiments.console import log_line
from experiments.estimate import Estimate, estimate, format_duration, format_estimates
from experiments.plan import PlannedRun, collapsed_rows, expand, parse_overrides, select
from experiments.profiles import Profile, load_profile
from experiments.rates import RateBook, local_gpu_name, rates_folder, read_measurements, run_measurements
from experiments.recipe_summary import recipe_lines
from experiments.rounds import round_runs, worst_case_runs
from experiments.schema import SELECT_FIELDS
from experiments.sequential import SequentialDesign
from experiments.spec import Spec, list_specs, load_spec
from wrn.cli import ArgumentParser, run_main
from wrn.errors import UsageError, UserError

# --list and --dry-run stay fast (about a second) by importing torch, pandas and matplotlib only where a
# launch, a sequential design or a report needs them: the imports marked "deferred" below.
if TYPE_CHECKING:
    from experiments.launch import LaunchOptions  # deferred: type names only; the module imports torch

EXECUTORS = ("local", "slurm", "debug")  # how experiments.launch.launch runs the runs


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m experiments.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Profiles live in experiments/profiles.toml, specs in experiments/specs/, cluster "
               "profiles in slurm/clusters/. Bad input exits with code 2 and one line on stderr.",
    )
    p.add_argument("spec", nargs="?", help="a spec name (see --list) or the path of a spec .toml file")
    p.add_argument("--list", action="store_true", help="list the shipped specs with their paper reference")
    p.add_argument("--profile", default="paper",
                   help="paper (default: the paper's recipe on the real data, fp32, TF32 off), fast (the "
                        "same in bf16 autocast with channels_last and TF32 on CUDA: a named deviation), or "
                        "smoke (tiny generated data, every network trained briefly on CPU), or one you add: a name in "
                        "experiments/profiles.toml, a profiles file, or <file>.toml:<name>")
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local (default): subprocesses on this machine, one run per GPU (one on CPU); "
                        "slurm: one job array through submitit; debug: in-process, for breakpoints")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds per configuration "
                   "(default: the spec's; the paper used 5)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run-config field for every run, e.g. --set epochs=10 "
                        "--set lr_milestones=[5,8] (repeatable; values are TOML literals)")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help="train only the spec's runs with this config value or network label, e.g. --only "
                        "dataset=cifar10 --only label=WRN-16-4 (repeatable: all must match); the tables still "
                        "cover the whole spec")
    p.add_argument("--dry-run", action="store_true", help="print every run and its estimated cost; train nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: print a JSON list instead of a table")
    p.add_argument("--results", type=Path, default=None,
                   help="folder for everything a launch writes: runs/, tables/, figures/ (default: results/ for "
                        "the paper profile, results/<profile>/ for any other)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset folder (default: $WRN_DATA_DIR or ./data); missing official sets are "
                        "downloaded; on nodes without internet fetch them first with python -m wrn.download")
    p.add_argument("--max-parallel", type=int, default=None,
                   help="cap on concurrent runs (local: default one per GPU, one on CPU; slurm: "
                        "the job array's parallelism, in array tasks: a run, a distributed run or a packed task)")
    p.add_argument("--runs-per-gpu", type=int, default=1,
                   help="local executor: runs sharing each GPU (small networks cannot fill a large GPU)")
    p.add_argument("--cluster", default="local",
                   help="with --executor slurm: a cluster profile name in slurm/clusters/ or a path")
    p.add_argument("--runs-per-task", type=int, default=None,
                   help="with --executor slurm: runs of world_size 1 that one array task trains side by side "
                        "on its GPU (default: the cluster profile's runs_per_task)")
    p.add_argument("--wait", action="store_true",
                   help="with --executor slurm: block until the jobs finish, then write the report")
    p.add_argument("--device-tflops", type=float, default=None,
                   help="sustained training TFLOP/s for every estimate. Without it each run's rate is, first "
                        "found: $WRN_DEVICE_TFLOPS; a measured rate of its network (else the nearest in size) "
                        "on the device in its precision (results/rates.json, written by python -m "
                        "benchmarks.gpu_check and benchmarks.train_speed, and every finished run); the "
                        "assumption for the device: the cluster profile's gpu, else this machine's GPU, "
                        "else an A100 (wrn/throughput.py)")
    p.add_argument("--yes", action="store_true", help="start a CPU launch estimated to take over an hour")
    p.add_argument("--until-resolved", action="store_true",
                   help="run the spec's seeds, then add seeds in rounds (doubling) only to the cells of the "
                        "orderings still unresolved and resolvable within --max-seeds, until each is decided "
                        "or the budget is spent; the level of each round's test is spent from 5%% (docs/verdicts.md)")
    p.add_argument("--max-seeds", type=int, default=None,
                   help="with --until-resolved: the most seeds any cell gets")
    p.add_argument("--budget-gpu-hours", type=float, default=None, metavar="H",
                   help="the most estimated device-hours (GPU-hours; CPU-hours on a machine without a GPU) the "
                        "launch may take: a launch whose runs to train exceed it refuses to start; with "
                        "--until-resolved, the rounds stop before one would bring all their runs, those done "
                        "included, over it (the dry run lists the rounds that fit and what each is expected "
                        "to decide)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


def _main(argv: list[str] | None) -> int:
    args = _validated_arguments(argv)
    if args.list:
        for spec in list_specs():
            print(f"{spec.name:<22} {spec.paper_ref:<28} {spec.title}")
        return 0
    plan = _plan(args)
    device_type = _estimating_device(args, plan.profile, plan.cluster)
    book = _rate_book(args, plan, device_type)
    estimates = _estimates(plan, plan.runs, book)
    if args.dry_run:
        _print_dry_run(plan, estimates, book, args)
        return 0
    if plan.design is None:
        _check_budget(estimates, args.budget_gpu_hours, device_type)
    for note in plan.notes:
        log_line(f"note: {note}")
    from experiments.launch import LaunchOptions, launch  # deferred: imports torch and the engine
    options = LaunchOptions(
        executor=args.executor, results=plan.results, profile=plan.profile, data_dir=args.data_dir,
        max_parallel=args.max_parallel, runs_per_gpu=args.runs_per_gpu, cluster=plan.cluster,
        wait=args.wait or plan.design is not None, yes=args.yes,
        status_command=_status_command(args, plan), relaunch_command=_relaunch_command(argv, args, plan))
    if plan.design is None:
        stopped = launch(plan.spec, plan.runs, estimates, device_type, options, log_line)
    else:
        stopped = _launch_rounds(plan, book, options, args.budget_gpu_hours)
    if stopped is not None:
        return stopped
    return _report(plan)


def _status_command(args: argparse.Namespace, plan: _Plan) -> str:
    """The `experiments.status` command that shows this launch's runs."""
    words = ["python", "-m", "experiments.status", args.spec, "--profile", plan.profile.source,
             "--results", str(plan.results)]
    words += [f"--seeds={args.seeds}"] if args.seeds is not None else []
    words += [f"--set={item}" for item in args.overrides]
    return shlex.join(words)


def _relaunch_command(argv: list[str] | None, args: argparse.Namespace, plan: _Plan) -> str:
    """This very command, to go on with a launch that stopped: every flag as given, and the default
    results folder named (absolute), since the default depends on the folder it is run from."""
    words = ["python", "-m", "experiments.run", *(sys.argv[1:] if argv is None else argv)]
    words += ["--results", str(plan.results)] if args.results is None else []
    return shlex.join(words)


def _check_budget(estimates: list[Estimate], budget_hours: float | None, device_type: str) -> None:
    """Refuse a launch whose runs still to train are estimated over --budget-gpu-hours, before anything starts."""
    todo = sum(e.est_seconds for e in estimates if e.state not in ("done", "diverged"))
    if budget_hours is not None and todo > budget_hours * 3600:
        raise UserError(f"--budget-gpu-hours {budget_hours:g}: the runs to train are estimated at "
                        f"{format_duration(todo, _unit(device_type))} (the dry run shows each run's rate); "
                        "raise the budget, or train part of the spec (--only, --seeds)")


def _unit(device_type: str) -> str:
    return {"cuda": "GPU", "cpu": "CPU"}[device_type]


def _launch_rounds(plan: _Plan, book: RateBook, options: LaunchOptions, budget_hours: float | None) -> int | None:
    """The rounds of a sequential launch (`experiments.rounds`), each launched and waited for, while
    the estimate of all their runs stays within --budget-gpu-hours."""
    from experiments.launch import launch  # deferred: imports torch and the engine
    from analysis.rounds import cells_to_extend  # deferred: imports pandas
    design = plan.design
    extend: set = set()
    so_far: dict[str, float] = {}
    for look, seeds in enumerate(design.looks):
        runs = round_runs(plan.spec, plan.profile, plan.overrides, design, look, extend)
        estimates = _estimates(plan, runs, book)
        total = sum({**so_far, **{e.run_id: e.est_seconds for e in estimates}}.values())
        if budget_hours is not None and total > budget_hours * 3600:
            spent = format_duration(total, _unit(book.device_type))
            if look == 0:
                raise UserError(f"--budget-gpu-hours {budget_hours:g}: the first round alone is estimated at {spent} "
                                "(python -m experiments.run ... --dry-run shows the rounds that fit)")
            log_line(f"round {look + 1} would bring the launch to {spent}, over --budget-gpu-hours "
                     f"{budget_hours:g}: no more rounds ({len(extend)} cells of unresolved orderings left)")
            return None
        so_far.update({e.run_id: e.est_seconds for e in estimates})
        log_line(f"round {look + 1} of at most {len(design.looks)}: {design.start} seeds per cell"
                 + (f", {seeds} for the {len(extend)} cells of unresolved orderings" if look else "")
                 + f" (level {design.levels[look]:.4g})")
        stopped = launch(plan.spec, runs, estimates, book.device_type, options, log_line)
        design.write(plan.results, plan.profile)  # after the first launch checked every input; before any decision
        if stopped is not None:
            return stopped
        extend = cells_to_extend(plan.spec, plan.results, plan.profile, plan.overrides, design)
        if not extend:
            log_line("every ordering is decided, or cannot be within --max-seeds")
            return None
    log_line(f"the budget of {design.max_seeds} seeds per cell is spent")
    return None


def _validated_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with every flag checked on its own and against the others."""
    args = build_parser().parse_args(argv)
    if args.list:
        return args
    if args.spec is None:
        raise UsageError("python -m experiments.run: a spec is required (see --list)")
    if args.json and not args.dry_run:
        raise UsageError("--json: only meaningful with --dry-run")
    for flag, value in (("--seeds", args.seeds), ("--max-parallel", args.max_parallel),
                        ("--runs-per-gpu", args.runs_per_gpu), ("--runs-per-task", args.runs_per_task)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}: {value}: expected an integer >= 1")
    for flag, number in (("--device-tflops", args.device_tflops), ("--budget-gpu-hours", args.budget_gpu_hours)):
        if number is not None and not (math.isfinite(number) and number > 0):
            raise UsageError(f"{flag}: {number}: expected a number > 0")
    if args.wait and args.executor != "slurm":
        raise UsageError("--wait: only meaningful with --executor slurm (local runs always wait)")
    if args.runs_per_task is not None and args.executor != "slurm":
        raise UsageError("--runs-per-task: only meaningful with --executor slurm (the local executor shares a GPU "
                         "with --runs-per-gpu)")
    if args.until_resolved != (args.max_seeds is not None):
        raise UsageError("--until-resolved and --max-seeds: give both (the rounds need their budget) or neither")
    if args.max_seeds is not None and args.max_seeds < 2:
        raise UsageError(f"--max-seeds: {args.max_seeds}: expected an integer >= 2")
    if args.only and args.until_resolved:
        raise UsageError("--only and --until-resolved: the rounds choose their runs from the whole spec; give one")
    return args


@dataclass(frozen=True)
class _Plan:
    """Every input of a launch, validated: the spec, the profile, the overrides, the runs (for a
    sequential launch, every run it may train), the cluster and the sequential design, if any."""

    spec: Spec
    profile: Profile
    overrides: dict
    runs: list[PlannedRun]
    cluster: ClusterProfile | None
    design: SequentialDesign | None
    results: Path  # absolute
    notes: list[str]  # rows the profile made another row's run (`experiments.plan.collapsed_rows`)


def _plan(args: argparse.Namespace) -> _Plan:
    """The spec (its paper numbers checked too), its planned runs under the profile and overrides, and
    the cluster profile of a SLURM launch: every input is validated before anything runs."""
    spec = load_spec(args.spec)
    read_paper_results(spec)
    profile = load_profile(args.profile)
    overrides = parse_overrides(args.overrides)
    planned = expand(spec, profile, overrides, seeds=args.seeds)
    if args.only:
        planned = select(planned, parse_overrides(args.only, "--only", SELECT_FIELDS), spec)
    cluster = _cluster(args, planned)
    design = _sequential_design(args, spec, profile, planned)
    if design is not None:
        planned = worst_case_runs(spec, profile, overrides, design)
    results = (args.results or profile.default_results()).absolute()
    return _Plan(spec, profile, overrides, planned, cluster, design, results, collapsed_rows(spec, profile, overrides))


def _cluster(args: argparse.Namespace, planned: list[PlannedRun]) -> ClusterProfile | None:
    """The cluster profile of a SLURM launch, --runs-per-task applied; every run's world_size checked
    against its nodes."""
    if args.executor != "slurm":
        return None
    cluster = load_cluster(args.cluster)
    if args.runs_per_task is not None:
        cluster = dataclasses.replace(cluster, runs_per_task=args.runs_per_task)
    for run in planned:
        cluster.topology(run.config.world_size, run.run_id)
    return cluster


def _sequential_design(args: argparse.Namespace, spec: Spec, profile: Profile,
                       planned: list[PlannedRun]) -> SequentialDesign | None:
    """The design of a `--until-resolved` launch: rounds from the spec's seeds up to --max-seeds."""
    if not args.until_resolved:
        return None
    if not spec.table.baseline:
        raise UsageError(f"--until-resolved: spec {spec.name} has no table.baseline: it makes no ordering to "
                         "resolve")
    seeds = sorted({p.config.seed for p in planned})
    if seeds != list(range(len(seeds))):
        raise UsageError(f"--until-resolved: the seeds {seeds} are not 0..n-1: the rounds add seeds after them")
    if args.max_seeds < len(seeds):
        raise UsageError(f"--max-seeds: {args.max_seeds}: expected at least the {len(seeds)} seeds the first "
                         "round runs")
    return SequentialDesign(spec.name, profile.source, len(seeds), args.max_seeds)


def _estimating_device(args: argparse.Namespace, profile: Profile, cluster: ClusterProfile | None) -> str:
    """Dry runs plan GPU-hours (what a cluster allocation is asked in), except for a profile of
    generated data (smoke), which exists to run on a CPU, and a cluster of CPU nodes; a launch is
    estimated on the device that will train it."""
    if cluster is not None:
        return "cuda" if cluster.gpus_per_task else "cpu"
    if args.dry_run:
        return "cpu" if profile.data else "cuda"
    import torch  # deferred: only a local launch asks whether this machine has a GPU
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _rate_book(args: argparse.Namespace, plan: _Plan, device_type: str) -> RateBook:
    """The rates of this launch's device: given, measured (the rates file and every finished run of
    the results folder), or assumed for the cluster's GPU or this machine's."""
    gpu = None
    if device_type == "cuda":
        gpu = plan.cluster.gpu if plan.cluster is not None else local_gpu_name()
    measured = read_measurements(rates_folder(plan.results, plan.profile)) + run_measurements(store.all_runs(plan.results))
    return RateBook(device_type, gpu, measured, args.device_tflops)


def _estimates(plan: _Plan, runs: list[PlannedRun], book: RateBook) -> list[Estimate]:
    """Each run's size and cost, with the state its folder in the store has."""
    rows = estimate(runs, book)
    for row, path in zip(rows, store.run_dirs(plan.results, [row.run_id for row in rows])):
        if path.is_dir():
            record = store.read_run(path)
            row.state, row.planned_by = record.state, record.spec
    return rows


def _print_dry_run(plan: _Plan, estimates: list[Estimate], book: RateBook, args: argparse.Namespace) -> None:
    """The runs and their cost; for a sequential launch, every run it may train (its worst case) and
    the rounds it is expected to run within the budget; on a cluster, where each run goes (its nodes
    and array task) and the GPU-hours with and without packing."""
    device_type, as_json = book.device_type, args.json
    tasks = [] if plan.cluster is None else place_runs(
        [e.load() for e in estimates if e.state not in ("done", "diverged")], plan.cluster)
    places = {name: (i, task) for i, task in enumerate(tasks) for name in task.runs}
    if as_json:
        rows = [r.to_json() for r in estimates]
        if plan.cluster is not None:
            for row in rows:
                i, task = places.get(row["run_id"], (None, None))
                row["slurm"] = None if task is None else {"array_task": i, "nodes": task.topology.nodes,
                                                          "runs_in_task": len(task.runs)}
        print(json.dumps(rows, indent=2))
        return
    print(f"{plan.spec.name}: {plan.spec.title} ({plan.spec.paper_ref}), {plan.profile.describe()}; "
          f"results in {plan.results}")
    for note in plan.notes:
        print(f"note: {note}")
    shown = None if plan.cluster is None else {name: (task.topology.nodes, i) for name, (i, task) in places.items()}
    print(format_estimates(estimates, {"cuda": "GPU", "cpu": "CPU"}[device_type], shown))
    print("training recipes (docs/recipes.md):", *recipe_lines([e.config for e in estimates]), sep="\n")
    done = [e for e in estimates if e.state in ("done", "diverged")]
    shared = Counter(e.planned_by for e in done if e.planned_by not in (None, plan.spec.name))
    if done:
        print(f"{len(done)} of {len(estimates)} runs are done" + (
            ", of which " + ", ".join(f"{n} first planned by {name}" for name, n in sorted(shared.items()))
            if shared else "") + ": a network is trained once for every spec that lists it")
    if tasks:
        print(_cluster_lines(plan.cluster, tasks, estimates))
    unit, budget = _unit(device_type), args.budget_gpu_hours
    if plan.design is not None:
        print(*_round_lines(plan, book, budget), sep="\n")
    elif budget is not None:
        todo = sum(e.est_seconds for e in estimates if e.state not in ("done", "diverged"))
        verdict = "within it" if todo <= budget * 3600 else "over it: a launch refuses to start"
        print(f"--budget-gpu-hours {budget:g}: the runs to train are estimated at {format_duration(todo, unit)}, "
              f"{verdict}")


def _round_lines(plan: _Plan, book: RateBook, budget_hours: float | None) -> list[str]:
    """The rounds of a sequential launch as projected now (`experiments.rounds.plan_rounds`): each
    one's seeds, cells and cost with those before it, the orderings expected decided by its end, and
    whether it fits the budget."""
    from analysis.rounds import plan_rounds  # deferred: imports pandas
    design, unit = plan.design, _unit(book.device_type)
    rounds = plan_rounds(plan.spec, plan.results, plan.profile, plan.overrides, design)
    lines = [f"--until-resolved: rounds of up to {', '.join(map(str, design.looks))} seeds per cell at levels "
             f"{', '.join(f'{a:.4g}' for a in design.levels)}; expected decisions: the paper's differences at each "
             "round's level, with the seed noise of the runs stored (else the planning prior), unpaired; the "
             "worst case (every ordering unresolved to the end) is the table above"]
    stopped = False
    for r in rounds:
        seconds = sum(e.est_seconds for e in estimate(r.runs, book))
        stopped = stopped or (budget_hours is not None and seconds > budget_hours * 3600)
        what = f"{r.seeds} seeds per cell, {r.cells} cells" if r.look == 0 else f"{r.seeds} seeds for {r.cells} cells"
        fit = "" if budget_hours is None else (f"; over --budget-gpu-hours {budget_hours:g}: not run" if stopped
                                               else f"; within --budget-gpu-hours {budget_hours:g}")
        lines.append(f"  round {r.look + 1}: {what}: {len(r.runs)} runs, {format_duration(seconds, unit)} with the "
                     f"rounds before; expected decided: {r.decided} of {r.orderings} orderings{fit}")
    if len(rounds) < len(design.looks):
        lines.append(f"  no round {len(rounds) + 1}: no ordering left that more seeds are expected to decide within "
                     f"--max-seeds {design.max_seeds} (a launch still follows those its runs leave unresolved)")
    return lines


def _cluster_lines(cluster: ClusterProfile, tasks: list[ArrayTask], estimates: list[Estimate]) -> str:
    """What the runs to train take on `cluster`: array tasks, and GPU-hours packed and not."""
    unpacked = sum(e.est_seconds for e in estimates if e.state not in ("done", "diverged")) / 3600
    packed = sum(t.seconds for t in tasks) / 3600
    head = (f"on cluster {cluster.name!r}: {sum(len(t.runs) for t in tasks)} runs to train as {len(tasks)} array "
            f"tasks (the task column; nodes: each task's nodes), runs_per_task = {cluster.runs_per_task}")
    if cluster.runs_per_task == 1:
        return (f"{head}\n{unpacked:.2f} GPU-hours, one run per task (--runs-per-task N packs N runs of world_size 1 "
                "on a GPU)")
    if all(len(t.runs) == 1 for t in tasks):
        return f"{head}\n{unpacked:.2f} GPU-hours, one run per task (no two runs of world_size 1 to pack)"
    return (f"{head}\n{packed:.2f} GPU-hours packed, {unpacked:.2f} GPU-hours one run per task: a packed task holds "
            "its GPU as long as its longest run, if the runs sharing it do not slow each other down (measure it "
            "with --runs-per-gpu on one GPU)")


def _report(plan: _Plan) -> int:
    """Tables, figures and REPORT.md; exit status 1 when a run of the spec failed."""
    from analysis.report import StoreReading, write_index, write_spec_report  # deferred: imports pandas and matplotlib
    reading = StoreReading(plan.results)
    for path in write_spec_report(plan.spec, plan.results, plan.profile, plan.overrides, reading):
        log_line(f"wrote {path}")
    log_line(f"wrote {write_index(plan.results, reading)}")
    states = [r.state for r in store.runs_of(reading.records, plan.runs)]
    return 1 if "failed" in states else 0


if __name__ == "__main__":
    sys.exit(main())
