"""Each cell against its baseline cell, the comparisons an ablation table makes against the paper's
orderings: which cell is whose baseline (`baseline_of`), the deviation each cell makes from it, the
decided orderings with a sentence each (`compare_to_baseline`), and what a sequential launch may
expect to decide before it spends its seeds (`expected_resolution`, for the launcher's budget).

Apart from the cells (`analysis.tables.cells`): these read finished cells, whatever made them, and
the launcher plans a budget's rounds with them (`experiments.rounds`) without writing a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis import deviations, stats
from analysis.tables.table import BEST_EPOCH, FINAL_EPOCH, SpecTable, display_value, metric_unit
from analysis.verdicts import (Ordering, decide_orderings, draw_group, generated_data,
                               ordering_sentence, unpaired_because)
from experiments.sequential import SequentialDesign
from experiments.spec import DEVIATION, baseline_pairs, matches


def baseline_of(cells: pd.DataFrame, baseline: dict[str, Any], column: str | None) -> dict[int, int]:
    """Each run cell's baseline cell: itself for a baseline cell, the one its column's comparison pairs
    it with otherwise (`experiments.spec.baseline_pairs`), and for a best-epoch cell the cell whose runs
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


def deviation_keys(cells: pd.DataFrame, baseline: dict[str, Any], column: str | None) -> list[str]:
    """The deviation row key of each cell (`analysis.deviations`)."""
    bases = baseline_of(cells, baseline, column)
    names = []
    for i in cells.index:
        if cells.at[i, "reported"] == BEST_EPOCH:
            names.append(deviations.BEST_EPOCH)
        elif i in bases:
            names.append(deviations.describe(cells.at[i, "config"], cells.at[bases[i], "config"]))
        else:
            names.append("")
    return names


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
    bases = baseline_of(cells.loc[run_cells], table.baseline, table.column_field)
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
                                           metric_unit(table.metric)))
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
    for v, b in baseline_of(cells.loc[planned], table.baseline, table.column_field).items():
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
