"""An ablation's comparisons (`differences`, `analysis.tables.comparisons.compare_to_baseline`): each
row's difference from its baseline with its interval, coloured and shaped by verdict, over the band
of differences its seeds could not have resolved; one panel per table column.
"""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from analysis import stats
from analysis.collect import Collection
from analysis.figures.common import figure_title, grid, no_runs_note, shared_legend, styled
from analysis.tables import SpecTable, display_name, display_value

VERDICT_STYLES = {stats.HIGHER: ("#d62728", "^"), stats.LOWER: ("#1f77b4", "v"), stats.SUPPORTED: ("#2ca02c", "^"),
                  stats.CONTRADICTED: ("#d62728", "v")}
UNRESOLVED_STYLE = ("0.45", "o")


@styled
def differences(spec_fig, table: SpecTable, collection: Collection):
    """Each comparison with the baseline: the difference and its 95 % interval, red up-triangles or
    blue down-triangles where the seeds resolve it (grey dots where not), over a grey band of ± the
    smallest difference they resolve with 80 % power. Rows are named as the table names them (the
    deviation, or the network)."""
    comps = table.comparisons
    column = table.column_field
    panels = list(dict.fromkeys(comps[column])) if column and len(comps) else [None]
    rows = max(1, len(comps) // max(1, len(panels)))
    fig, axes, _ = grid(len(panels), (4.6, 0.36 * rows + 1.4), sharey=True)
    for ax, panel in zip(axes, panels):
        part = comps if panel is None else comps[comps[column] == panel]
        names = [] if part.empty else list(part["deviation"] if "deviation" in part else part["label"])
        y = np.arange(len(part))[::-1]
        for yi, (_, row) in zip(y, part.iterrows()):
            color, marker = VERDICT_STYLES.get(row["verdict"], UNRESOLVED_STYLE)
            if np.isfinite(row["ci_low"]):
                ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color=color, linewidth=2)
            ax.plot([row["diff"]], [yi], marker=marker, markersize=7, color=color, linestyle="none")
            if np.isfinite(row["detectable"]):
                ax.fill_betweenx([yi - 0.4, yi + 0.4], -row["detectable"], row["detectable"], color="0.92", zorder=0)
        ax.axvline(0.0, color="0.3", linewidth=0.8)
        ax.set_yticks(y, names)
        ax.set_xlabel(f"Δ {display_name(table.metric)} vs the baseline")
        ax.set_title(display_value(column, panel) if panel is not None else "")
        no_runs_note(ax, len(part))
    handles = [Line2D([], [], marker=VERDICT_STYLES[v][1], color=VERDICT_STYLES[v][0], label=f"{v}: resolved by the seeds")
               for v in (stats.HIGHER, stats.LOWER)]
    handles.append(Line2D([], [], marker=UNRESOLVED_STYLE[1], color=UNRESOLVED_STYLE[0],
                          label="not resolved (grey band: ± what the seeds resolve)"))
    shared_legend(fig, handles, columns=3)
    figure_title(fig, spec_fig, table)
    return fig
