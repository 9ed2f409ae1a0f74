"""Our numbers next to the paper's, in the paper's table layout: Markdown, LaTeX and CSV.

A *cell* is one network configuration (every resolved config field except the seed) on one table
column (e.g. one dataset). Its value is the median of its finished runs, the paper's statistic
(Tables 2, 3, 5, 6), shown with n and an order-statistic interval of the median labelled with its true
coverage (`analysis.stats`); next to it the paper's value, the delta (ours - paper) and the verdict
of `analysis.verdicts` on what the two sides' seed noise lets the runs say of the paper's value. Diverged,
failed, corrupt and unfinished runs never enter a median: they appear as a note in their cell
("1 diverged").

Paper values come from the spec's CSV (`analysis.paper`). A paper row belongs to every cell whose
config agrees on all its key columns; a paper row no cell matches (a reference method, or a
configuration nobody has run) is still shown, with the paper's value alone, so the table always has
the paper's rows.

For ablation tables (the spec's ``table.baseline``, a partial config such as {"block": "B(3,3)"}),
each other cell is compared with the baseline cell of its column: the difference, its interval and
p-value, the paper's difference, whether our runs support the paper's ordering, and the seeds per
side that would resolve the paper's difference; in words under the Markdown table. A spec may add a
row of the baseline runs' best test epoch (``table.best_epoch_row``): the same runs, reported as
peers that pick the best epoch would report them, compared with the final epoch like a deviation.

Runs of one network in different precisions (a config whose precision is "auto" run on a GPU and on a
CPU) are different experiments: they get a cell each. A paper number that comes from another recipe
(Table 5's pre-activation ResNets, He et al.'s own runs: the CSV's ``paper_recipe``) is compared only
with runs of that recipe; any other run's verdict is "not comparable".
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import deviations, stats
from analysis.collect import FINISHED, Collection, hashable
from analysis.paper import read_paper_results
from analysis.reference_logs import stage_comparisons
from analysis.verdicts import (NOT_KEY_FIELDS, SEEDS_SHOWN, Ordering, SequentialDesign, baseline_pairs, cell_verdicts, column_value,
                               decide_orderings, draw_group, generated_data, ordering_sentence, unpaired_because)
from experiments.schema import CONFIG_FIELDS
from experiments.spec import DEVIATION, matches
from wrn.config import RunConfig, expected_sizes
from wrn.files import atomic_write_text

# How a metric or field is named in headers and axis labels (units included).
DISPLAY_NAMES = {
    "test_error": "test error (%)", "time_ms": "time per minibatch (ms)", "params": "# params",
    "epoch_time_s": "time per epoch (s)", "train_loss": "training loss", "flops": "FLOPs",
    "label": "network", "block": "block type", "depth": "depth", "k": "k", "dataset": "dataset",
    "dropout": "dropout", "arch": "architecture", "method": "method", "top1_error": "top-1 error (%)",
    "top5_error": "top-5 error (%)",
}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "imagenet": "ImageNet"}
SHORT_DATASET_NAMES = {"cifar10": "C10", "cifar100": "C100", "svhn": "SVHN", "imagenet": "ImageNet"}  # print
# Column heads for print (`compact`): the long ones a printed table cannot afford.
SHORT_HEADS = {"# params (ours)": "params", "time per epoch (s) (ours)": "s/epoch",
               "time per epoch (s) (paper)": "paper s/epoch", "paper's ordering": "ordering", "seeds needed": "needed",
               "seeds for Δ": "needed", "Δ [CI 1−α]": "Δ [CI]", "vs baseline": "verdict", "dataset": "data"}
# What a cell says about the paper's value: left out of the tables of a spec without paper numbers.
PAPER_COMPARISON_COLUMNS = ("paper", "paper_runs", "paper_recipe", "delta", "p_value", "p_adjusted", "alpha",
                            "detectable", "equivalence_margin", "p_equivalence", "verdict_vs_paper")
FINAL_EPOCH, BEST_EPOCH = "final epoch", "best epoch"  # what a cell reports of its runs
PRECISION_KEY = "precision_used"  # the key that keeps runs of different precisions in different cells


def verdict_text(cell: pd.Series, unit: str = "pp", compact: bool = False) -> str:
    """A cell's verdict against the paper as the tables print it: the CSV's word, with what it rests on
    ("indistinguishable (could detect ≥ 0.41 pp)"; `compact`: "indist. (≥ 0.41)")."""
    verdict = cell.get("verdict_vs_paper", "")
    if verdict == stats.INDISTINGUISHABLE:
        if compact:
            return f"indist. (≥ {cell['detectable']:.2f})"
        return f"indistinguishable (could detect ≥ {cell['detectable']:.2f} {unit})"
    if verdict == stats.EQUIVALENT:
        if compact:
            return f"equiv. (±{cell['equivalence_margin']:g})"
        return f"equivalent (within ±{cell['equivalence_margin']:g} {unit})"
    if verdict in (stats.HIGHER, stats.LOWER):
        return verdict.upper()
    if verdict == stats.TOO_FEW:
        if not cell["n"] or compact:
            return "too few" if compact else "too few (no run)"
        return f"too few (σ from {int(cell['sigma_df'])} of {stats.MIN_DF} degrees of freedom)"
    return {stats.NOT_COMPARABLE: "not comparable", stats.NOT_APPLICABLE: "n/a (generated data)"}.get(verdict, "")


def display_name(name: str) -> str:
    return DISPLAY_NAMES.get(name, name.replace("_", " "))


def display_value(field_name: str, value: Any) -> str:
    """A key value as the paper writes it (datasets as CIFAR-10, dropout as a tick or blank)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if field_name == "dataset":
        return DATASET_NAMES.get(str(value), str(value))
    if field_name == "dropout":  # the paper ticks it; the rate is the dataset's (0.3 CIFAR, 0.4 SVHN)
        return "✓" if float(value) > 0 else ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ------------------------------------------------------------------------------------------- layout
@dataclass
class SpecTable:
    """One spec's table: tidy ``cells`` (one row per cell, in the paper's row order), the finished
    values and config of each cell, ``comparisons`` against the baseline, and the layout."""

    spec: str
    title: str
    metric: str
    row_fields: list[str]
    column_field: str | None
    extra: list[str]
    cells: pd.DataFrame
    comparisons: pd.DataFrame
    values: dict[int, dict[int, float]] = field(default_factory=dict)  # cell index -> {seed: finished value}
    baseline: dict[str, Any] | None = None
    description: str = ""  # what the runs are: profile and data, device and precision (`Collection.describe`)
    profile: str = "paper"  # the profile's source, as --profile takes it
    caveat: str = ""  # what makes the runs differ from what the title says (a profile's minibatch, say)
    sentences: list[str] = field(default_factory=list)  # what the seeds decide, per comparison
    orderings: dict[tuple[int, int], Ordering] = field(default_factory=dict)  # (variant, baseline) cell indices
    official_logs: list[str] = field(default_factory=list)  # our curves against the official logs, per network

    @property
    def finished_runs(self) -> int:
        return int(self.cells["n"].sum()) if len(self.cells) else 0

    @property
    def has_paper(self) -> bool:
        """Whether any cell has a number of the paper to set ours against (a user's spec may have none)."""
        columns = ["paper", *(f"paper_{e}" for e in self.extra)]
        return bool(len(self.cells)) and bool(self.cells[columns].notna().to_numpy().any())

    @property
    def metric_label(self) -> str:
        """The metric's name in headers, with the minibatch of a time per minibatch."""
        if self.metric != "time_ms":
            return display_name(self.metric)
        batches = sorted({c.batch_size for c in self.cells["config"] if c is not None})
        return f"time per minibatch of {'/'.join(map(str, batches)) or '?'} (ms)"


