"""The words that go with a table's numbers, shared by its Markdown and its LaTeX captions: what the
intervals cover (`interval_note`), where the times were measured (`timing_note`), what the numbers and
each verdict mean (`method_note`), the seed noise behind the verdicts (`noise_lines`) and what the
comparisons' columns are (`comparison_note`).

Apart from the layout (`analysis.tables.layout`) because these explain the method, not a cell: the
statistics' constants they quote (`analysis.stats`) change here only.
"""

from __future__ import annotations

from analysis import stats
from analysis.improvement import MIN_RUNS_IMPROVEMENT
from analysis.tables.layout import TIME_EXTRAS, orders_papers, usual_runs
from analysis.tables.table import SpecTable, display_name, display_value, metric_unit
from wrn.config import expected_sizes


def interval_note(table: SpecTable) -> str:
    """What the intervals of a compact layout cover, for each number of runs in it."""
    counts = sorted({int(n) for n in table.cells["n"] if n >= 2})
    if not counts:
        return ""
    covered = ", ".join(f"{stats.median_interval(range(n))[2]:.0%} at n={n}" for n in counts)
    return (f"[Interval] of the median between order statistics of the runs, covering it with probability "
            f"{covered}; n={usual_runs(table)} runs per cell unless marked.")


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
            lines.append(f"- {where}σ = {first['sigma']:.3f} {metric_unit(table.metric)}, pooled over the cells' runs "
                         f"({int(first['sigma_df'])} degrees of freedom)")
        else:
            lines.append(f"- {where}too few runs to estimate σ ({int(first['sigma_df'])} pooled degrees of freedom, "
                         f"{stats.MIN_DF} needed: a second seed of any cell gives one): no verdict; seeds are "
                         f"planned at σ = {first['sigma']:.2f} {metric_unit(table.metric)}, above the published spreads")
    return lines


def comparison_note(table: SpecTable) -> str:
    """What the columns of the baseline comparisons are."""
    model = (f"Δ = variant − baseline in {display_name(table.metric)}, estimated in the column's cells × seeds "
             "model; seeds pair two cells only where their runs of a seed draw the same data order, crops and "
             "flips (else the field that changes the draws is named and the comparison is unpaired). α: the level "
             "of the test and of the interval (spent over the looks of a sequential launch); \"detects ≥\": the "
             f"smallest true difference the comparison resolves with {stats.POWER:.0%} power at that level; "
             "P(better): the chance that the variant's run beats the baseline's, over seed pairs (paired) or all "
             f"pairs of runs, with a bootstrap interval (from {MIN_RUNS_IMPROVEMENT} runs per side)")
    if orders_papers(table):
        legend = ("\"supported\": significant on the paper's side; \"contradicted\": on the other side; "
                  "\"unresolved\": not significant; \"too_few\": a side without runs, or too few to estimate σ; "
                  f"\"seeds needed\": per side, for {stats.POWER:.0%} power to resolve the paper's difference at α.")
    else:
        legend = ("\"higher\"/\"lower\": significant (two-sided); \"unresolved\": not; \"seeds for Δ\": per side, "
                  "to resolve a true difference of the size observed at α.")
    return f"{model}. {legend}"
