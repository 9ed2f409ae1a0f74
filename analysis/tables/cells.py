"""The cells of a table from the collected runs and the paper's CSV: one cell per network
configuration (every key config field but the seed) and table column, the median of its finished runs
with its interval, the paper's numbers put on the cells their keys select, and the verdict of each
cell against the paper (`analysis.verdicts.cell_verdicts`).

The rules of what makes a cell live here, apart from what is done with the cells afterwards
(`analysis.tables.comparisons`, `analysis.tables.build`): which fields key a cell (`cell_fields`),
that runs of one network in different precisions part into cells (`split_by_precision`), that a
paper row no cell matches still gets a row of its own, and the order of the rows (the paper's, then
the plan's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from analysis.collect import FINISHED, hashable
from analysis.paper import read_paper_results
from analysis.tables.table import BEST_EPOCH, FINAL_EPOCH
from analysis.verdicts import cell_verdicts
from experiments.schema import CONFIG_FIELDS
from experiments.spec import NOT_KEY_FIELDS, column_value, matches
from wrn.config import RunConfig

PRECISION_KEY = "precision_used"  # the key that keeps runs of different precisions in different cells


def cell_fields(frame: pd.DataFrame, layout: list[str]) -> tuple[list[str], list[str]]:
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
                  config=RunConfig.from_dict(first["config"]).network, paper_keys={},
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
        network = planned.config.network
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
class CellBuilder:
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


def split_by_precision(runs: pd.DataFrame, key_fields: list[str]) -> tuple[pd.DataFrame, bool]:
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


def precision_caveat(split: bool) -> str:
    return ("Runs of one network in different precisions are different experiments: each precision has "
            "its own cell." if split else "")


def baseline_runs(runs: pd.DataFrame, baseline: dict[str, Any]) -> pd.DataFrame:
    keep = [matches(baseline, RunConfig.from_dict(c)) for c in runs["config"]] if len(runs) else []
    return runs[keep] if len(runs) else runs


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
        by_network.setdefault(planned.config.network, i)
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
