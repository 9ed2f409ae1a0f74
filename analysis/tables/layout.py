"""A table as the paper lays it out, in strings: the layout of the cells (`layout_frame`: per network
a row, per column value ours / paper / Δ / vs paper, then the extra columns) and of the baseline
comparisons (`comparisons_frame`), with every number formatted once.

Markdown and LaTeX (`analysis.tables.text`, `analysis.tables.latex`) set the same frames, so that
the two never disagree on a number; `compact` is the layout for print, with short heads and the
columns a caption can say once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from analysis.tables.table import BEST_EPOCH, SpecTable, display_name, display_value, metric_unit
from analysis.verdicts import SEEDS_SHOWN
from experiments.spec import DEVIATION, matches

SHORT_DATASET_NAMES = {"cifar10": "C10", "cifar100": "C100", "svhn": "SVHN", "imagenet": "ImageNet"}  # print
# Column heads for print (`compact`): the long ones a printed table cannot afford.
SHORT_HEADS = {"# params (ours)": "params", "time per epoch (s) (ours)": "s/epoch",
               "time per epoch (s) (paper)": "paper s/epoch", "paper's ordering": "ordering", "seeds needed": "needed",
               "seeds for Δ": "needed", "Δ [CI 1−α]": "Δ [CI]", "vs baseline": "verdict", "dataset": "data"}


def verdict_text(cell: pd.Series, unit: str = "pp", compact: bool = False) -> str:
    """A cell's verdict against the paper as the tables print it: the CSV's word, with what it rests on
    ("indistinguishable (could detect ≥ 0.41 pp)"; `compact`: "indist. (≥ 0.41)")."""
    verdict = cell.get("verdict_vs_paper", "")
    if verdict == stats.INDISTINGUISHABLE:
        if compact:
            return f"indist. (≥ {cell['detectable']:.2f})"
        return f"indistinguishable (could detect ≥ {cell['detectable']:.2f} {unit})"
    if verdict == stats.EQUIVALENT:
        if compact:
            return f"equiv. (±{cell['equivalence_margin']:g})"
        return f"equivalent (within ±{cell['equivalence_margin']:g} {unit})"
    if verdict in (stats.HIGHER, stats.LOWER):
        return verdict.upper()
    if verdict == stats.TOO_FEW:
        if not cell["n"] or compact:
            return "too few" if compact else "too few (no run)"
        return f"too few (σ from {int(cell['sigma_df'])} of {stats.MIN_DF} degrees of freedom)"
    return {stats.NOT_COMPARABLE: "not comparable", stats.NOT_APPLICABLE: "n/a (generated data)"}.get(verdict, "")


def _fmt(value: float, digits: int = 2) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fmt_signed(value: float, digits: int = 2) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def _fmt_paper(value: float, digits: int) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fmt_extra(name: str, value: float, paper: bool) -> str:
    if value is None or not np.isfinite(value):
        return ""
    if name == "params":
        return f"{value / 1e6:.1f}M" if paper else f"{int(round(value)):,}"
    return f"{value:g}" if paper else f"{value:.1f}"


def _digits(metric: str) -> int:
    return 1 if metric == "time_ms" else 2


def _ours(cell: pd.Series, digits: int, usual_n: int | None = None) -> str:
    """Median [interval] (its coverage) n=runs, e.g. "5.70 [5.50, 5.90] (94 %) n=5"; compact for print
    when `usual_n` is given: "5.70 [5.50, 5.90]", with n only where it is not `usual_n` (the caption
    states the coverage of each n) and no notes."""
    if cell["n"] == 0:
        text = "—"
    else:
        text = _fmt(cell["median"], digits)
        if np.isfinite(cell["ci_low"]):
            text += f" [{_fmt(cell['ci_low'], digits)}, {_fmt(cell['ci_high'], digits)}]"
            text += "" if usual_n else f" ({cell['coverage']:.0%})"
        text += "" if usual_n == cell["n"] else f" n={int(cell['n'])}"
    if cell.get("notes") and not usual_n:
        text += f"; {cell['notes']}"
    return text


def usual_runs(table: SpecTable) -> int:
    """The most common number of finished runs among the cells that have any (0 without runs)."""
    counts = table.cells.loc[table.cells["n"] > 0, "n"]
    return int(counts.mode().iat[0]) if len(counts) else 0


def layout_frame(table: SpecTable, compact: bool = False) -> pd.DataFrame:
    """The table as the paper lays it out, as strings: one row per network, per column value the
    columns ours / paper / Δ / vs paper (ours alone when the spec has no paper numbers), then the extra
    columns (ours and paper; a time per epoch also as a ratio to the baseline's, the quantity that
    compares across devices). `compact`, for print: intervals without their coverage and n only where
    it is unusual (`interval_note` says both), the paper's parameter counts left out."""
    cells = table.cells
    if cells.empty:
        return pd.DataFrame()
    usual_n = usual_runs(table) if compact else None
    digits, with_paper = _digits(table.metric), table.has_paper
    row_fields = [f for f in table.row_fields if f in cells.columns]
    row_keys = pd.Series(["|".join(display_value(f, cells.at[i, f]) for f in row_fields) for i in cells.index],
                         index=cells.index)
    col_values = list(dict.fromkeys(cells[table.column_field])) if table.column_field else [None]
    base = _baseline_extras(table)
    records = []
    for key in dict.fromkeys(row_keys):
        group = cells[row_keys == key]
        first = group.iloc[0]
        record = {display_name(f): display_value(f, first[f]) for f in row_fields}
        for name in table.extra:
            record.update(_extra_columns(table, name, group, base.get(name, {}), with_paper, compact))
        for col in col_values:
            prefix = "" if col is None else f"{_column_name(table.column_field, col, compact)} "
            match = group[group[table.column_field] == col] if col is not None else group
            cell = match.iloc[0] if len(match) else None
            record[f"{prefix}ours"] = "" if cell is None else _ours(cell, digits, usual_n)
            if with_paper:
                record[f"{prefix}paper"] = "" if cell is None else _fmt_paper(cell["paper"], digits)
                if not compact:
                    record[f"{prefix}Δ"] = "" if cell is None else _fmt_signed(cell["delta"], digits)
                record[f"{prefix}vs paper"] = "" if cell is None else verdict_text(cell, metric_unit(table.metric), compact)
        records.append(record)
    frame = pd.DataFrame(records)
    return frame.rename(columns=lambda c: _short_head(c, table)) if compact else frame


