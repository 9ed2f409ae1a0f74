"""The spec's figures, drawn with seaborn from the collected runs and the table's cells.

Five kinds (a spec's ``[[figures]]``):

- ``pointplot``: the table's metric by one factor (``x``), every finished seed a dot, our median a bar
  marker and the paper's value a red cross; one panel per value of ``panel``.
- ``curves``: Figures 2 and 3 as the paper draws them: per panel, test error solid on the right axis
  and training loss dashed on the left, one line per network (median over its finished seeds per
  epoch), each network with its own marker as well as its colour, the learning-rate drops of the
  schedule as dotted verticals, and the legend naming each network with its final error. A network
  with an official training log (`analysis.reference_logs`) has the log drawn beside it in thin lines,
  under any profile (a smoke run's two epochs next to the log's 200).
- ``timing_bars``: Figure 4: time per minibatch (ms), our bar next to the paper's on a log scale (a
  CPU's seconds and a Titan X's milliseconds both read), and beside it each network's time as a ratio
  to the first network's, the quantity that compares across devices; under each network's name its
  CIFAR-10 test error where the run store has it.
- ``error_vs_params``: Table 4's test error against parameter count, ours filled, the paper's hollow,
  a thin line from the paper's point to ours, depth by marker and colour.
- ``differences``: an ablation's comparisons (`analysis.tables.compare_to_baseline`): each row's
  difference from its baseline with its 95 % interval, coloured and shaped by verdict, over the band of
  differences its seeds could not have resolved; one panel per table column.

Made to be read on a page or a slide: panels wrap into at most `MAX_COLUMNS` columns, fonts are set
once (`STYLE`), a figure has one legend shared by its panels and set outside every panel's data (in
the grid's spare cell, or under the panels), log axes are labelled in plain numbers (0.05, 2, 500; no
"2×10⁰"), and `write_figures` stamps every figure with its profile, data, device and precision under
everything else drawn. Every figure is written as PNG and PDF; the draw functions return the
matplotlib Figure so tests can check its artists. Only finished runs are drawn (the tables list the
others).

One module per kind of figure, beside what they share:

- `common`: the style, the grid of panels, the shared legend, the title, plain log axes;
- `points`: ``pointplot`` and ``error_vs_params``, one point per cell;
- `curves`: ``curves``, per-epoch lines beside the official logs;
- `bars`: ``timing_bars``;
- `differences`: ``differences``;
- `files`: the kinds' registry (`DRAWERS`), the stamp, and the PNG and PDF files.

The modules import one another directly, never through this package, whose names come from them.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window: before pyplot is imported, which every module here does

from analysis.figures.bars import timing_bars  # noqa: E402
from analysis.figures.common import MAX_COLUMNS, STYLE, grid, legends, plain_log_axis, shared_legend, styled  # noqa: E402
from analysis.figures.curves import LR_DROP, OFFICIAL_LOG, curves  # noqa: E402
from analysis.figures.differences import differences  # noqa: E402
from analysis.figures.files import DRAWERS, figure_stem, stamp, write_figures  # noqa: E402
from analysis.figures.points import error_vs_params, label_points, pointplot  # noqa: E402

__all__ = ["DRAWERS", "LR_DROP", "MAX_COLUMNS", "OFFICIAL_LOG", "STYLE", "curves", "differences", "error_vs_params",
           "figure_stem", "grid", "label_points", "legends", "plain_log_axis", "pointplot", "shared_legend", "stamp",
           "styled", "timing_bars", "write_figures"]
