"""A table in LaTeX (<stem>.tex): booktabs floats of the compact layout and comparisons, each at the
largest font size whose width fits a page (`latex_size`), captioned with what the numbers are.

Apart from the Markdown because print has its own constraints: a page's width, escaping, numeric
columns set right-aligned with true minus signs.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from analysis.tables.layout import comparisons_frame, layout_frame
from analysis.tables.notes import comparison_note, interval_note, method_note, timing_note
from analysis.tables.table import SpecTable

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"$<$", ">": r"$>$", "–": "--", "—": "---", "Δ": r"$\Delta$", "−": r"$-$",
                  "×": r"$\times$", "÷": r"$\div$", "±": r"$\pm$", "σ": r"$\sigma$", "∞": r"$\infty$",
                  "≈": r"$\approx$", "✓": r"\checkmark{}", "α": r"$\alpha$", "≥": r"$\geq$", "≤": r"$\leq$"}
LATEX_PACKAGES = "booktabs,amssymb"  # \toprule/\midrule/\bottomrule; \checkmark
# A cell that reads as a number: a (signed) figure, "<0.001", or the placeholders "—" (no runs) and "∞".
_NUMERIC_CELL = re.compile(r"^(?:[+\-−<]?\.?\d|—|∞)")


def latex_escape(text: Any) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _numeric_column(values: pd.Series) -> bool:
    """Whether a column of rendered cells is numbers (right-aligned): every non-blank cell starts like one."""
    cells = [str(v).strip() for v in values if str(v).strip()]
    return bool(cells) and all(_NUMERIC_CELL.match(c) for c in cells)


def _latex_number(text: Any) -> str:
    """An escaped numeric cell with its minus signs set as minus signs (a hyphen in text mode)."""
    return re.sub(r"(?<![\w.])-(?=\.?\d)", r"$-$", latex_escape(text))


LATEX_TEXT_WIDTH = 22  # characters: a longer text column wraps in a p{} column this wide
# A printed table must fit a page's text width: 6.5 in (468 pt, letter paper with 1 in margins). Each font
# size, with the width of a character at it (Computer Modern's digits are 0.5 em; lowercase a little
# less), is tried in turn; columns are \tabcolsep (6 pt) apart on each side.
LATEX_TEXT_WIDTH_PT = 468.0
LATEX_SIZES = (("footnotesize", 4.0), ("scriptsize", 3.5))
LATEX_COLUMN_GAP_PT = 12.0


def latex_chars(frame: pd.DataFrame) -> int:
    """The characters of `frame`'s widest row as `_latex_table` sets it: each column its widest entry,
    a wrapping text column at most `LATEX_TEXT_WIDTH`."""
    total = 0
    for column in frame.columns:
        widest = max([len(str(column))] + [len(str(v)) for v in frame[column]])
        total += min(widest, LATEX_TEXT_WIDTH) if _wraps(frame[column]) else widest
    return total


def latex_size(frame: pd.DataFrame) -> tuple[str, float]:
    """(font size, width in points) of `frame` printed: the largest of `LATEX_SIZES` that fits the text
    width, else the smallest."""
    gaps = LATEX_COLUMN_GAP_PT * max(0, len(frame.columns) - 1)
    for size, char_pt in LATEX_SIZES:
        width = latex_chars(frame) * char_pt + gaps
        if width <= LATEX_TEXT_WIDTH_PT:
            return size, width
    return size, width


def _wraps(values: pd.Series) -> bool:
    return not _numeric_column(values) and any(len(str(v)) > LATEX_TEXT_WIDTH for v in values)


def _latex_table(frame: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table float at the size that fits a page (`latex_size`): numeric columns
    right-aligned, the rest left, long text wrapped in a p{} column, under its caption."""
    numeric = [_numeric_column(frame[c]) for c in frame.columns]
    spec = "".join("r" if n else (f"p{{{LATEX_TEXT_WIDTH * 0.5:g}em}}" if _wraps(frame[c]) else "l")
                   for c, n in zip(frame.columns, numeric, strict=True))
    size, _ = latex_size(frame)
    lines = [r"\begin{table}[htbp]", r"\centering", rf"\{size}", rf"\caption{{{latex_escape(caption)}}}",
             rf"\label{{{label}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_number(v) if n else latex_escape(v) for v, n in zip(row, numeric, strict=True)) + r" \\"
              for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _latex_label(table: SpecTable, part: str = "") -> str:
    profile = "" if table.profile in ("", "paper") else "-" + re.sub(r"[^A-Za-z0-9]+", "-", table.profile).strip("-")
    return f"tab:{table.spec.replace('_', '-')}{profile}{part}"


def latex_frames(table: SpecTable, verdicts: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compact layout (with the "vs paper" columns only when `verdicts`) and comparisons that
    `to_latex` sets."""
    layout = layout_frame(table, compact=True)
    if not verdicts and not layout.empty:
        layout = layout[[c for c in layout.columns if not c.endswith("vs paper")]]
    return layout, comparisons_frame(table, compact=True)


def to_latex(table: SpecTable, verdicts: bool = False) -> str:
    """The paper's layout and, if any, the baseline comparisons as booktabs table floats (needs
    \\usepackage{booktabs,amssymb}), compact enough for a page (`latex_width`), each captioned with what
    its numbers are, where the times were measured and which runs they summarise; `verdicts` adds the
    "vs paper" columns to the layout."""
    runs = f"Runs: {table.description}."
    parts = [f"% {table.title}: generated by analysis.report; needs \\usepackage{{{LATEX_PACKAGES}}}"]
    layout, comps = latex_frames(table, verdicts)
    if not layout.empty:
        caption = " ".join(filter(None, [f"{table.title}.", method_note(table, verdicts), interval_note(table),
                                         timing_note(table), runs, table.caveat]))
        parts.append(_latex_table(layout, caption, _latex_label(table)))
    if not comps.empty:
        first = table.comparisons.iloc[0]
        against = ", ".join(([] if "vs" in comps else [f"baseline {first['baseline']}"]) +
                            ([] if "α" in comps else [f"α = {first['alpha']:.3g}"]))
        caption = (f"{table.title}: each variant against its baseline{f' ({against})' if against else ''}. "
                   f"{comparison_note(table)} {runs}")
        parts += ["", _latex_table(comps, caption, _latex_label(table, "-vs-baseline"))]
    return "\n".join(parts) + "\n"
