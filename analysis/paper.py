"""The paper's numbers: each spec's tidy CSV under results/paper/, read and checked.

Format: key columns named like RunConfig fields (only those that identify the run; an empty cell
matches any value), optional ``method``, ``runs`` and ``paper_recipe`` columns, then ``metric`` and
``value`` (errors in percent, as the paper prints them). Rows with arch "reference" are other papers'
numbers (Table 5's NIN, Table 8's ResNet-50...), named by ``method``, which the suite does not train.
``runs`` is how many runs the paper's number summarises: 5 where the paper gives the median of 5
runs, 1 for a single run or where the paper does not say (the larger noise that assumes makes fewer
cells look different from the paper); empty for numbers that are no statistic over runs (parameter
counts, times). ``paper_recipe``, when filled, names the recipe preset (`wrn.recipes.RECIPE_PRESETS`)
of the runs behind a number the paper quotes from elsewhere (Table 5's pre-activation ResNets are He
et al.'s own runs): only runs of that recipe are compared with it. The numbers are transcribed from
arXiv:1605.07146v4 (docs/paper.md, "Tables and figures").
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

from experiments.schema import REPO_ROOT, SETTABLE_FIELDS, check_choice, check_field_name, display_path, fail
from experiments.spec import Spec
from wrn.recipes import RECIPE_NAMES

SPECIAL_COLUMNS = ("method", "runs", "paper_recipe")


@dataclass(frozen=True)
class PaperRow:
    """One row of a spec's paper CSV: the key cells that were filled (typed), method, metric, value."""

    keys: dict[str, Any]
    method: str | None
    metric: str
    value: float
    runs: int | None = None
    recipe: str | None = None  # the recipe preset of the runs behind the number, when not the paper's own

    @property
    def is_reference(self) -> bool:
        return self.keys.get("arch") == "reference"


def read_paper_results(spec: Spec) -> list[PaperRow]:
    """The spec's paper CSV as typed rows ([] for a spec without one); checks its columns and
    metrics, raising `experiments.schema.SpecError` naming the file, line and cell."""
    if spec.paper_results is None:
        return []
    path = REPO_ROOT / spec.paper_results
    where = display_path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if header[-2:] != ["metric", "value"]:
            raise fail(where, "header", header, "expected key columns, then metric, value")
        for column in header[:-2]:
            if column not in SPECIAL_COLUMNS:
                check_field_name(where, "header", column, SETTABLE_FIELDS)
        return [_row(where, line, row, header, spec) for line, row in enumerate(reader, start=2)]


def _row(where: str, line: int, row: dict[str, str], header: list[str], spec: Spec) -> PaperRow:
    check_choice(where, f"line {line}: metric", row["metric"], spec.metrics)
    try:
        value = float(row["value"])
    except (TypeError, ValueError):
        raise fail(where, f"line {line}: value", row["value"], "expected a number") from None
    keys = {c: _cell(row[c]) for c in header[:-2] if c not in SPECIAL_COLUMNS and row[c] not in ("", None)}
    method = row.get("method") or None
    if keys.get("arch") == "reference" and not method:
        raise fail(where, f"line {line}: method", method, "a reference row names its method")
    runs = row.get("runs") or None
    if runs is not None:
        if not runs.isdigit() or int(runs) < 1:
            raise fail(where, f"line {line}: runs", runs, "expected an integer >= 1, or empty")
        runs = int(runs)
    recipe = row.get("paper_recipe") or None
    if recipe is not None:
        check_choice(where, f"line {line}: paper_recipe", recipe, RECIPE_NAMES)
    return PaperRow(keys=keys, method=method, metric=row["metric"], value=value, runs=runs, recipe=recipe)


def _cell(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text.strip()
