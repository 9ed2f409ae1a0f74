"""Figures of one point per cell: `pointplot` (the table's metric by one factor, every finished seed
a dot, our median a bar marker, the paper's value a red cross with its own seed noise) and
`error_vs_params` (Table 4's error against parameter count, ours filled and the paper's hollow, each
point named where its name overlaps nothing: `label_points`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox
from scipy.stats import norm

from analysis import stats
from analysis.collect import Collection
from analysis.figures.common import (MARKERS, figure_title, grid, no_runs_note, panel_masks, plain_log_axis,
                                     rotate_long_labels, run_cells, run_configs, shared_legend, styled)
from analysis.tables import SpecTable, display_name, display_value

PAPER_COLOR = "#d62728"


def paper_band(cell: pd.Series) -> float:
    """Half the 95 % band of the paper's value from its own seed noise: 1.96 σ times the standard
    deviation of a median of the paper's runs (0 where the table has no σ, e.g. for a time)."""
    sigma = cell.get("sigma")
    if sigma is None or not np.isfinite(float(sigma)):
        return 0.0
    runs = cell.get("paper_runs")
    runs = int(runs) if runs is not None and np.isfinite(float(runs)) else 1
    return float(norm.isf(0.025) * float(sigma) * np.sqrt(stats.median_variance_factor(runs)))


@styled
def pointplot(spec_fig, table: SpecTable, collection: Collection):
    """Test error (the figure's metric) by factor: seeds as dots (a marker per hue value), our median,
    the paper's value."""
    metric = spec_fig.metric or table.metric
    x = spec_fig.x or "label"
    cells = run_cells(table)
    finished = collection.finished
    configs = run_configs(collection)
    cell_configs = dict(zip(cells.index, cells["config"], strict=True)) if len(cells) else {}
    panel_order = list(cells[spec_fig.panel]) if spec_fig.panel and spec_fig.panel in cells else []
    cell_panels = panel_masks(spec_fig, cells, cell_configs, panel_order)
    run_panels = dict(panel_masks(spec_fig, finished, {i: configs.get(r) for i, r in zip(finished.index, finished["run_id"], strict=True)},
                              panel_order))
    hue_labels = [] if not spec_fig.hue or not len(finished) else list(dict.fromkeys(
        f"{display_name(spec_fig.hue)} {display_value(spec_fig.hue, v) or 'none'}" for v in finished[spec_fig.hue]))
    hue_style = {name: (f"C{i}", MARKERS[i % len(MARKERS)]) for i, name in enumerate(hue_labels)}
    categories = max((len(set(cells.loc[mask, x])) for _, mask in cell_panels if x in cells), default=1)
    fig, axes, spare = grid(len(cell_panels), (min(6.5, max(4.2, 0.7 * categories + 1.6)), 4.2), spare=True)
    for ax, (title, cell_mask) in zip(axes, cell_panels, strict=True):
        panel_cells = cells[cell_mask]
        order = [display_value(x, v) for v in dict.fromkeys(panel_cells[x])] if x in panel_cells else []
        runs = finished[run_panels.get(title, pd.Series(True, index=finished.index))] if len(finished) else finished
        data = pd.DataFrame({"x": [display_value(x, v) for v in runs[x]], "y": runs[metric].astype(float)}) \
            if len(runs) else pd.DataFrame({"x": [], "y": []})
        if spec_fig.hue and len(runs):
            data["hue"] = [f"{display_name(spec_fig.hue)} {display_value(spec_fig.hue, v) or 'none'}" for v in runs[spec_fig.hue]]
        if len(data):
            for name, part in data.groupby("hue", sort=False) if "hue" in data else [("", data)]:
                color, marker = hue_style.get(name, ("C0", "o"))
                sns.stripplot(data=part, x="x", y="y", order=order, ax=ax, jitter=0.15, size=5, alpha=0.8,
                              color=color, marker=marker, legend=False)
            sns.pointplot(data=data, x="x", y="y", order=order, estimator=np.median, errorbar=None, ax=ax,
                          linestyle="none", markers="_", markersize=22, color="black")
        positions = {name: i for i, name in enumerate(order)}
        for _, cell in panel_cells.iterrows():
            if np.isfinite(cell["paper"]):
                ax.errorbar(positions[display_value(x, cell[x])], cell["paper"], yerr=paper_band(cell), marker="X",
                            markersize=10, color=PAPER_COLOR, linestyle="none", capsize=4, zorder=5)
        if not order:
            ax.set_xticks([])
        ax.set_xlim(-0.5, max(len(order) - 0.5, 0.5))
        ax.set_title(title)
        ax.set_xlabel(display_name(x))
        ax.set_ylabel(display_name(metric))
        rotate_long_labels(ax, order)
        no_runs_note(ax, len(runs))
    handles = [Line2D([], [], marker=marker, color=color, linestyle="none", label=f"our runs, {name}")
               for name, (color, marker) in hue_style.items()] or \
        [Line2D([], [], marker="o", color="C0", linestyle="none", label="our runs (one dot per seed)")]
    handles.append(Line2D([], [], marker="_", markersize=14, color="black", linestyle="none", label="our median"))
    if table.has_paper:
        handles.append(Line2D([], [], marker="X", color=PAPER_COLOR, linestyle="none",
                              label="paper, ±95 % of its seed noise"))
    shared_legend(fig, handles, spare, columns=len(handles))
    figure_title(fig, spec_fig, table)
    return fig