def _column_name(field_name: str, value: Any, compact: bool) -> str:
    if compact and field_name == "dataset":
        return SHORT_DATASET_NAMES.get(str(value), str(value))
    return display_value(field_name, value)


def _short_head(head: str, table: SpecTable) -> str:
    """A column head for print: `SHORT_HEADS`, a ratio to the baseline as "÷ base" (the caption names it)."""
    base = _baseline_extras(table)
    for extra in base.values():
        head = head.replace(f"÷ {extra['label']} (ours)", "÷ base").replace(f"÷ {extra['label']} (paper)", "paper ÷ base")
    return SHORT_HEADS.get(head, head)


TIME_EXTRAS = ("epoch_time_s",)  # times that only compare across devices as ratios


def _baseline_extras(table: SpecTable) -> dict[str, dict[str, float]]:
    """The baseline cell's time extras, ours and the paper's: what ratios divide by."""
    if not table.baseline:
        return {}
    cells = table.cells
    bases = [i for i in cells.index if cells.at[i, "config"] is not None and matches(table.baseline, cells.at[i, "config"])]
    if not bases:
        return {}
    b = bases[0]
    return {name: {"ours": cells.at[b, name], "paper": cells.at[b, f"paper_{name}"], "label": cells.at[b, "label"]}
            for name in table.extra if name in TIME_EXTRAS}


def _extra_columns(table: SpecTable, name: str, group: pd.DataFrame, base: dict[str, Any],
                   with_paper: bool, compact: bool = False) -> dict[str, str]:
    """An extra's columns: ours and the paper's, and a time's ratio to the baseline's (where it was
    measured: `timing_note`)."""
    source = group[group[name].notna()] if name in group else group.iloc[0:0]
    paper_source = group[group[f"paper_{name}"].notna()]
    ours = source[name].iat[0] if len(source) else math.nan
    paper = paper_source[f"paper_{name}"].iat[0] if len(paper_source) else math.nan
    out = {f"{display_name(name)} (ours)": _fmt_extra(name, ours, False)}
    if with_paper and not (compact and name not in TIME_EXTRAS):
        out[f"{display_name(name)} (paper)"] = _fmt_extra(name, paper, True)
    if base:
        out[f"÷ {base['label']} (ours)"] = _fmt_ratio(ours / base["ours"])
        if with_paper:
            out[f"÷ {base['label']} (paper)"] = _fmt_ratio(paper / base["paper"])
    return out


