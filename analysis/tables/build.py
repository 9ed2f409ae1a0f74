"""A spec's table assembled: its cells from the collected runs and the paper's CSV
(`analysis.tables.cells`), its row fields, the caveats that say how the runs differ from the title,
and its comparisons against the baseline (`analysis.tables.comparisons`). What every writer and
figure of a spec reads, and the one place that decides the order of these steps.
"""

from __future__ import annotations

import pandas as pd

from analysis.collect import Collection
from analysis.reference_logs import stage_comparisons
from analysis.tables.cells import (PRECISION_KEY, CellBuilder, baseline_runs, cell_fields, precision_caveat,
                                   split_by_precision)
from analysis.tables.comparisons import compare_to_baseline, deviation_keys
from analysis.tables.table import BEST_EPOCH, SpecTable
from experiments.sequential import SequentialDesign
from experiments.schema import CONFIG_FIELDS
from experiments.spec import DEVIATION


def build_table(spec, collection: Collection, design: SequentialDesign | None = None) -> SpecTable:
    """The table of `spec` from its collected runs and the paper's CSV; `design`: the sequential
    design the runs were launched under, if any (`analysis.verdicts`)."""
    layout_spec = spec.table
    metric, column, extra = layout_spec.metric, layout_spec.columns, list(layout_spec.extra)
    rows = list(layout_spec.rows)
    runs = collection.runs[collection.runs["config"].notna()] if len(collection.runs) else collection.runs
    layout = [f for f in rows + ([column] if column else []) if f in CONFIG_FIELDS or f == "label"]
    key_fields, shown = cell_fields(runs, layout)
    runs, split = split_by_precision(runs, key_fields)
    key_fields += [PRECISION_KEY] if split else []
    builder = CellBuilder(metric, extra)
    builder.add_runs(runs, key_fields)
    if layout_spec.best_epoch_row:
        builder.add_runs(baseline_runs(runs, layout_spec.baseline), key_fields, reported=BEST_EPOCH)
    builder.attach_paper(spec, collection.plan)
    caveat = precision_caveat(split)
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
        cells[DEVIATION] = deviation_keys(cells, layout_spec.baseline, column)
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