# Where a point's name may go: offsets in points and the alignment that keeps the name clear of the
# point, nearest first (`label_points`).
LABEL_PLACES = tuple((sx * r, sy * r, {1: "left", 0: "center", -1: "right"}[sx], {1: "bottom", 0: "center", -1: "top"}[sy])
                     for r in (5, 11, 18) for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)))


def label_points(fig, panels: list[tuple[Any, list[tuple[float, float, str, Any]]]]) -> None:
    """Per (axes, points) of `panels`, name each (x, y, text, colour) beside its point, where the name
    stays inside the panel and overlaps no other name or point: the first such place of
    `LABEL_PLACES`, else the place that overlaps least. The names stay out of the layout, so placing
    them does not move the panels."""
    if not any(points for _, points in panels):
        return
    fig.canvas.draw()  # the final layout: names are placed where they will be drawn
    renderer = fig.canvas.get_renderer()
    for ax, points in panels:
        _label_panel(ax, points, renderer)


def _label_panel(ax, points: list[tuple[float, float, str, Any]], renderer, fontsize: float = 8) -> None:
    fig = ax.figure
    frame = ax.get_window_extent(renderer)
    radius = 5 * fig.dpi / 72
    taken = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
             for px, py in ax.transData.transform([(x, y) for x, y, _, _ in points])]

    def overlap(box) -> float:
        outside = box.width * box.height - _area(Bbox.intersection(box, frame))
        return outside + sum(_area(Bbox.intersection(box, t)) for t in taken)

    for x, y, text, color in points:
        best = None
        for dx, dy, ha, va in LABEL_PLACES:
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                               fontsize=fontsize, color=color)
            note.set_in_layout(False)
            box = note.get_window_extent(renderer)
            cost = overlap(box)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box)
            else:
                note.remove()
            if cost == 0:
                break
        taken.append(best[2])


def _area(box) -> float:
    return 0.0 if box is None else box.width * box.height


@styled
def error_vs_params(spec_fig, table: SpecTable, collection: Collection):
    """Test error against parameter count: our medians filled, the paper's hollow, joined by a thin
    line, each named; the hue (depth) by colour and marker."""
    metric = spec_fig.metric or table.metric
    cells = run_cells(table).copy()
    cell_configs = dict(zip(cells.index, cells["config"], strict=True)) if len(cells) else {}
    panel_order = list(cells[spec_fig.panel]) if spec_fig.panel and spec_fig.panel in cells else []
    panels = panel_masks(spec_fig, cells, cell_configs, panel_order)
    hue = spec_fig.hue
    hue_values = list(dict.fromkeys(cells[hue])) if hue and hue in cells else [None]
    palette = dict(zip(hue_values, sns.color_palette("viridis", max(1, len(hue_values))), strict=False))
    marker_of = {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(hue_values)}
    fig, axes, spare = grid(len(panels), (5.4, 4.4), spare=True)
    to_label = []
    for ax, (title, mask) in zip(axes, panels, strict=True):
        panel = cells[mask]
        names = []
        xs = []
        for _, cell in panel.iterrows():
            key = cell[hue] if hue else None
            color, marker = palette.get(key, "C0"), marker_of.get(key, "o")
            params = cell["params"] if "params" in cell and np.isfinite(cell["params"]) else np.nan
            paper_params = cell.get("paper_params", np.nan)
            ours = np.isfinite(cell["median"]) and np.isfinite(params)
            paper = np.isfinite(cell["paper"]) and np.isfinite(paper_params)
            if ours:
                ax.scatter(params / 1e6, cell["median"], color=color, marker=marker, s=42, zorder=3)
                names.append((params / 1e6, cell["median"], cell["label"], "0.1"))
                xs.append(params / 1e6)
            if paper:
                ax.scatter(paper_params / 1e6, cell["paper"], facecolors="none", edgecolors=color, marker=marker,
                           s=42, zorder=3)
                xs.append(paper_params / 1e6)
                if not ours:
                    names.append((paper_params / 1e6, cell["paper"], cell["label"], "0.45"))
            if ours and paper:
                ax.plot([paper_params / 1e6, params / 1e6], [cell["paper"], cell["median"]], color=color,
                        linewidth=0.7, alpha=0.6, zorder=2)
        if xs:
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
            plain_log_axis(ax.xaxis, min(xs) / 1.6, max(xs) * 1.6)
            ax.margins(y=0.12)
        ax.set_xlabel("parameters (millions, log scale)")
        ax.set_ylabel(display_name(metric))
        ax.set_title(title)
        no_runs_note(ax, int(panel["n"].sum()) if len(panel) else 0)
        to_label.append((ax, names))
    handles = [Line2D([], [], marker="o", color="0.3", linestyle="none", label="ours (median)")]
    if table.has_paper:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none", color="0.3", linestyle="none",
                              label="paper (a line joins it to ours)"))
    if hue:
        handles += [Line2D([], [], marker=marker_of[v], color=palette[v], linestyle="none",
                           label=f"{display_name(hue)} {display_value(hue, v)}") for v in hue_values]
    shared_legend(fig, handles, spare, columns=len(handles))
    figure_title(fig, spec_fig, table)
    label_points(fig, to_label)
    return fig
