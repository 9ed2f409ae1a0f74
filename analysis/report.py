"""Regenerate tables, figures and REPORT.md from the run store; never trains.

    python -m analysis.report SPEC [--results DIR] [--profile P] [--set K=V]   one spec (a name or a file)
    python -m analysis.report --all [--results DIR] [--profile P]              every spec that has runs

Without --results it reports the profile's default results folder, or without --profile every default
folder that holds runs: results/ and results/<profile>/ (where `experiments.run` writes by default).

The runs of a spec are those of the networks it plans under a profile (`experiments.store.runs_of`),
whichever spec trained them. Every profile whose runs a results folder holds is reported on its own
(or only the one `--profile` names), and every file says which: tables/<stem>.{md,tex,csv} (+
<stem>.vs_baseline.csv for ablations, <stem>.runs.csv: one row per run), figures/<stem>_<kind>.{png,pdf},
where the stem is the spec's name for the paper profile and "<spec>.<profile>" for any other; and
REPORT.md, one page with a section per profile linking all of them, with a line per spec on how many
runs are done and what its seeds decide. "Every spec" is the shipped specs and the user specs that
launches kept in <results>/specs/. The experiments runner calls `write_spec_report` and
`write_index` at the end of a launch.

A results folder without runs of the spec is an input error: one line on stderr saying how to produce
them, exit code 2, nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from analysis.collect import Collection, collect_spec
from analysis.costs import cost_checks
from analysis.figures import figure_stem, write_figures
from analysis.paper import read_paper_results
from analysis.tables import SpecTable, build_table, csv_text, write_tables
from experiments import store
from experiments.plan import expand, parse_overrides
from experiments.profiles import PAPER, Profile, load_profile, profile_names
from experiments.rates import rates_folder
from experiments.schema import SpecError
from experiments.sequential import SequentialDesign
from experiments.spec import Spec, list_specs, load_spec, shipped_names
from wrn.cli import ArgumentParser, run_main
from wrn.errors import UserError
from wrn.files import atomic_write_text

REPORT = "REPORT.md"
TIMING_ERROR_DATASET = "cifar10"  # Figure 4 labels its bars with the CIFAR-10 test error
RUN_LIST_COLUMNS = ["run_id", "label", "seed", "dataset", "data_source", "state", "reason", "epochs_done",
                    "test_error", "time_ms", "params", "epoch_time_s", "diverged_epoch", "planned_by", "git_commit",
                    "device_name", "runtime_precision", "finished_at"]


def tables_dir(results: Path) -> Path:
    return Path(results) / "tables"


def figures_dir(results: Path) -> Path:
    return Path(results) / "figures"


def kept_specs(results: Path) -> list[Spec]:
    """The user specs that launches kept in <results>/specs/."""
    return [load_spec(path) for path in sorted((Path(results) / "specs").glob("*.toml"))
            if path.stem not in shipped_names()]


def profiles_present(records: list[store.RunRecord]) -> list[Profile]:
    """The profiles the runs were launched under, the paper's first; runs recorded before profiles were
    may be of any shipped profile, so those are all tried."""
    sources = {r.profile for r in records if r.profile is not None}
    if any(r.profile is None for r in records):
        sources.update(profile_names())
    present = []
    for source in sorted(sources, key=lambda source: (source != PAPER, source)):
        try:
            present.append(load_profile(source))
        except SpecError as e:  # a user's profiles file moved or changed since: report the others
            print(f"warning: runs of profile {source} are not reported: {e}", file=sys.stderr)
    return present


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


class StoreReading:
    """One reading of a results folder for one report: its run records, and each spec's collection and
    table under a profile, built once however many parts of the report show them (a spec's own files,
    REPORT.md, Figure 4's error labels). A store of thousands of runs takes seconds to collect."""

    def __init__(self, results: Path, records: list[store.RunRecord] | None = None):
        self.results = Path(results)
        self.records = store.all_runs(self.results) if records is None else records
        self._built: dict[tuple, tuple[Collection, SpecTable]] = {}

    def collection(self, spec: Spec, profile: Profile, overrides: dict | None = None) -> Collection:
        return self.table(spec, profile, overrides)[0]

    def table(self, spec: Spec, profile: Profile, overrides: dict | None = None) -> tuple[Collection, SpecTable]:
        """The collection of `spec`'s runs under `profile` and `overrides`, and the table built from it."""
        key = (spec.name, profile.source, repr(sorted((overrides or {}).items())))
        if key not in self._built:
            collection = collect_spec(spec, self.results, profile, overrides, self.records)
            self._built[key] = collection, build_table(spec, collection, SequentialDesign.read(self.results, spec.name,
                                                                                              profile))
        return self._built[key]


def timing_error_labels(profile: Profile, labels: list[str], reading: StoreReading) -> dict[str, float]:
    """Each network's CIFAR-10 test error (median of finished runs under `profile`) from the first
    shipped train spec that has it, for Figure 4's bar labels; networks nobody has trained are left out."""
    found: dict[str, float] = {}
    for spec in list_specs():
        if spec.kind != "train":
            continue
        finished = reading.collection(spec, profile).finished
        finished = finished[(finished["dataset"] == TIMING_ERROR_DATASET) & finished["label"].isin(labels)]
        for label, errors in finished.groupby("label")["test_error"]:
            found.setdefault(label, float(errors.median()))
    return found


def write_spec_report(spec: Spec, results: Path, profile: Profile | str = PAPER, overrides: dict | None = None,
                      reading: StoreReading | None = None) -> list[Path]:
    """Tables and figures of one spec from its runs under `results`, planned under `profile` and
    `overrides`; returns the files written. `reading`: the folder as this report has read it."""
    results = Path(results)
    profile = profile if isinstance(profile, Profile) else load_profile(profile)
    reading = StoreReading(results) if reading is None else reading
    collection, table = reading.table(spec, profile, overrides)
    stem = profile.output_stem(spec.name)
    written = write_tables(table, tables_dir(results), stem, appendix=_excluded_markdown(collection))
    runs_csv = tables_dir(results) / f"{stem}.runs.csv"
    columns = [c for c in RUN_LIST_COLUMNS if c in collection.runs.columns]
    atomic_write_text(runs_csv, csv_text(collection.runs[columns]))
    written.append(runs_csv)
    labels = None
    if any(f.kind == "timing_bars" for f in spec.figures):
        labels = timing_error_labels(profile, list(table.cells["label"].dropna()), reading)
    written += write_figures(spec, table, collection, figures_dir(results), profile.suffix, labels)
    return written


def _links(results: Path, spec: Spec, profile: Profile) -> str:
    parts, stem = [], profile.output_stem(spec.name)
    for suffix, name in ((".md", "table"), (".tex", "LaTeX"), (".csv", "CSV"), (".vs_baseline.csv", "vs baseline"),
                         (".runs.csv", "runs")):
        path = tables_dir(results) / f"{stem}{suffix}"
        if path.exists():
            parts.append(f"[{name}](tables/{path.name})")
    for index, fig in enumerate(spec.figures):
        name = figure_stem(spec.name, index, fig, spec.figures) + profile.suffix
        if (figures_dir(results) / f"{name}.png").exists():
            parts.append(f"[{fig.kind}](figures/{name}.png) ([PDF](figures/{name}.pdf))")
    return " · ".join(parts)


def write_index(results: Path, reading: StoreReading | None = None) -> Path:
    """<results>/REPORT.md: a section per profile present, with a line per spec (progress, links), what
    its seeds decide about each of its orderings, and its figures."""
    results = Path(results)
    reading = StoreReading(results) if reading is None else reading
    lines = ["# Wide Residual Networks: reproduction report", "",
             "Generated by `python -m analysis.report --all` from the run store; our value is the median "
             "over finished runs (the paper's statistic) with an order-statistic interval labelled with its "
             "coverage. How to read the verdicts: docs/verdicts.md. Each profile is "
             "reported on its own: only the paper profile's runs reproduce the paper.", ""]
    specs = [*list_specs(), *kept_specs(results)]
    for profile in profiles_present(reading.records) or [load_profile(PAPER)]:
        lines += _profile_section(reading, profile, specs)
    path = results / REPORT
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def _profile_section(reading: StoreReading, profile: Profile, specs: list[Spec]) -> list[str]:
    results = reading.results
    lines = [f"## {profile.describe().capitalize()}", ""]
    figures = []
    for spec in specs:
        try:
            collection, table = reading.table(spec, profile)
        except SpecError as e:  # a spec that cannot be planned under this profile: the others still report
            lines.append(f"- **{spec.title}** (`{spec.name}`): not reported under this profile: {e}")
            continue
        if collection.runs.empty:
            lines.append(f"- **{spec.title}** (`{spec.name}`): no runs yet (`python -m experiments.run "
                         f"{spec.name}{'' if profile.name == PAPER else ' --profile ' + profile.source}`)")
            continue
        lines.append(f"- **{spec.title}** (`{spec.name}`): {collection.summary_line()}; {collection.describe()}. "
                     f"{_links(results, spec, profile)}")
        costs = [check.sentence() for check in cost_checks(collection, rates_folder(results, profile))]
        lines += [f"  - {sentence}" for sentence in [*costs, *table.sentences, *table.official_logs]]
        for index, fig in enumerate(spec.figures):
            name = figure_stem(spec.name, index, fig, spec.figures) + profile.suffix
            if (figures_dir(results) / f"{name}.png").exists():
                figures.append(f"![{fig.title or spec.title}, {profile.name}](figures/{name}.png)")
    if figures:
        lines += ["", f"### Figures ({profile.name})", "", *[f + "\n" for f in figures]]
    return [*lines, ""]


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="python -m analysis.report",
                            description="Tables, figures and REPORT.md from the run store.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("spec", nargs="?", help="a shipped spec name or a spec file")
    target.add_argument("--all", action="store_true",
                        help="every spec that has runs: the shipped ones and those kept in <results>/specs/")
    parser.add_argument("--results", type=Path, default=None,
                        help="results folder (default: the --profile's, results/ or results/<profile>/; without "
                             "--profile, every one of those that holds runs)")
    parser.add_argument("--profile", default=None,
                        help="report only this profile's runs (default: every profile the folder holds runs of)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="with SPEC: as given to experiments.run, if it was (repeatable)")
    args = parser.parse_args(argv)
    profile = None if args.profile is None else load_profile(args.profile)
    overrides = parse_overrides(args.overrides)
    if overrides and args.all:
        raise UserError("--set: give it with one SPEC, as it was given to experiments.run")
    written_any = False
    for results in _folders(args.results, profile):
        specs = [*list_specs(), *kept_specs(results)] if args.all else [load_spec(args.spec)]
        for spec in specs:
            read_paper_results(spec)
        reading = StoreReading(results)
        reports = [(spec, p) for p in ([profile] if profile else profiles_present(reading.records)) for spec in specs
                   if store.runs_of(reading.records, _planned(spec, p, overrides,
                                                              strict=profile is not None and not args.all))]
        for spec, p in reports:
            for path in write_spec_report(spec, results, p, overrides, reading):
                print(f"wrote {path}")
        if reports:
            print(f"wrote {write_index(results, reading)}")
            written_any = True
    if not written_any:
        raise UserError(_no_runs(args, profile))
    return 0


def _planned(spec: Spec, profile: Profile, overrides: dict, strict: bool) -> list:
    """The runs of `spec` under `profile`; when it cannot be planned under the profile, none, so that a
    report of other specs or profiles goes on, unless `strict` (the command named both: the error is
    then the answer)."""
    try:
        return expand(spec, profile, overrides)
    except SpecError:
        if strict:
            raise
        return []


def _folders(results: Path | None, profile: Profile | None) -> list[Path]:
    """The results folders to report: the one named; else the profile's default folder; else every
    default folder that exists, results/ and results/<profile>/ of each shipped profile."""
    if results is not None:
        return [results]
    if profile is not None:
        return [profile.default_results()]
    defaults = [load_profile(name).default_results() for name in profile_names()]
    return [folder for folder in dict.fromkeys(defaults) if store.run_folders(folder)] or [Path("results")]


def _no_runs(args, profile: Profile | None) -> str:
    which = "any spec" if args.all else f"spec {args.spec}"
    if args.results is None and profile is None:
        where = "neither results/ nor any results/<profile>/ holds runs"
    else:
        under = f" under profile {profile.name}" if profile else ""
        where = f"{args.results or profile.default_results()} holds no runs{under}"
    return (f"{where} of {which}; produce them with: python -m experiments.run "
            f"{'SPEC' if args.all else args.spec}" + (f" --profile {profile.source}" if profile else ""))


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