def _cell_fields(frame: pd.DataFrame, layout: list[str]) -> tuple[list[str], list[str]]:
    """(key fields, shown extra fields): the table's fields plus every other config field that varies
    between runs, so two different configs never share a median. A varying field that the table's
    fields already determine (blocks_per_group by depth, say) is keyed on but not shown, and so is one
    that the table's fields and the recipe determine (a recipe's batch, schedule, crops and init:
    docs/recipes.md names them)."""
    varying = [f for f in CONFIG_FIELDS
               if f not in layout and f not in NOT_KEY_FIELDS and f in frame.columns
               and frame[f].astype(str).nunique(dropna=False) > 1]
    if not layout:
        return varying, varying
    as_text = frame[layout + varying].astype(str)

    def varies_within(groups: list[str], f: str) -> bool:
        return bool((as_text.groupby(groups, dropna=False)[f].nunique(dropna=False) > 1).any())

    shown = [f for f in varying if varies_within(layout, f)]
    if "recipe" in shown:
        shown = ["recipe", *(f for f in shown if f != "recipe" and varies_within([*layout, "recipe"], f))]
    return layout + varying, shown


def _note(states: pd.Series) -> str:
    counts = states[states != FINISHED].value_counts()
    return ", ".join(f"{int(n)} {state}" for state, n in counts.items())


PaperMetrics = dict[str, tuple[float, int | None, str | None]]  # metric -> (value, runs, recipe)


def _paper_groups(spec) -> list[tuple[dict[str, Any], str | None, PaperMetrics]]:
    """The paper's rows grouped by key: [(keys, method, {metric: (value, runs, recipe)})], in the CSV's
    order."""
    out: list[tuple[dict[str, Any], str | None, PaperMetrics]] = []
    index: dict[tuple, int] = {}
    for row in read_paper_results(spec):
        ident = (tuple(sorted((k, repr(v)) for k, v in row.keys.items())), row.method)
        if ident not in index:
            index[ident] = len(out)
            out.append((dict(row.keys), row.method, {}))
        out[index[ident]][2][row.metric] = (row.value, row.runs, row.recipe)
    return out


def _cell_record(group: pd.DataFrame, metric: str, extra: list[str]) -> tuple[dict[str, Any], dict[int, float]]:
    first = group.iloc[0]
    finished = group[(group["state"] == FINISHED) & group[metric].notna()]
    values = {int(seed): float(v) for seed, v in zip(finished["seed"], finished[metric], strict=True)}
    summary = stats.summarize(list(values.values()))
    record = {f: first[f] for f in CONFIG_FIELDS if f not in NOT_KEY_FIELDS}
    record.update(label=group["label"].dropna().mode().iat[0] if group["label"].notna().any() else "",
                  method="", n=summary.n, median=summary.median, min=summary.min, max=summary.max,
                  ci_low=summary.ci_low, ci_high=summary.ci_high, coverage=summary.coverage, runs=len(group),
                  notes=_note(group["state"]),
                  seeds=";".join(str(int(s)) for s in sorted(finished["seed"].dropna())),
                  device="; ".join(sorted({str(d) for d in finished["device_name"].dropna()})),
                  runtime_precision="; ".join(sorted({str(p) for p in finished["runtime_precision"].dropna()})),
                  config=dataclasses.replace(RunConfig.from_dict(first["config"]), seed=0), paper_keys={},
                  reported=FINAL_EPOCH, paper_recipe="")
    for name in extra:
        have = finished[name].dropna() if name in finished else pd.Series(dtype=float)
        record[name] = float(np.median(have)) if len(have) else math.nan
    return record, values


def _empty_record(method: str = "") -> dict[str, Any]:
    nan = math.nan
    record: dict[str, Any] = {f: nan for f in CONFIG_FIELDS if f not in NOT_KEY_FIELDS}
    record.update(label="", method=method, n=0, median=nan, min=nan, max=nan, ci_low=nan, ci_high=nan,
                  coverage=nan, runs=0, notes="", seeds="", device="", runtime_precision="", config=None, paper_keys={},
                  reported=FINAL_EPOCH, paper_recipe="")
    return record


