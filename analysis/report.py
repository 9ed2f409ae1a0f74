"""Regenerate tables, figures and REPORT.md from the run store; never trains.

    python -m analysis.report SPEC [--results DIR]     one spec (a shipped name or a spec file)
    python -m analysis.report --all [--results DIR]    every shipped spec that has runs

Writes <results>/tables/<spec>.{md,tex,csv} (+ <spec>.vs_baseline.csv for ablations, <spec>.runs.csv:
one row per run folder), <results>/figures/<spec>_<kind>.{png,pdf} and <results>/REPORT.md, one page
linking all of them with a line per spec on how many runs are done. The experiments runner calls
`write_spec_report` and `write_index` at the end of a launch.

A results folder without runs of the spec is an input error: one line on stderr saying how to produce
them, exit code 2, nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from analysis.collect import Collection, collect_spec
from analysis.figures import figure_stem, write_figures
from analysis.paper import read_paper_results
from analysis.tables import build_table, write_tables
from analysis.verdicts import SequentialDesign
from experiments.profiles import load_profile
from experiments.spec import list_specs, load_spec
from experiments.store import runs_root, spec_runs
from wrn.cli import ArgumentParser, run_main
from wrn.errors import UserError
from wrn.files import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO_ROOT / "results"
REPORT = "REPORT.md"
TIMING_ERROR_DATASET = "cifar10"  # Figure 4 labels its bars with the CIFAR-10 test error
RUN_LIST_COLUMNS = ["run_id", "label", "seed", "dataset", "state", "reason", "epochs_done", "test_error",
                    "time_ms", "params", "epoch_time_s", "diverged_epoch", "git_commit", "device_name",
                    "finished_at"]


def tables_dir(results: Path) -> Path:
    return Path(results) / "tables"


def figures_dir(results: Path) -> Path:
    return Path(results) / "figures"


def _excluded_markdown(collection: Collection) -> str:
    """The runs that are in no median, each with its state and reason."""
    excluded = collection.excluded
    lines = ["", f"### Runs: {collection.summary_line()}", ""]
    if excluded.empty:
        return "\n".join(lines + ["Every run folder is finished and counted.", ""])
    lines += ["Not in any median:", ""]
    for _, run in excluded.iterrows():
        seed = f" seed {int(run['seed'])}" if pd.notna(run.get("seed")) else ""
        where = f" on {run['dataset']}" if pd.notna(run.get("dataset")) else ""
        reason = f": {run['reason']}" if run.get("reason") else ""
        lines.append(f"- `{run['run_id']}` {run['label'] or '(unknown network)'}{where}{seed}: "
                     f"**{run['state']}**{reason}")
    return "\n".join(lines + [""])


def timing_error_labels(results: Path, labels: list[str]) -> dict[str, float]:
    """Each network's CIFAR-10 test error (median of finished runs) from the first shipped train spec
    that has it, for Figure 4's bar labels; networks nobody has trained are left out."""
    found: dict[str, float] = {}
    for spec in list_specs():
        if spec.kind != "train" or not spec_runs(results, spec.name):
            continue
        finished = collect_spec(spec, results).finished
        finished = finished[(finished["dataset"] == TIMING_ERROR_DATASET) & finished["label"].isin(labels)]
        for label, errors in finished.groupby("label")["test_error"]:
            found.setdefault(label, float(errors.median()))
    return found


def write_spec_report(spec, results: Path, profile: str = "paper") -> list[Path]:
    """Tables and figures of one spec from the runs under `results`; returns the files written.
    `profile` is the plan that progress ("n of m planned runs done") is counted against."""
    results = Path(results)
    collection = collect_spec(spec, results, profile)
    table = build_table(spec, collection, SequentialDesign.read(results, spec.name, profile))
    written = write_tables(table, tables_dir(results), appendix=_excluded_markdown(collection))
    runs_csv = tables_dir(results) / f"{spec.name}.runs.csv"
    columns = [c for c in RUN_LIST_COLUMNS if c in collection.runs.columns]
    atomic_write_text(runs_csv, collection.runs[columns].to_csv(index=False))
    written.append(runs_csv)
    labels = None
    if any(f.kind == "timing_bars" for f in spec.figures):
        labels = timing_error_labels(results, list(table.cells["label"].dropna()))
    written += write_figures(spec, table, collection, figures_dir(results), labels)
    return written


