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

Building and rendering are apart, in modules of one concern each. They import one another directly,
never through this package, whose names come from them (that would be an import cycle):

- `table`: `SpecTable`, what both sides share, and how names and values are displayed;
- `cells`: the cells from the collected runs and the paper's CSV;
- `comparisons`: each cell against its baseline, and what a sequential launch may expect to decide;
- `build`: a spec's table assembled (`build_table`);
- `layout`: the paper's layout and the comparisons as strings, shared by Markdown and LaTeX;
- `notes`: the words beside the numbers (what they are, the seed noise, the verdicts' meaning);
- `text`, `latex`: Markdown and LaTeX;
- `files`: the .md, .tex and .csv files, the CSVs' rounding.

The names below are the ones the rest of the suite uses.
"""

from __future__ import annotations

from analysis.tables.build import build_table
from analysis.tables.comparisons import Expectation, cell_name, compare_to_baseline, expected_resolution
from analysis.tables.files import csv_rounding, csv_text, rounded_for_csv, tidy_cells, write_tables
from analysis.tables.latex import LATEX_TEXT_WIDTH_PT, latex_escape, latex_frames, latex_size, to_latex
from analysis.tables.layout import comparisons_frame, layout_frame, verdict_text
from analysis.tables.notes import comparison_note, interval_note, method_note, noise_lines, timing_note
from analysis.tables.table import BEST_EPOCH, FINAL_EPOCH, SpecTable, display_name, display_value
from analysis.tables.text import to_markdown

__all__ = ["BEST_EPOCH", "FINAL_EPOCH", "LATEX_TEXT_WIDTH_PT", "Expectation", "SpecTable", "build_table", "cell_name",
           "compare_to_baseline", "comparison_note", "comparisons_frame", "csv_rounding", "csv_text", "display_name",
           "display_value", "expected_resolution", "interval_note", "latex_escape", "latex_frames", "latex_size",
           "layout_frame", "method_note", "noise_lines", "rounded_for_csv", "tidy_cells", "timing_note", "to_latex",
           "to_markdown", "verdict_text", "write_tables"]