def _planned_records(plan, keys: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a network the spec plans but nobody has run yet, one per distinct planned network that
    matches the paper's `keys`: the row and its label then read as they will once it runs."""
    records, seen = [], set()
    for planned in plan:
        network = dataclasses.replace(planned.config, seed=0)
        if network in seen or not matches(keys, planned.config):
            continue
        seen.add(network)
        record = _empty_record()
        record.update({f: hashable(getattr(network, f)) for f in CONFIG_FIELDS if f not in NOT_KEY_FIELDS})
        record.update(label=planned.label, config=network, notes="not run")
        records.append(record)
    return records


def _reference_record(keys: dict[str, Any], method: str) -> dict[str, Any]:
    """A row for another paper's method (a reference row, never trained)."""
    record = _empty_record(method)
    record.update({k: v for k, v in keys.items() if k in record})
    record.update(label=method, paper_keys=dict(keys))
    return record


def _hits(record: dict[str, Any], keys: dict[str, Any], method: str | None) -> bool:
    """Whether a paper row (its filled key cells; an empty cell matches anything) belongs to a cell."""
    if method:
        return record["method"] == method and all(record["paper_keys"].get(k) == v for k, v in keys.items()
                                                  if k in record["paper_keys"])
    return (record["config"] is not None and not record["method"] and record["reported"] == FINAL_EPOCH
            and matches(keys, record["config"]))


@dataclass
class _CellBuilder:
    """The cells of a table while they are assembled: one record per cell, its finished values, and
    its position in the paper's CSV (infinity until a paper row lands on it)."""

    metric: str
    extra: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    values: list[dict[int, float]] = field(default_factory=list)
    order: list[float] = field(default_factory=list)

    def add(self, record: dict[str, Any], values: dict[int, float]) -> int:
        record["paper"], record["paper_runs"] = math.nan, math.nan
        record.update({f"paper_{e}": math.nan for e in self.extra})
        self.records.append(record)
        self.values.append(values)
        self.order.append(math.inf)
        return len(self.records) - 1

    def add_runs(self, runs: pd.DataFrame, key_fields: list[str], reported: str = FINAL_EPOCH) -> None:
        """One cell per distinct configuration of the runs (the seed aside); `reported` BEST_EPOCH
        summarises each run's best test epoch instead of its final one."""
        if reported == BEST_EPOCH:
            runs = runs.assign(test_error=runs["best_test_error"])
        if len(runs):
            for _, group in runs.groupby([runs[f].astype(str) for f in key_fields], sort=False, dropna=False):
                record, values = _cell_record(group, self.metric, self.extra)
                self.add({**record, "reported": reported}, values)

    def attach_paper(self, spec, plan) -> None:
        """Put each of the paper's numbers on the cells its keys select, first the rows with the
        table's metric (they define the paper's cells), then extra-only rows (a parameter count given
        once per network for all columns). A paper row no cell matches gets a cell of its own: the
        planned network nobody has run yet, another paper's method, or a configuration the spec does
        not train."""
        groups = list(enumerate(_paper_groups(spec)))
        groups = [g for g in groups if self.metric in g[1][2]] + [g for g in groups if self.metric not in g[1][2]]
        for position, (keys, method, metrics) in groups:
            hits = [i for i, r in enumerate(self.records) if _hits(r, keys, method)]
            if not hits:
                hits = [self.add(record, {}) for record in self._paper_only_records(plan, keys, method, metrics)]
            for i in hits:
                if self.metric in metrics:
                    value, runs, recipe = metrics[self.metric]
                    self.records[i]["paper"] = value
                    self.records[i]["paper_runs"] = math.nan if runs is None else runs
                    self.records[i]["paper_recipe"] = recipe or ""
                for e in self.extra:
                    if e in metrics:
                        self.records[i][f"paper_{e}"] = metrics[e][0]
                self.order[i] = min(self.order[i], position)

    def drop_incomparable_times(self, paper_batch: int) -> None:
        """Hide the paper's time of every cell measured at another minibatch size than the paper's (a
        profile's batch, say): the two are different measurements, so no comparison is drawn."""
        for record in self.records:
            config = record["config"]
            if config is not None and config.batch_size != paper_batch and math.isfinite(record["paper"]):
                record["paper"] = math.nan
                note = f"minibatch of {config.batch_size}, the paper's {paper_batch}: not compared"
                record["notes"] = "; ".join(filter(None, [record["notes"], note]))

    def _paper_only_records(self, plan, keys: dict[str, Any], method: str | None,
                            metrics: dict[str, float]) -> list[dict[str, Any]]:
        if method:
            return [_reference_record(keys, method)]
        planned = _planned_records(plan, keys)
        if planned or self.metric not in metrics:
            return planned
        return [{**_empty_record(), **{k: v for k, v in keys.items() if k in CONFIG_FIELDS},
                 "label": " ".join(f"{k}={v}" for k, v in keys.items()), "notes": "not in the spec"}]

    def frame(self, plan, column: str | None) -> tuple[pd.DataFrame, dict[int, dict[int, float]]]:
        """The cells in the paper's order (then the plan's), with delta and verdict against the paper,
        and each cell's finished values by row index."""
        plan_position = _plan_positions(plan, self.records, column)
        ranked = sorted(range(len(self.records)), key=lambda i: (self.order[i], plan_position[i]))
        cells = pd.DataFrame([self.records[i] for i in ranked])
        values = {new: self.values[old] for new, old in enumerate(ranked)}
        if cells.empty:
            cells = pd.DataFrame(columns=[*_empty_record(), "paper", "paper_runs", *self.extra,
                                          *(f"paper_{e}" for e in self.extra)])
        cells = cells.drop(columns="paper_keys")
        cells["delta"] = cells["median"] - cells["paper"]
        cells.loc[_other_recipe(cells), "delta"] = math.nan
        verdicts = cell_verdicts(cells, values, self.metric, column)
        return pd.concat([cells, verdicts], axis=1), values


def build_table(spec, collection: Collection, design: SequentialDesign | None = None) -> SpecTable:
    """The table of `spec` from its collected runs and the paper's CSV; `design`: the sequential
    design the runs were launched under, if any (`analysis.verdicts`)."""
    layout_spec = spec.table
    metric, column, extra = layout_spec.metric, layout_spec.columns, list(layout_spec.extra)
    rows = list(layout_spec.rows)
    runs = collection.runs[collection.runs["config"].notna()] if len(collection.runs) else collection.runs
    layout = [f for f in rows + ([column] if column else []) if f in CONFIG_FIELDS or f == "label"]
    key_fields, shown = _cell_fields(runs, layout)
    runs, split = _split_by_precision(runs, key_fields)
    key_fields += [PRECISION_KEY] if split else []
    builder = _CellBuilder(metric, extra)
    builder.add_runs(runs, key_fields)
    if layout_spec.best_epoch_row:
        builder.add_runs(_baseline_runs(runs, layout_spec.baseline), key_fields, reported=BEST_EPOCH)
    builder.attach_paper(spec, collection.plan)
    caveat = _precision_caveat(split)
    if spec.kind == "timing":
        paper_batch = spec.timing["batch_size"]
        builder.drop_incomparable_times(paper_batch)
        other = sorted({r["config"].batch_size for r in builder.records if r["config"] is not None} - {paper_batch})
        if other:
            caveat = (f"Measured here at minibatches of {'/'.join(map(str, other))}, not the paper's {paper_batch}: "
                      "not compared with its times.")
    cells, values = builder.frame(collection.plan, column)
    caveat = " ".join(filter(None, [caveat, *(f"{note[0].upper()}{note[1:]}." for note in collection.notes)]))
    if DEVIATION in rows:
        cells[DEVIATION] = _deviations(cells, layout_spec.baseline, column)
        row_fields = rows
    else:
        row_fields = rows + [f for f in shown if f not in rows] + (["runtime_precision"] if split else [])
        if "recipe" not in row_fields and _varies_by_row(cells, "recipe", column):
            row_fields.append("recipe")
    table = SpecTable(spec=spec.name, title=spec.title, metric=metric, row_fields=row_fields, column_field=column,
                      extra=extra, cells=cells, comparisons=pd.DataFrame(), values=values,
                      baseline=layout_spec.baseline, description=collection.describe(),
                      profile=collection.profile.source if collection.profile else "", caveat=caveat,
                      official_logs=[c.sentence() for c in stage_comparisons(collection.epochs)])
    table.comparisons, table.sentences, table.orderings = compare_to_baseline(table, design)
    return table


def _varies_by_row(cells: pd.DataFrame, name: str, column: str | None) -> bool:
    """Whether cells of one column differ in `name` (the recipe of Table 5's rows), rather than it
    following the column (the SVHN column's era in Table 6)."""
    known = cells[cells[name].notna()]
    groups = known.groupby(column)[name] if column else [(None, known[name])]
    return any(values.nunique() > 1 for _, values in groups)


def _split_by_precision(runs: pd.DataFrame, key_fields: list[str]) -> tuple[pd.DataFrame, bool]:
    """`runs` with a PRECISION_KEY column, and whether any configuration has finished runs in more than
    one precision (a config with precision "auto" run on a GPU and on a CPU); only then does the key
    part cells, so the runs still to do of a configuration stay in its one cell otherwise."""
    if runs.empty:
        return runs, False
    precision = runs["runtime_precision"].where(runs["state"] == FINISHED)
    groups = [runs[f].astype(str) for f in key_fields]
    mixed = precision.groupby(groups, dropna=False).transform("nunique") > 1 if key_fields else precision.nunique() > 1
    key = precision.where(mixed, "").fillna("")
    return runs.assign(**{PRECISION_KEY: key}), bool((key != "").any())


def _precision_caveat(split: bool) -> str:
    return ("Runs of one network in different precisions are different experiments: each precision has "
            "its own cell." if split else "")


def _baseline_runs(runs: pd.DataFrame, baseline: dict[str, Any]) -> pd.DataFrame:
    keep = [matches(baseline, RunConfig.from_dict(c)) for c in runs["config"]] if len(runs) else []
    return runs[keep] if len(runs) else runs


def _baseline_of(cells: pd.DataFrame, baseline: dict[str, Any], column: str | None) -> dict[int, int]:
    """Each run cell's baseline cell: itself for a baseline cell, the one its column's comparison pairs
    it with otherwise (`analysis.verdicts.baseline_pairs`), and for a best-epoch cell the cell whose runs
    it re-reports."""
    final = {i: cells.at[i, "config"] for i in cells.index
             if cells.at[i, "config"] is not None and cells.at[i, "reported"] == FINAL_EPOCH}
    bases = {i: i for i, cfg in final.items() if matches(baseline, cfg)}
    bases.update(dict(baseline_pairs(final, baseline, column)))
    for i in cells.index:
        if cells.at[i, "reported"] == BEST_EPOCH:
            bases[i] = next(b for b, cfg in final.items() if cfg == cells.at[i, "config"]
                            and cells.at[b, "runtime_precision"] == cells.at[i, "runtime_precision"])
    return bases


def _deviations(cells: pd.DataFrame, baseline: dict[str, Any], column: str | None) -> list[str]:
    """The deviation row key of each cell (`analysis.deviations`)."""
    bases = _baseline_of(cells, baseline, column)
    names = []
    for i in cells.index:
        if cells.at[i, "reported"] == BEST_EPOCH:
            names.append(deviations.BEST_EPOCH)
        elif i in bases:
            names.append(deviations.describe(cells.at[i, "config"], cells.at[bases[i], "config"]))
        else:
            names.append("")
    return names


def _other_recipe(cells: pd.DataFrame) -> pd.Series:
    """Cells whose paper number comes from a recipe other than their runs' (`paper_recipe`)."""
    return pd.Series([bool(r["paper_recipe"]) and r["config"] is not None and r["config"].recipe != r["paper_recipe"]
                      for _, r in cells.iterrows()], index=cells.index, dtype=bool)


def _plan_positions(plan, records: list[dict[str, Any]], column: str | None) -> list[float]:
    """Where each cell's network first appears in the spec's plan (the spec lists rows in the paper's
    order), to order cells the paper does not, and the columns (CIFAR-10 before CIFAR-100); a
    best-epoch cell comes after every other. Cells without a network (other papers' rows, the paper's
    rows nobody plans) are placed by their label."""
    by_network: dict[RunConfig, int] = {}
    by_label: dict[tuple, int] = {}
    for i, planned in enumerate(plan):
        by_network.setdefault(dataclasses.replace(planned.config, seed=0), i)
        by_label.setdefault((planned.label, column_value(planned.config, column) if column else None), i)
    positions = []
    for r in records:
        if r["reported"] == BEST_EPOCH:
            positions.append(math.inf)
        elif r["config"] is not None and r["config"] in by_network:
            positions.append(by_network[r["config"]])
        else:
            positions.append(by_label.get((r["label"], r.get(column) if column else None), math.inf))
    return positions


def compare_to_baseline(table: SpecTable, design: SequentialDesign | None = None
                        ) -> tuple[pd.DataFrame, list[str], dict[tuple[int, int], Ordering]]:
    """Every run cell against its baseline cell (same column; the closest if there are several), and a
    best-epoch cell against the final epoch of the same runs, decided by
    `analysis.verdicts.decide_orderings`: one row per variant for <spec>.vs_baseline.csv, a sentence
    for each saying what the seeds decide, and the orderings by (variant, baseline) cell. Empty without
    a baseline or without runs of it."""
    cells = table.cells
    if not table.baseline or cells.empty:
        return pd.DataFrame(), [], {}
    run_cells = [i for i in cells.index if cells.at[i, "runs"] > 0]
    bases = _baseline_of(cells.loc[run_cells], table.baseline, table.column_field)
    pairs = [(v, b, _paper_difference(cells, v, b)) for v, b in bases.items() if v != b]
    column_of = {i: cells.at[i, table.column_field] if table.column_field else None for i in run_cells}
    prior = {column_of[b]: stats.prior_sd(cells.at[b, "config"].dataset) for _, b, _ in pairs}
    groups = {i: draw_group(cells.at[i, "config"]) for i in run_cells}
    decided = decide_orderings(pairs, table.values, column_of, prior, design, groups)
    rows, sentences = [], []
    for v, b, paper_diff in pairs:
        ordering = decided[(v, b)]
        rows.append(_comparison_row(table, v, b, paper_diff, ordering))
        sentences.append(ordering_sentence(cell_name(table, v), cell_name(table, b), ordering, paper_diff,
                                           _unit(table.metric)))
    return pd.DataFrame(rows), sentences, decided


@dataclass(frozen=True)
class Expectation:
    """What a sequential launch may expect of one ordering before it spends its seeds: `look`, the first
    look (0-based) whose seeds per cell reach those the paper's difference needs at that look's level
    (`stats.seeds_needed`, with the column's pooled σ of the runs stored, else the dataset's planning
    prior, unpaired: the cautious case); None when no look of the design does, or when there is no
    paper difference to plan for. `extended`: whether the launch may give its cells the seeds of a
    later look (it does while an ordering is unresolved and resolvable within the design)."""

    variant: int
    baseline: int
    look: int | None
    extended: bool


def expected_resolution(table: SpecTable, design: SequentialDesign) -> list[Expectation]:
    """For every ordering of the table's cells (run or only planned), when the design expects to
    decide it: what a budget is spent on (`experiments.rounds.plan_rounds`)."""
    cells = table.cells
    if not table.baseline or cells.empty:
        return []
    planned = [i for i in cells.index if cells.at[i, "config"] is not None and cells.at[i, "reported"] == FINAL_EPOCH]
    out = []
    for v, b in _baseline_of(cells.loc[planned], table.baseline, table.column_field).items():
        if v == b:
            continue
        target = _paper_difference(cells, v, b)
        sigma = cells.at[b, "sigma"] if "sigma" in cells and math.isfinite(cells.at[b, "sigma"]) else \
            stats.prior_sd(cells.at[b, "config"].dataset)
        needed = [stats.seeds_needed(target, sigma * math.sqrt(2), level) for level in design.levels]
        look = next((k for k, (n, seeds) in enumerate(zip(needed, design.looks, strict=True)) if n <= seeds), None)
        out.append(Expectation(v, b, look, extended=look != 0 and (look is not None or not math.isfinite(target))))
    return out


def _paper_difference(cells: pd.DataFrame, variant: int, baseline: int) -> float:
    """The paper's difference between two cells; none (NaN) where the runs trained on generated data,
    whose differences say nothing of the paper's."""
    if generated_data(cells.at[variant, "config"]) or generated_data(cells.at[baseline, "config"]):
        return math.nan
    return cells.at[variant, "paper"] - cells.at[baseline, "paper"]


def cell_name(table: SpecTable, i: int) -> str:
    """How a cell is named in comparisons: its network, or in a table of deviations what it changes
    (with the network when the columns are networks)."""
    cells = table.cells
    if DEVIATION not in cells:
        return cells.at[i, "label"] + (" (best test epoch)" if cells.at[i, "reported"] == BEST_EPOCH else "")
    where = display_value(table.column_field, cells.at[i, table.column_field]) if table.column_field else ""
    if cells.at[i, DEVIATION] == deviations.BASELINE:
        return "the baseline"
    return f"{where}: {cells.at[i, DEVIATION]}" if where else cells.at[i, DEVIATION]


def _comparison_row(table: SpecTable, v: int, b: int, paper_diff: float, ordering: Ordering) -> dict[str, Any]:
    cells, d = table.cells, ordering.difference
    row = {f: cells.at[v, f] for f in table.row_fields if f in cells}
    if table.column_field:
        row[table.column_field] = cells.at[v, table.column_field]
    improvement = ordering.improvement
    row.update(label=cells.at[v, "label"], baseline=cells.at[b, "label"], reported=cells.at[v, "reported"],
               paired=d.paired, unpaired_because="" if d.paired else unpaired_because(cells.at[v, "config"],
                                                                                   cells.at[b, "config"]),
               n=d.n, n_baseline=d.n_baseline, diff=d.diff, ci_low=d.ci_low, ci_high=d.ci_high, p_value=d.p_value,
               alpha=ordering.alpha, paper_diff=paper_diff, verdict=ordering.verdict,
               seeds_needed=_seeds(ordering.seeds_needed), detectable=d.detectable,
               p_improvement=improvement.p, p_improvement_low=improvement.low, p_improvement_high=improvement.high,
               difference_sd=ordering.difference_sd,
               noise_source=ordering.noise_source, look=ordering.look + 1, active=ordering.active)
    return row


def _seeds(needed: float) -> int | float:
    return int(needed) if math.isfinite(needed) else needed


def _unit(metric: str) -> str:
    return "ms" if metric == "time_ms" else "pp"


# ---------------------------------------------------------------------------------------- rendering
def _fmt(value: float, digits: int = 2) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fmt_signed(value: float, digits: int = 2) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def _fmt_paper(value: float, digits: int) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fmt_extra(name: str, value: float, paper: bool) -> str:
    if value is None or not np.isfinite(value):
        return ""
    if name == "params":
        return f"{value / 1e6:.1f}M" if paper else f"{int(round(value)):,}"
    return f"{value:g}" if paper else f"{value:.1f}"


def _digits(metric: str) -> int:
    return 1 if metric == "time_ms" else 2


def _ours(cell: pd.Series, digits: int, usual_n: int | None = None) -> str:
    """Median [interval] (its coverage) n=runs, e.g. "5.70 [5.50, 5.90] (94 %) n=5"; compact for print
    when `usual_n` is given: "5.70 [5.50, 5.90]", with n only where it is not `usual_n` (the caption
    states the coverage of each n) and no notes."""
    if cell["n"] == 0:
        text = "—"
    else:
        text = _fmt(cell["median"], digits)
        if np.isfinite(cell["ci_low"]):
            text += f" [{_fmt(cell['ci_low'], digits)}, {_fmt(cell['ci_high'], digits)}]"
            text += "" if usual_n else f" ({cell['coverage']:.0%})"
        text += "" if usual_n == cell["n"] else f" n={int(cell['n'])}"
    if cell.get("notes") and not usual_n:
        text += f"; {cell['notes']}"
    return text


def usual_runs(table: SpecTable) -> int:
    """The most common number of finished runs among the cells that have any (0 without runs)."""
    counts = table.cells.loc[table.cells["n"] > 0, "n"]
    return int(counts.mode().iat[0]) if len(counts) else 0


def interval_note(table: SpecTable) -> str:
    """What the intervals of a compact layout cover, for each number of runs in it."""
    counts = sorted({int(n) for n in table.cells["n"] if n >= 2})
    if not counts:
        return ""
    covered = ", ".join(f"{stats.median_interval(range(n))[2]:.0%} at n={n}" for n in counts)
    return (f"[Interval] of the median between order statistics of the runs, covering it with probability "
            f"{covered}; n={usual_runs(table)} runs per cell unless marked.")


def layout_frame(table: SpecTable, compact: bool = False) -> pd.DataFrame:
    """The table as the paper lays it out, as strings: one row per network, per column value the
    columns ours / paper / Δ / vs paper (ours alone when the spec has no paper numbers), then the extra
    columns (ours and paper; a time per epoch also as a ratio to the baseline's, the quantity that
    compares across devices). `compact`, for print: intervals without their coverage and n only where
    it is unusual (`interval_note` says both), the paper's parameter counts left out."""
    cells = table.cells
    if cells.empty:
        return pd.DataFrame()
    usual_n = usual_runs(table) if compact else None
    digits, with_paper = _digits(table.metric), table.has_paper
    row_fields = [f for f in table.row_fields if f in cells.columns]
    row_keys = pd.Series(["|".join(display_value(f, cells.at[i, f]) for f in row_fields) for i in cells.index],
                         index=cells.index)
    col_values = list(dict.fromkeys(cells[table.column_field])) if table.column_field else [None]
    base = _baseline_extras(table)
    records = []
    for key in dict.fromkeys(row_keys):
        group = cells[row_keys == key]
        first = group.iloc[0]
        record = {display_name(f): display_value(f, first[f]) for f in row_fields}
        for name in table.extra:
            record.update(_extra_columns(table, name, group, base.get(name, {}), with_paper, compact))
        for col in col_values:
            prefix = "" if col is None else f"{_column_name(table.column_field, col, compact)} "
            match = group[group[table.column_field] == col] if col is not None else group
            cell = match.iloc[0] if len(match) else None
            record[f"{prefix}ours"] = "" if cell is None else _ours(cell, digits, usual_n)
            if with_paper:
                record[f"{prefix}paper"] = "" if cell is None else _fmt_paper(cell["paper"], digits)
                if not compact:
                    record[f"{prefix}Δ"] = "" if cell is None else _fmt_signed(cell["delta"], digits)
                record[f"{prefix}vs paper"] = "" if cell is None else verdict_text(cell, _unit(table.metric), compact)
        records.append(record)
    frame = pd.DataFrame(records)
    return frame.rename(columns=lambda c: _short_head(c, table)) if compact else frame


def _column_name(field_name: str, value: Any, compact: bool) -> str:
    if compact and field_name == "dataset":
        return SHORT_DATASET_NAMES.get(str(value), str(value))
    return display_value(field_name, value)


def _short_head(head: str, table: SpecTable) -> str:
    """A column head for print: `SHORT_HEADS`, a ratio to the baseline as "÷ base" (the caption names it)."""
    base = _baseline_extras(table)
    for extra in base.values():
        head = head.replace(f"÷ {extra['label']} (ours)", "÷ base").replace(f"÷ {extra['label']} (paper)", "paper ÷ base")
    return SHORT_HEADS.get(head, head)


TIME_EXTRAS = ("epoch_time_s",)  # times that only compare across devices as ratios


def _baseline_extras(table: SpecTable) -> dict[str, dict[str, float]]:
    """The baseline cell's time extras, ours and the paper's: what ratios divide by."""
    if not table.baseline:
        return {}
    cells = table.cells
    bases = [i for i in cells.index if cells.at[i, "config"] is not None and matches(table.baseline, cells.at[i, "config"])]
    if not bases:
        return {}
    b = bases[0]
    return {name: {"ours": cells.at[b, name], "paper": cells.at[b, f"paper_{name}"], "label": cells.at[b, "label"]}
            for name in table.extra if name in TIME_EXTRAS}


def _extra_columns(table: SpecTable, name: str, group: pd.DataFrame, base: dict[str, Any],
                   with_paper: bool, compact: bool = False) -> dict[str, str]:
    """An extra's columns: ours and the paper's, and a time's ratio to the baseline's (where it was
    measured: `timing_note`)."""
    source = group[group[name].notna()] if name in group else group.iloc[0:0]
    paper_source = group[group[f"paper_{name}"].notna()]
    ours = source[name].iat[0] if len(source) else math.nan
    paper = paper_source[f"paper_{name}"].iat[0] if len(paper_source) else math.nan
    out = {f"{display_name(name)} (ours)": _fmt_extra(name, ours, False)}
    if with_paper and not (compact and name not in TIME_EXTRAS):
        out[f"{display_name(name)} (paper)"] = _fmt_extra(name, paper, True)
    if base:
        out[f"÷ {base['label']} (ours)"] = _fmt_ratio(ours / base["ours"])
        if with_paper:
            out[f"÷ {base['label']} (paper)"] = _fmt_ratio(paper / base["paper"])
    return out


def timing_note(table: SpecTable) -> str:
    """Where the times per epoch were measured (the device and the images of an epoch), when the table
    has them: device times compare across devices only as ratios."""
    if not any(name in TIME_EXTRAS for name in table.extra) or not table.finished_runs:
        return ""
    return f"Our times per epoch: {_measured_on(table)}; the paper's: its GPU."


def _measured_on(table: SpecTable) -> str:
    """Where a time per epoch was measured: the device and the images of an epoch."""
    devices = sorted({d for cell in table.cells["device"] for d in str(cell).split("; ") if d})
    images = sorted({(size := expected_sizes(c)[0]) // c.batch_size * c.batch_size if c.drop_last else size
                     for c in table.cells["config"] if c is not None})
    return f"{' / '.join(devices) or 'device not recorded'}, {'/'.join(f'{n:,}' for n in images)} images per epoch"


def _fmt_ratio(value: float) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.2f}×"


