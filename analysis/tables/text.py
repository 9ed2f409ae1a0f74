"""A table in Markdown, as REPORT.md and <stem>.md show it: the paper's layout with every verdict
spelled out, the seed noise, the baseline comparisons with a sentence each on what the seeds decide,
and the comparison with the official training logs.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.tables.layout import comparisons_frame, layout_frame
from analysis.tables.notes import comparison_note, method_note, noise_lines, timing_note
from analysis.tables.table import SpecTable


def _markdown(frame: pd.DataFrame) -> str:
    def clean(text: Any) -> str:
        return str(text).replace("|", "\\|")
    header = "| " + " | ".join(clean(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(clean(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def to_markdown(table: SpecTable, heading: str = "") -> str:
    parts = [f"## {heading or table.title}", "",
             " ".join(filter(None, [f"Runs: {table.description}.", timing_note(table), table.caveat])), ""]
    layout = layout_frame(table)
    if table.finished_runs == 0:
        parts += ["**No finished runs yet**: only the paper's values are shown.", ""]
    if not layout.empty:
        parts += [_markdown(layout), ""]
    parts += [method_note(table), ""]
    noise = noise_lines(table)
    if noise:
        parts += ["Seed noise:", "", *noise, ""]
    comps = comparisons_frame(table)
    if not comps.empty:
        parts += [f"### Against the {'paper' + chr(39) + 's ' if table.has_paper else ''}baseline", "",
                  comparison_note(table), "", _markdown(comps), "",
                  "What the seeds run so far can decide:", "", *[f"- {s}" for s in table.sentences], ""]
    if table.official_logs:
        parts += ["### Against the official training logs", "",
                  "Each log is one run: read its difference against the seed spread above.", "",
                  *[f"- {s}" for s in table.official_logs], ""]
    return "\n".join(parts)