def _fmt_ratio(value: float) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.2f}×"


def comparisons_frame(table: SpecTable, compact: bool = False) -> pd.DataFrame:
    """The baseline comparisons as strings, for Markdown and LaTeX; `compact`, for print: no "vs" column
    when every row has one baseline (the caption names it), P(better) without its interval."""
    comps = table.comparisons
    if comps.empty:
        return pd.DataFrame()
    digits = _digits(table.metric)
    if DEVIATION in comps:  # each row says what it changes; the baseline is the column's
        out = pd.DataFrame({DEVIATION: comps[DEVIATION]})
    else:
        best = [" (best test epoch)" if r == BEST_EPOCH else "" for r in comps["reported"]]
        out = pd.DataFrame({display_name("label"): comps["label"] + best, "vs": comps["baseline"]})
    if table.column_field:
        out.insert(0 if DEVIATION in comps else 1, display_name(table.column_field),
                   [display_value(table.column_field, v) for v in comps[table.column_field]])
    out["seeds"] = [f"{a} paired" if paired else f"{a}/{b}" + (" unpaired" if compact else f" ({why})" if why else "")
                    for a, b, paired, why in zip(comps["n"], comps["n_baseline"], comps["paired"],
                                                 comps["unpaired_because"], strict=True)]
    out["α"] = [f"{a:.3g}" for a in comps["alpha"]]
    out["Δ [CI 1−α]"] = [
        "—" if not np.isfinite(d) else _fmt_signed(d, digits) + (f" [{_fmt_signed(lo, digits)}, {_fmt_signed(hi, digits)}]" if np.isfinite(lo) else "")
        for d, lo, hi in zip(comps["diff"], comps["ci_low"], comps["ci_high"], strict=True)]
    out["p"] = [_fmt_p(p) for p in comps["p_value"]]
    if orders_papers(table):
        out.insert(len(out.columns) - 1, "paper Δ", [_fmt_signed(v, digits) for v in comps["paper_diff"]])
        out["paper's ordering"] = comps["verdict"]
    else:
        out["vs baseline"] = comps["verdict"]
    out["detects ≥"] = [_fmt(v, digits) for v in comps["detectable"]]
    out["seeds needed" if orders_papers(table) else "seeds for Δ"] = [_fmt_seeds(n) for n in comps["seeds_needed"]]
    out["P(better)"] = [_fmt(p) if compact else _fmt_improvement(p, lo, hi) for p, lo, hi in
                        zip(comps["p_improvement"], comps["p_improvement_low"], comps["p_improvement_high"], strict=True)]
    if not compact:
        return out
    constant = [c for c in ("vs", "α") if c in out and out[c].nunique() == 1]  # the caption names them
    out = out.drop(columns=["p", *constant])
    if table.column_field == "dataset":
        out[display_name("dataset")] = [SHORT_DATASET_NAMES.get(str(v), str(v)) for v in comps["dataset"]]
    return out.rename(columns=lambda c: _short_head(c, table))


def orders_papers(table: SpecTable) -> bool:
    """Whether the comparisons test the paper's orderings (else each is a difference of its own: a spec
    without paper numbers, or runs on generated data)."""
    return bool(len(table.comparisons)) and bool(np.isfinite(table.comparisons["paper_diff"].astype(float)).any())


def _fmt_improvement(p: float, low: float, high: float) -> str:
    return "" if not np.isfinite(p) else f"{p:.2f} [{low:.2f}, {high:.2f}]"


def _fmt_p(p: float) -> str:
    return "" if p is None or not np.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def _fmt_seeds(n: float) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return ""
    if math.isinf(n):
        return "∞"
    return f"> {SEEDS_SHOWN:,}" if n > SEEDS_SHOWN else f"{int(n):,}"  # no launch runs more
