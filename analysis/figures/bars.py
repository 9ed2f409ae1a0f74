"""Figure 4 (`timing_bars`): the time per minibatch of each network, our bar next to the paper's on a
log scale (a CPU's seconds and a Titan X's milliseconds both read), and beside it each time as a ratio
to the first network's, the comparison that holds across devices; under each network's name its
CIFAR-10 test error where the run store has it.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.collect import Collection
from analysis.figures.common import (figure_title, grid, no_runs_note, plain_log_axis, plain_number, run_cells,
                                     shared_legend, styled)
from analysis.tables import SpecTable, display_name

OURS, PAPER_TITAN_X = "ours (median)", "paper (Titan X)"
TIMING_STYLE = {OURS: dict(facecolor="C0"), PAPER_TITAN_X: dict(facecolor="0.78", hatch="//", edgecolor="0.4")}


def _bars(ax, values: dict[str, list[float]], order: list[str], fmt) -> None:
    """Grouped bars, one group per network, one bar per source, each labelled with its value."""
    width = 0.8 / max(1, len(values))
    for j, (source, heights) in enumerate(values.items()):
        xs = np.arange(len(order)) + (j - (len(values) - 1) / 2) * width
        bars = ax.bar(xs, heights, width=width, label=source, **TIMING_STYLE[source])
        ax.bar_label(bars, labels=["" if not np.isfinite(h) else fmt(h) for h in heights], fontsize=8, padding=2)


@styled
def timing_bars(spec_fig, table: SpecTable, collection: Collection, error_labels: dict[str, float] | None = None):
    """Figure 4: time per minibatch (ms) per network, ours next to the paper's on a log scale, and
    each time as a ratio to the first network's (the comparison that holds across devices); under each
    network's name its CIFAR-10 test error (from the run store, when known)."""
    metric = spec_fig.metric or table.metric
    cells = run_cells(table)
    order = list(dict.fromkeys(cells["label"])) if len(cells) else []
    first = {label: cells[cells["label"] == label].iloc[0] for label in order}
    times = {OURS: [float(first[n]["median"]) for n in order]}
    if table.has_paper and any(np.isfinite(first[n]["paper"]) for n in order):
        times[PAPER_TITAN_X] = [float(first[n]["paper"]) for n in order]
    base = next((i for i, n in enumerate(order) if all(np.isfinite(v[i]) for v in times.values())), None)
    ratios = {source: [v / values[base] for v in values] if base is not None else [math.nan] * len(order)
              for source, values in times.items()}
    labels = {n: e for n, e in (error_labels or {}).items() if np.isfinite(e)}  # no finished training run: no label
    ticks = [f"{n}\n{labels[n]:.2f}% error" if n in labels else n for n in order]
    fig, (time_ax, ratio_ax), _ = grid(2, (max(6.0, 1.5 * len(order) + 1.2), 3.6), columns=1)
    _bars(time_ax, times, order, lambda v: plain_number(float(f"{v:.3g}")))  # 813 ms, not 813.075
    finite = [v for values in times.values() for v in values if np.isfinite(v) and v > 0]
    if finite:
        time_ax.set_yscale("log")
        time_ax.set_ylim(min(finite) / 2, max(finite) * 3)  # room for the labels on top
        plain_log_axis(time_ax.yaxis, min(finite) / 2, max(finite) * 3)
    time_ax.set_ylabel("ms (log scale)" if finite else "ms")
    time_ax.set_title(table.metric_label if metric == table.metric else display_name(metric))
    _bars(ratio_ax, ratios, order, lambda v: f"{v:.2f}×")
    ratio_ax.set_ylabel("time ratio")
    ratio_ax.set_title(f"time ÷ {order[base]}'s: the comparison that holds across devices" if base is not None
                       else "time ratio")
    top = max((v for values in ratios.values() for v in values if np.isfinite(v)), default=1.0)
    ratio_ax.set_ylim(0, top * 1.15)
    for ax in (time_ax, ratio_ax):
        ax.set_xticks(range(len(order)), ticks)
        ax.set_xlim(-0.5, max(len(order), 1) - 0.5)
        ax.set_xlabel("network (depth-k)")
        no_runs_note(ax, int(cells["n"].sum()) if len(cells) else 0)
    notes = []
    if len(cells) and any("not compared" in str(n) for n in cells["notes"]):
        notes.append(f"ours: {table.metric_label}; the paper's bars, of another minibatch, are not drawn")
    if labels:
        notes.append("under each network: our CIFAR-10 test error (median of finished runs)")
    handles = [Patch(label=source, **TIMING_STYLE[source]) for source in times]
    handles += [Line2D([], [], linestyle="none", label=note) for note in notes]
    shared_legend(fig, handles, columns=len(times))
    figure_title(fig, spec_fig, table)
    return fig
