"""What every figure shares, so that all kinds read alike on a page or a slide: the font sizes
(`STYLE`, applied by `@styled`), the grid of panels that wraps into at most `MAX_COLUMNS` columns, one
legend outside the panels' data, the title with the table's caveat, plain numbers on log axes, and the
cells and panels a spec's figure selects.

A new figure kind draws through these (docs/architecture.md, "Where to add").
"""

from __future__ import annotations

import functools
import math
import textwrap
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

from analysis.collect import Collection
from analysis.tables import SpecTable, display_value
from experiments.spec import matches
from wrn.config import RunConfig

MAX_COLUMNS = 2  # panels per row: two panels of a paper's width still read on a slide
# Font sizes for a figure printed at about its size (a column or a slide): read at 100 %.
STYLE = {"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 9.5, "legend.title_fontsize": 10, "figure.titlesize": 13}
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "X")  # one per series, so series differ without colour


def styled(draw):
    """Draw under `STYLE`: fonts are fixed when an artist is made, so the whole draw runs inside it."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


def run_configs(collection: Collection) -> dict[str, RunConfig]:
    runs = collection.runs
    return {rid: RunConfig.from_dict(cfg) for rid, cfg in zip(runs["run_id"], runs["config"], strict=True)
            if cfg is not None}


def panel_masks(fig_spec, frame: pd.DataFrame, configs: dict[Any, RunConfig | None], order: list) -> list[tuple[str, pd.Series]]:
    """[(title, row mask of `frame`)] for the figure's panels: one per value of ``panel``, one per
    hand-picked ``panels`` entry, or a single panel. `configs` maps frame index to each row's config."""
    if fig_spec.panels:
        out = []
        for panel in fig_spec.panels:
            mask = pd.Series([cfg is not None and any(matches(sel, cfg) for sel in panel.runs)
                              for cfg in (configs.get(i) for i in frame.index)], index=frame.index, dtype=bool)
            out.append((panel.title, mask))
        return out
    if fig_spec.panel and fig_spec.panel in frame.columns:
        values = [v for v in dict.fromkeys(order) if v is not None and v == v]
        return [(display_value(fig_spec.panel, v), frame[fig_spec.panel] == v) for v in values]
    return [("", pd.Series(True, index=frame.index))]


def grid(n_panels: int, panel_size: tuple[float, float], spare: bool = False, sharey: bool = False,
         columns: int = MAX_COLUMNS):
    """A figure of `n_panels` panels of `panel_size` inches in rows of at most `columns`, laid out by
    matplotlib's constrained layout. Returns (figure,
    the panels' axes, the spare cell's axes or None): with `spare` a grid that leaves a cell empty
    keeps it, blank, for the shared legend."""
    width, height = panel_size
    columns = max(1, min(n_panels, columns))
    rows = math.ceil(n_panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                             layout="constrained", sharey=sharey)
    flat = list(axes.flat)
    empty = flat[n_panels:]
    keep = empty[0] if spare and empty else None
    for ax in empty:
        if ax is keep:
            ax.axis("off")
        else:
            fig.delaxes(ax)
    return fig, flat[:n_panels], keep


def shared_legend(fig, handles: list, spare=None, columns: int = 2) -> None:
    """One legend for every panel, outside their data: in the grid's spare cell, else under the panels."""
    if not handles:
        return
    if spare is not None:
        spare.legend(handles=handles, loc="center", frameon=False)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(columns, len(handles)), frameon=False)


def legends(fig) -> list:
    """Every legend of `fig`, the figure's and its axes'."""
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def figure_title(fig, spec_fig, table: SpecTable) -> None:
    """The figure's title, and under it the table's caveat wrapped to the figure's width."""
    width_chars = max(40, int(fig.get_figwidth() * 72 / (0.55 * STYLE["figure.titlesize"])))
    lines = [spec_fig.title or table.title, *textwrap.wrap(table.caveat, width_chars)]
    fig.suptitle("\n".join(filter(None, lines)))


def no_runs_note(ax, n: int) -> None:
    if n == 0:
        ax.text(0.5, 0.5, "no finished runs yet", transform=ax.transAxes, ha="center", va="center",
                color="0.4", fontsize=11)


def run_cells(table: SpecTable) -> pd.DataFrame:
    """The table's cells of networks the spec trains (not other papers' reference rows)."""
    cells = table.cells
    return cells[cells["method"].fillna("") == ""] if len(cells) else cells


def rotate_long_labels(ax, labels: list[str]) -> None:
    """Slant the category labels when they would collide, anchored at their tick."""
    if max((len(line) for label in labels for line in label.split("\n")), default=0) > 8:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")


def plain_number(value: float, _position=None) -> str:
    """A tick label in plain digits: 0.05, 2, 500, 16000 (never 5×10⁻²)."""
    return f"{value:g}" if value >= 1e-4 else f"{value:.1e}"


def plain_log_axis(axis, low: float, high: float) -> None:
    """Tick a log-scaled `axis` over [low, high] in plain numbers: at 1-2-5 steps per decade when the
    data span a decade or more, else at evenly spaced round numbers (within a decade a log axis is
    nearly linear, and matplotlib would otherwise label only the minor ticks, as 2.3×10⁰)."""
    decades = math.log10(high / low) if low > 0 and high > low else 0.0
    if decades >= 1:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 1.0))
    else:
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_formatter(NullFormatter())
