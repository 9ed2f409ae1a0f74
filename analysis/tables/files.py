"""A table's files: <stem>.md, <stem>.tex, the tidy cells in <stem>.csv and the comparisons in
<stem>.vs_baseline.csv, each written atomically; the CSVs with every number rounded by its kind
(`csv_rounding`), so that the float noise of arithmetic never reaches a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.tables.latex import to_latex
from analysis.tables.table import SpecTable
from analysis.tables.text import to_markdown
from wrn.files import atomic_write_text

# What a cell says about the paper's value: left out of the tables of a spec without paper numbers.
PAPER_COMPARISON_COLUMNS = ("paper", "paper_runs", "paper_recipe", "delta", "p_value", "p_adjusted", "alpha",
                            "detectable", "equivalence_margin", "p_equivalence", "verdict_vs_paper")


def tidy_cells(table: SpecTable) -> pd.DataFrame:
    """The cells as written to <spec>.csv: every number, no Python objects, and what the runs are;
    no comparison with the paper for a spec without paper numbers."""
    dropped = ["config"] + ([] if table.has_paper else list(PAPER_COMPARISON_COLUMNS))
    return table.cells.drop(columns=dropped, errors="ignore").assign(profile=table.profile)


# How many digits each kind of number keeps in a CSV (the float noise of arithmetic, 6.06 - 5.73 =
# 0.3299999999999992, never reaches a file). Error percentages and their differences, intervals and
# σ: 3 decimals, finer than one test image of any test set (1 of CIFAR's 10,000 is 0.01 pp, 1 of SVHN's
# 26,032 is 0.004 pp), so no two distinct errors merge; p-values and test levels (alpha, which alpha
# spending halves round after round: 0.0125): 3 significant digits, so small ones stay readable;
# losses: 4 significant digits; seconds and milliseconds: 2 decimals; coverages: 3 decimals; any
# other float (config values such as lr = 0.1): 6 significant digits. A column whose values are all
# whole numbers (counts, seeds, parameter counts, depths) is written as integers.
CSV_PERCENT_COLUMNS = ("median", "min", "max", "ci_low", "ci_high", "paper", "delta", "diff", "paper_diff",
                       "detectable", "difference_sd", "sigma")
CSV_P_VALUE_COLUMNS = ("p_value", "p_adjusted", "alpha")
CSV_FRACTION_COLUMNS = ("coverage",)


def csv_rounding(column: str) -> tuple[str, int]:
    """("decimals" | "significant", digits) for a CSV column, by the kind of number its name says."""
    if column in CSV_P_VALUE_COLUMNS:
        return "significant", 3
    if column in CSV_PERCENT_COLUMNS or column.endswith("_error"):
        return "decimals", 3
    if column.endswith("loss"):
        return "significant", 4
    if column in CSV_FRACTION_COLUMNS:
        return "decimals", 3
    if column.endswith(("_s", "_ms")) or column.startswith("time_ms"):
        return "decimals", 2
    return "significant", 6


def _round(value: float, how: str, digits: int) -> float:
    if not np.isfinite(value):
        return value
    if how == "significant":
        return float(f"{value:.{digits}g}")
    return round(value, digits)


def rounded_for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every float column rounded by its kind (`csv_rounding`), whole-number columns as
    integers, unrounded (blank where missing; "inf" stays, e.g. seeds needed for a difference of zero)."""
    out = frame.copy()
    for column in out.columns:
        values = _as_floats(out[column])
        if values is None:
            continue
        finite = values[np.isfinite(values)]
        if len(finite) and (finite == finite.round()).all():
            out[column] = values.map(lambda v: int(v) if np.isfinite(v) else ("" if np.isnan(v) else str(v)))
            continue
        how, digits = csv_rounding(str(column))
        out[column] = values.map(lambda v, how=how, digits=digits: _round(v, how, digits))
    return out


def _as_floats(values: pd.Series) -> pd.Series | None:
    """A column of numbers as floats (None for text, booleans and empty columns): the comparisons and
    verdicts hold numbers in object columns."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return None
    if pd.api.types.is_float_dtype(values):
        return values.astype(float)
    present = values.dropna()
    if not len(present) or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                                   for v in present):
        return None
    return values.astype(float)


def csv_text(frame: pd.DataFrame) -> str:
    """`frame` as CSV text, its numbers rounded by kind (`rounded_for_csv`)."""
    return rounded_for_csv(frame).to_csv(index=False)


def write_tables(table: SpecTable, out_dir: Path, stem: str, appendix: str = "") -> list[Path]:
    """<stem>.md (with `appendix` at its end), <stem>.tex, <stem>.csv (tidy cells) and, for
    ablations, <stem>.vs_baseline.csv."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".md", to_markdown(table) + appendix), (".tex", to_latex(table)),
                         (".csv", csv_text(tidy_cells(table)))):
        path = out_dir / f"{stem}{suffix}"
        atomic_write_text(path, text)
        written.append(path)
    if not table.comparisons.empty:
        path = out_dir / f"{stem}.vs_baseline.csv"
        atomic_write_text(path, csv_text(table.comparisons))
        written.append(path)
    return written