def comparisons_frame(table: SpecTable, compact: bool = False) -> pd.DataFrame:
    """The baseline comparisons as strings, for Markdown and LaTeX; `compact`, for print: no "vs" column
    when every row has one baseline (the caption names it), P(better) without its interval."""
    comps = table.comparisons
    if comps.empty:
        return pd.DataFrame()
    digits = _digits(table.metric)
    if DEVIATION in comps:  # each row says what it changes; the baseline is the column's
        out = pd.DataFrame({DEVIATION: comps[DEVIATION]})
    else:
        best = [" (best test epoch)" if r == BEST_EPOCH else "" for r in comps["reported"]]
        out = pd.DataFrame({display_name("label"): comps["label"] + best, "vs": comps["baseline"]})
    if table.column_field:
        out.insert(0 if DEVIATION in comps else 1, display_name(table.column_field),
                   [display_value(table.column_field, v) for v in comps[table.column_field]])
    out["seeds"] = [f"{a} paired" if paired else f"{a}/{b}" + (" unpaired" if compact else f" ({why})" if why else "")
                    for a, b, paired, why in zip(comps["n"], comps["n_baseline"], comps["paired"],
                                                 comps["unpaired_because"], strict=True)]
    out["α"] = [f"{a:.3g}" for a in comps["alpha"]]
    out["Δ [CI 1−α]"] = [
        "—" if not np.isfinite(d) else _fmt_signed(d, digits) + (f" [{_fmt_signed(lo, digits)}, {_fmt_signed(hi, digits)}]" if np.isfinite(lo) else "")
        for d, lo, hi in zip(comps["diff"], comps["ci_low"], comps["ci_high"], strict=True)]
    out["p"] = [_fmt_p(p) for p in comps["p_value"]]
    if _orders_papers(table):
        out.insert(len(out.columns) - 1, "paper Δ", [_fmt_signed(v, digits) for v in comps["paper_diff"]])
        out["paper's ordering"] = comps["verdict"]
    else:
        out["vs baseline"] = comps["verdict"]
    out["detects ≥"] = [_fmt(v, digits) for v in comps["detectable"]]
    out["seeds needed" if _orders_papers(table) else "seeds for Δ"] = [_fmt_seeds(n) for n in comps["seeds_needed"]]
    out["P(better)"] = [_fmt(p) if compact else _fmt_improvement(p, lo, hi) for p, lo, hi in
                        zip(comps["p_improvement"], comps["p_improvement_low"], comps["p_improvement_high"], strict=True)]
    if not compact:
        return out
    constant = [c for c in ("vs", "α") if c in out and out[c].nunique() == 1]  # the caption names them
    out = out.drop(columns=["p", *constant])
    if table.column_field == "dataset":
        out[display_name("dataset")] = [SHORT_DATASET_NAMES.get(str(v), str(v)) for v in comps["dataset"]]
    return out.rename(columns=lambda c: _short_head(c, table))


