"""Where each run of a spec stands, from the run store (and SLURM, for runs submitted to a cluster).

    python -m experiments.status table_width                      # the paper profile's runs
    python -m experiments.status table_block_type --profile smoke --results /scratch/results

States: to do (no run folder yet), queued (submitted, not started or waiting to be requeued), running
(its lock is live), interrupted (stopped with a checkpoint, resumable), done, diverged, failed (with the
tail of its error), corrupt. A SLURM job that ended without a result (cancelled, killed, out of
requeues) is recorded as failed here, so a relaunch of the spec resubmits exactly the failed and
missing runs.

A run submitted to SLURM shows its array task ("12_3"), with "W ranks on N nodes" for a distributed run
and "packed: K runs" for a run sharing its task (and GPU) with others; a running one lists its logs
(each rank's for a distributed run), a failed one the tail of each.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from pathlib import Path

from experiments import store
from experiments.plan import PlannedRun, expand, parse_overrides
from experiments.profiles import load_profile
from experiments.slurm import reconcile, run_logs
from experiments.spec import load_spec
from wrn.cli import ArgumentParser, run_main
from wrn.errors import UsageError

SHOWN = {"todo": "to do"}
TAIL_LINES = 6


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m experiments.status", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="a spec name or the path of a spec .toml file")
    p.add_argument("--results", type=Path, default=None,
                   help="the launch's results folder (default: results/, or results/<profile>/ for any profile "
                        "but paper)")
    p.add_argument("--profile", default="paper", help="the profile the spec was launched with (default: paper)")
    p.add_argument("--seeds", type=int, default=None, help="as given to experiments.run, if it was")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="as given to experiments.run, if it was (repeatable)")
    return p


def _note(rec: store.RunRecord) -> str:
    result = rec.result
    if result is not None and result.diverged is not None:
        return f"diverged at epoch {result.diverged.epoch}, step {result.diverged.step}"
    if result is not None and result.final is not None:
        return f"test error {result.final.test_error:.2f}%"
    return rec.reason if rec.state in ("failed", "interrupted", "corrupt") else ""


def _job(slurm: store.SlurmSubmission | None) -> str:
    """A run's SLURM array task, and how it is shared or spread."""
    if not slurm:
        return ""
    job = slurm.job_id
    if len(slurm.packed) > 1:
        return f"{job} (packed: {len(slurm.packed)} runs)"
    if slurm.tasks > 1:
        nodes = slurm.nodes
        return f"{job} ({slurm.tasks} ranks on {nodes} node{'s' if nodes > 1 else ''})"
    return job


def _details(rec: store.RunRecord) -> list[str]:
    """The lines under a run's row: a failed run's error and log tails, a running SLURM run's logs."""
    if rec.state == "failed" and rec.failure:
        lines = [f"    | {t}" for t in rec.failure.traceback_tail.rstrip().splitlines()[-TAIL_LINES:]]
        for log in rec.failure.logs:
            lines.append(f"    {log.name}: {log.path}")
            lines += [f"    | {t}" for t in log.tail.splitlines()[-TAIL_LINES:]]
        return lines
    if rec.state == "running" and rec.slurm:
        return [f"    {name}: {path}" for name, path in run_logs(rec.slurm)]
    return []


def status_lines(spec_name: str, planned: list[PlannedRun], results: Path, relaunch: list[str]) -> list[str]:
    """The status table of `planned` under `results`, one string per line; `relaunch` is the command
    (its words) that launches the plan again."""
    paths = store.run_dirs(results, [p.run_id for p in planned])
    existing = [p for p in paths if p.is_dir()]
    records = {r.path: r for r in reconcile(existing)}
    rows, details = [], []
    for plan, path in zip(planned, paths):
        rec = records.get(path) or store.RunRecord(path=path, run_id=plan.run_id, state="todo")
        epochs = plan.config.epochs if plan.timing is None else None
        rows.append((SHOWN.get(rec.state, rec.state), plan.run_id, plan.label, plan.config.dataset,
                     str(plan.config.seed),
                     f"{rec.epochs_done}/{epochs}" if epochs else "-", _job(rec.slurm), _note(rec)))
        details.append(_details(rec))
    counts = Counter(r[0] for r in rows)
    header = ("state", "run_id", "label", "dataset", "seed", "epochs", "job", "note")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    order = ["running", "queued", "interrupted", "to do", "done", "diverged", "failed", "corrupt"]
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
    lines = [f"{spec_name}: {len(rows)} runs: {summary}", fmt(header)]
    for row, detail in zip(rows, details):
        lines.append(fmt(row))
        lines += detail
    lines += _other_runs(spec_name, planned, results)
    if counts["failed"] or counts["to do"] or counts["interrupted"]:
        clusters = sorted({r.slurm.cluster for r in records.values() if r.slurm and r.slurm.cluster})
        if clusters:  # the runs went to a cluster: so do the ones launched again
            relaunch = [*relaunch, "--executor", "slurm", "--cluster", clusters[0]]
        lines.append(f"launching again runs only the {counts['failed']} failed, {counts['interrupted']} "
                     f"interrupted and {counts['to do']} missing runs: {shlex.join(relaunch)}")
    return lines


def relaunch_words(args: argparse.Namespace, results: Path) -> list[str]:
    """The `experiments.run` command that plans what this status command shows, every planning flag
    included (the results folder absolute: it names the same folder from anywhere)."""
    words = ["python", "-m", "experiments.run", args.spec, "--profile", args.profile, "--results", str(results)]
    words += [f"--seeds={args.seeds}"] if args.seeds is not None else []
    return words + [f"--set={item}" for item in args.overrides]


def _other_runs(spec_name: str, planned: list[PlannedRun], results: Path) -> list[str]:
    """Runs of the plan's networks with seeds it does not list, and runs the spec planned under
    another profile or other overrides: counted, so that no run goes unseen."""
    ids = {p.run_id for p in planned}
    records = store.all_runs(results)
    of_plan = store.runs_of(records, planned)
    mine = {r.run_id for r in of_plan}
    more_seeds = [r for r in of_plan if r.run_id not in ids]
    elsewhere = [r for r in records if r.spec == spec_name and r.run_id not in mine]
    lines = []
    if more_seeds:
        lines.append(f"({len(more_seeds)} more runs of these networks with other seeds, in the tables too)")
    if elsewhere:
        lines.append(f"({len(elsewhere)} more run folders under {results} were planned by {spec_name} under another "
                     "profile or --set: not in these tables)")
    return lines


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds: {args.seeds}: expected an integer >= 1")
    spec = load_spec(args.spec)
    profile = load_profile(args.profile)
    planned = expand(spec, profile, parse_overrides(args.overrides), seeds=args.seeds)
    results = (args.results or profile.default_results()).absolute()
    print("\n".join(status_lines(spec.name, planned, results, relaunch_words(args, results))))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