def _links(results: Path, spec) -> str:
    parts = []
    for suffix, name in ((".md", "table"), (".tex", "LaTeX"), (".csv", "CSV"), (".vs_baseline.csv", "vs baseline"),
                         (".runs.csv", "runs")):
        path = tables_dir(results) / f"{spec.name}{suffix}"
        if path.exists():
            parts.append(f"[{name}](tables/{path.name})")
    for index, fig in enumerate(spec.figures):
        stem = figure_stem(spec.name, index, fig, spec.figures)
        if (figures_dir(results) / f"{stem}.png").exists():
            parts.append(f"[{fig.kind}](figures/{stem}.png) ([PDF](figures/{stem}.pdf))")
    return " · ".join(parts)


def write_index(results: Path, profile: str = "paper") -> Path:
    """<results>/REPORT.md: one line per shipped spec (progress under `profile`, links), what the seeds
    decide about each of its orderings, and every figure inline."""
    results = Path(results)
    lines = ["# Wide Residual Networks: reproduction report", "",
             "Generated by `python -m analysis.report --all` from the run store; our value is the median "
             "over finished runs (the paper's statistic) with an order-statistic interval labelled with its "
             "coverage. How to read the verdicts: README.md, \"Reading the verdicts\".", "", "## Specs", ""]
    figures = []
    for spec in list_specs():
        records = spec_runs(results, spec.name)
        if not records:
            lines.append(f"- **{spec.title}** (`{spec.name}`): no runs yet (`python -m experiments.run {spec.name}`)")
            continue
        collection = collect_spec(spec, results, profile)
        lines.append(f"- **{spec.title}** (`{spec.name}`): {collection.summary_line()}. {_links(results, spec)}")
        table = build_table(spec, collection, SequentialDesign.read(results, spec.name, profile))
        lines += [f"  - {sentence}" for sentence in table.sentences]
        for index, fig in enumerate(spec.figures):
            stem = figure_stem(spec.name, index, fig, spec.figures)
            if (figures_dir(results) / f"{stem}.png").exists():
                figures.append(f"![{fig.title or spec.title}](figures/{stem}.png)")
    if figures:
        lines += ["", "## Figures", "", *[f + "\n" for f in figures]]
    path = results / REPORT
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="python -m analysis.report",
                            description="Tables, figures and REPORT.md from the run store.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("spec", nargs="?", help="a shipped spec name or a spec file")
    target.add_argument("--all", action="store_true", help="every shipped spec that has runs")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results/)")
    parser.add_argument("--profile", default="paper",
                        help="the profile whose plan progress is counted against (default: paper)")
    args = parser.parse_args(argv)
    specs = list_specs() if args.all else [load_spec(args.spec)]
    for spec in specs:
        read_paper_results(spec)
    load_profile(args.profile)
    produce = (f"produce them with: python -m experiments.run {'SPEC' if args.all else args.spec}"
               + (f" --results {args.results}" if args.results != DEFAULT_RESULTS else ""))
    if not runs_root(args.results).is_dir():
        raise UserError(f"{args.results} holds no runs ({runs_root(args.results)} does not exist); {produce}")
    with_runs = [s for s in specs if spec_runs(args.results, s.name)]
    if not with_runs:
        which = "any spec" if args.all else f"spec {specs[0].name}"
        raise UserError(f"{args.results} holds no runs of {which}; {produce}")
    for spec in with_runs:
        for path in write_spec_report(spec, args.results, args.profile):
            print(f"wrote {path}")
    print(f"wrote {write_index(args.results, args.profile)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