def _orders_papers(table: SpecTable) -> bool:
    """Whether the comparisons test the paper's orderings (else each is a difference of its own: a spec
    without paper numbers, or runs on generated data)."""
    return bool(len(table.comparisons)) and bool(np.isfinite(table.comparisons["paper_diff"].astype(float)).any())


def _fmt_improvement(p: float, low: float, high: float) -> str:
    return "" if not np.isfinite(p) else f"{p:.2f} [{low:.2f}, {high:.2f}]"


def _fmt_p(p: float) -> str:
    return "" if p is None or not np.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def _fmt_seeds(n: float) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return ""
    if math.isinf(n):
        return "∞"
    return f"> {SEEDS_SHOWN:,}" if n > SEEDS_SHOWN else f"{int(n):,}"  # no launch runs more


def _markdown(frame: pd.DataFrame) -> str:
    def clean(text: Any) -> str:
        return str(text).replace("|", "\\|")
    header = "| " + " | ".join(clean(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(clean(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"$<$", ">": r"$>$", "–": "--", "—": "---", "Δ": r"$\Delta$", "−": r"$-$",
                  "×": r"$\times$", "÷": r"$\div$", "±": r"$\pm$", "σ": r"$\sigma$", "∞": r"$\infty$",
                  "≈": r"$\approx$", "✓": r"\checkmark{}", "α": r"$\alpha$", "≥": r"$\geq$", "≤": r"$\leq$"}
LATEX_PACKAGES = "booktabs,amssymb"  # \toprule/\midrule/\bottomrule; \checkmark
# A cell that reads as a number: a (signed) figure, "<0.001", or the placeholders "—" (no runs) and "∞".
_NUMERIC_CELL = re.compile(r"^(?:[+\-−<]?\.?\d|—|∞)")


def latex_escape(text: Any) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _numeric_column(values: pd.Series) -> bool:
    """Whether a column of rendered cells is numbers (right-aligned): every non-blank cell starts like one."""
    cells = [str(v).strip() for v in values if str(v).strip()]
    return bool(cells) and all(_NUMERIC_CELL.match(c) for c in cells)


def _latex_number(text: Any) -> str:
    """An escaped numeric cell with its minus signs set as minus signs (a hyphen in text mode)."""
    return re.sub(r"(?<![\w.])-(?=\.?\d)", r"$-$", latex_escape(text))


LATEX_TEXT_WIDTH = 22  # characters: a longer text column wraps in a p{} column this wide
# A printed table must fit a page's text width: 6.5 in (468 pt, letter paper with 1 in margins). Each font
# size, with the width of a character at it (Computer Modern's digits are 0.5 em; lowercase a little
# less), is tried in turn; columns are \tabcolsep (6 pt) apart on each side.
LATEX_TEXT_WIDTH_PT = 468.0
LATEX_SIZES = (("footnotesize", 4.0), ("scriptsize", 3.5))
LATEX_COLUMN_GAP_PT = 12.0


def latex_chars(frame: pd.DataFrame) -> int:
    """The characters of `frame`'s widest row as `_latex_table` sets it: each column its widest entry,
    a wrapping text column at most `LATEX_TEXT_WIDTH`."""
    total = 0
    for column in frame.columns:
        widest = max([len(str(column))] + [len(str(v)) for v in frame[column]])
        total += min(widest, LATEX_TEXT_WIDTH) if _wraps(frame[column]) else widest
    return total


def latex_size(frame: pd.DataFrame) -> tuple[str, float]:
    """(font size, width in points) of `frame` printed: the largest of `LATEX_SIZES` that fits the text
    width, else the smallest."""
    gaps = LATEX_COLUMN_GAP_PT * max(0, len(frame.columns) - 1)
    for size, char_pt in LATEX_SIZES:
        width = latex_chars(frame) * char_pt + gaps
        if width <= LATEX_TEXT_WIDTH_PT:
            return size, width
    return size, width


def _wraps(values: pd.Series) -> bool:
    return not _numeric_column(values) and any(len(str(v)) > LATEX_TEXT_WIDTH for v in values)


def _latex_table(frame: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table float at the size that fits a page (`latex_size`): numeric columns
    right-aligned, the rest left, long text wrapped in a p{} column, under its caption."""
    numeric = [_numeric_column(frame[c]) for c in frame.columns]
    spec = "".join("r" if n else (f"p{{{LATEX_TEXT_WIDTH * 0.5:g}em}}" if _wraps(frame[c]) else "l")
                   for c, n in zip(frame.columns, numeric, strict=True))
    size, _ = latex_size(frame)
    lines = [r"\begin{table}[htbp]", r"\centering", rf"\{size}", rf"\caption{{{latex_escape(caption)}}}",
             rf"\label{{{label}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_number(v) if n else latex_escape(v) for v, n in zip(row, numeric, strict=True)) + r" \\"
              for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


VERDICT_MEANINGS = {
    stats.HIGHER: "HIGHER/LOWER, a difference that seed noise does not explain",
    stats.EQUIVALENT: "equivalent, within the margin shown, by two one-sided tests",
    stats.INDISTINGUISHABLE: "indistinguishable, neither: the runs cannot tell, and could have seen a departure of "
                             "the size shown with 80 % power",
    stats.TOO_FEW: "too few, no run, or too few runs to estimate σ",
    stats.NOT_COMPARABLE: "not comparable, the paper's number is of another recipe than the runs'",
    stats.NOT_APPLICABLE: "n/a, the runs trained on generated data, whose errors say nothing of the paper's",
}


def method_note(table: SpecTable, verdicts: bool = True) -> str:
    """What a layout's numbers are, and with `verdicts` what each of its "vs paper" words means."""
    what = display_name(table.metric)
    note = (f"Ours: median {what} over finished runs, [an order-statistic interval of the median] (the "
            f"probability that it holds the true median, exact for any noise) n=runs.")
    if table.has_paper:
        note += " Δ = ours − paper."
    present = {stats.HIGHER if v == stats.LOWER else v for v in table.cells["verdict_vs_paper"]} - {""}
    if verdicts and present:
        tested = "" if present <= {stats.NOT_APPLICABLE, stats.NOT_COMPARABLE} else (
            f" (t-tests on σ pooled over the column's runs, Holm-corrected over the table's cells at {stats.ALPHA:.0%})")
        meanings = "; ".join(VERDICT_MEANINGS[v] for v in VERDICT_MEANINGS if v in present)
        note += f" \"vs paper\"{tested}: {meanings}."
    return note + " Diverged, failed and unfinished runs are noted, never in a median."


def noise_lines(table: SpecTable) -> list[str]:
    """The seed noise behind the verdicts, per table column: σ pooled, or too few runs to pool."""
    cells = table.cells[table.cells["sigma_source"].notna()] if "sigma_source" in table.cells else table.cells[:0]
    if cells.empty:
        return []
    lines = []
    for column, group in cells.groupby(table.column_field, sort=False) if table.column_field else [(None, cells)]:
        first = group.iloc[0]
        where = f"{display_value(table.column_field, column)}: " if table.column_field else ""
        if first["sigma_source"] == "pooled":
            lines.append(f"- {where}σ = {first['sigma']:.3f} {_unit(table.metric)}, pooled over the cells' runs "
                         f"({int(first['sigma_df'])} degrees of freedom)")
        else:
            lines.append(f"- {where}too few runs to estimate σ ({int(first['sigma_df'])} pooled degrees of freedom, "
                         f"{stats.MIN_DF} needed: a second seed of any cell gives one): no verdict; seeds are "
                         f"planned at σ = {first['sigma']:.2f} {_unit(table.metric)}, above the published spreads")
    return lines


def to_markdown(table: SpecTable, heading: str = "") -> str:
    parts = [f"## {heading or table.title}", "",
             " ".join(filter(None, [f"Runs: {table.description}.", timing_note(table), table.caveat])), ""]
    layout = layout_frame(table)
    if table.finished_runs == 0:
        parts += ["**No finished runs yet**: only the paper's values are shown.", ""]
    if not layout.empty:
        parts += [_markdown(layout), ""]
    parts += [method_note(table), ""]
    noise = noise_lines(table)
    if noise:
        parts += ["Seed noise:", "", *noise, ""]
    comps = comparisons_frame(table)
    if not comps.empty:
        parts += [f"### Against the {'paper' + chr(39) + 's ' if table.has_paper else ''}baseline", "",
                  comparison_note(table), "", _markdown(comps), "",
                  "What the seeds run so far can decide:", "", *[f"- {s}" for s in table.sentences], ""]
    if table.official_logs:
        parts += ["### Against the official training logs", "",
                  "Each log is one run: read its difference against the seed spread above.", "",
                  *[f"- {s}" for s in table.official_logs], ""]
    return "\n".join(parts)


def comparison_note(table: SpecTable) -> str:
    """What the columns of the baseline comparisons are."""
    model = (f"Δ = variant − baseline in {display_name(table.metric)}, estimated in the column's cells × seeds "
             "model; seeds pair two cells only where their runs of a seed draw the same data order, crops and "
             "flips (else the field that changes the draws is named and the comparison is unpaired). α: the level "
             "of the test and of the interval (spent over the looks of a sequential launch); \"detects ≥\": the "
             f"smallest true difference the comparison resolves with {stats.POWER:.0%} power at that level; "
             "P(better): the chance that the variant's run beats the baseline's, over seed pairs (paired) or all "
             f"pairs of runs, with a bootstrap interval (from {stats.MIN_RUNS_IMPROVEMENT} runs per side)")
    if _orders_papers(table):
        legend = ("\"supported\": significant on the paper's side; \"contradicted\": on the other side; "
                  "\"unresolved\": not significant; \"too_few\": a side without runs, or too few to estimate σ; "
                  f"\"seeds needed\": per side, for {stats.POWER:.0%} power to resolve the paper's difference at α.")
    else:
        legend = ("\"higher\"/\"lower\": significant (two-sided); \"unresolved\": not; \"seeds for Δ\": per side, "
                  "to resolve a true difference of the size observed at α.")
    return f"{model}. {legend}"


def _latex_label(table: SpecTable, part: str = "") -> str:
    profile = "" if table.profile in ("", "paper") else "-" + re.sub(r"[^A-Za-z0-9]+", "-", table.profile).strip("-")
    return f"tab:{table.spec.replace('_', '-')}{profile}{part}"


def latex_frames(table: SpecTable, verdicts: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compact layout (with the "vs paper" columns only when `verdicts`) and comparisons that
    `to_latex` sets."""
    layout = layout_frame(table, compact=True)
    if not verdicts and not layout.empty:
        layout = layout[[c for c in layout.columns if not c.endswith("vs paper")]]
    return layout, comparisons_frame(table, compact=True)


def to_latex(table: SpecTable, verdicts: bool = False) -> str:
    """The paper's layout and, if any, the baseline comparisons as booktabs table floats (needs
    \\usepackage{booktabs,amssymb}), compact enough for a page (`latex_width`), each captioned with what
    its numbers are, where the times were measured and which runs they summarise; `verdicts` adds the
    "vs paper" columns to the layout."""
    runs = f"Runs: {table.description}."
    parts = [f"% {table.title}: generated by analysis.report; needs \\usepackage{{{LATEX_PACKAGES}}}"]
    layout, comps = latex_frames(table, verdicts)
    if not layout.empty:
        caption = " ".join(filter(None, [f"{table.title}.", method_note(table, verdicts), interval_note(table),
                                         timing_note(table), runs, table.caveat]))
        parts.append(_latex_table(layout, caption, _latex_label(table)))
    if not comps.empty:
        first = table.comparisons.iloc[0]
        against = ", ".join(([] if "vs" in comps else [f"baseline {first['baseline']}"]) +
                            ([] if "α" in comps else [f"α = {first['alpha']:.3g}"]))
        caption = (f"{table.title}: each variant against its baseline{f' ({against})' if against else ''}. "
                   f"{comparison_note(table)} {runs}")
        parts += ["", _latex_table(comps, caption, _latex_label(table, "-vs-baseline"))]
    return "\n".join(parts) + "\n"


def tidy_cells(table: SpecTable) -> pd.DataFrame:
    """The cells as written to <spec>.csv: every number, no Python objects, and what the runs are;
    no comparison with the paper for a spec without paper numbers."""
    dropped = ["config"] + ([] if table.has_paper else list(PAPER_COMPARISON_COLUMNS))
    return table.cells.drop(columns=dropped, errors="ignore").assign(profile=table.profile)


# How many digits each kind of number keeps in a CSV (the float noise of arithmetic, 6.06 - 5.73 =
# 0.3299999999999992, never reaches a file). Error percentages and their differences, intervals and
# σ: 3 decimals, finer than one test image of any test set (1 of CIFAR's 10,000 is 0.01 pp, 1 of SVHN's
# 26,032 is 0.004 pp), so no two distinct errors merge; p-values and test levels (alpha, which alpha
# spending halves round after round: 0.0125): 3 significant digits, so small ones stay readable;
# losses: 4 significant digits; seconds and milliseconds: 2 decimals; coverages: 3 decimals; any
# other float (config values such as lr = 0.1): 6 significant digits. A column whose values are all
# whole numbers (counts, seeds, parameter counts, depths) is written as integers.
CSV_PERCENT_COLUMNS = ("median", "min", "max", "ci_low", "ci_high", "paper", "delta", "diff", "paper_diff",
                       "detectable", "difference_sd", "sigma")
CSV_P_VALUE_COLUMNS = ("p_value", "p_adjusted", "alpha")
CSV_FRACTION_COLUMNS = ("coverage",)


def csv_rounding(column: str) -> tuple[str, int]:
    """("decimals" | "significant", digits) for a CSV column, by the kind of number its name says."""
    if column in CSV_P_VALUE_COLUMNS:
        return "significant", 3
    if column in CSV_PERCENT_COLUMNS or column.endswith("_error"):
        return "decimals", 3
    if column.endswith("loss"):
        return "significant", 4
    if column in CSV_FRACTION_COLUMNS:
        return "decimals", 3
    if column.endswith(("_s", "_ms")) or column.startswith("time_ms"):
        return "decimals", 2
    return "significant", 6


def _round(value: float, how: str, digits: int) -> float:
    if not np.isfinite(value):
        return value
    if how == "significant":
        return float(f"{value:.{digits}g}")
    return round(value, digits)


def rounded_for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every float column rounded by its kind (`csv_rounding`), whole-number columns as
    integers, unrounded (blank where missing; "inf" stays, e.g. seeds needed for a difference of zero)."""
    out = frame.copy()
    for column in out.columns:
        values = _as_floats(out[column])
        if values is None:
            continue
        finite = values[np.isfinite(values)]
        if len(finite) and (finite == finite.round()).all():
            out[column] = values.map(lambda v: int(v) if np.isfinite(v) else ("" if np.isnan(v) else str(v)))
            continue
        how, digits = csv_rounding(str(column))
        out[column] = values.map(lambda v, how=how, digits=digits: _round(v, how, digits))
    return out


def _as_floats(values: pd.Series) -> pd.Series | None:
    """A column of numbers as floats (None for text, booleans and empty columns): the comparisons and
    verdicts hold numbers in object columns."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return None
    if pd.api.types.is_float_dtype(values):
        return values.astype(float)
    present = values.dropna()
    if not len(present) or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                                   for v in present):
        return None
    return values.astype(float)


def csv_text(frame: pd.DataFrame) -> str:
    """`frame` as CSV text, its numbers rounded by kind (`rounded_for_csv`)."""
    return rounded_for_csv(frame).to_csv(index=False)


def write_tables(table: SpecTable, out_dir: Path, stem: str, appendix: str = "") -> list[Path]:
    """<stem>.md (with `appendix` at its end), <stem>.tex, <stem>.csv (tidy cells) and, for
    ablations, <stem>.vs_baseline.csv."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".md", to_markdown(table) + appendix), (".tex", to_latex(table)),
                         (".csv", csv_text(tidy_cells(table)))):
        path = out_dir / f"{stem}{suffix}"
        atomic_write_text(path, text)
        written.append(path)
    if not table.comparisons.empty:
        path = out_dir / f"{stem}.vs_baseline.csv"
        atomic_write_text(path, csv_text(table.comparisons))
        written.append(path)
    return written
