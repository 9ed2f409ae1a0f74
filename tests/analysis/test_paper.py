"""The paper's numbers (results/paper/<spec>.csv): every row names a planned run or another paper's
method, every planned network has the paper's number for its cell, and the paper's parameter counts
are the networks' own."""

from __future__ import annotations

import pytest
import torch

from analysis.paper import read_paper_results
from experiments.plan import expand
from experiments.spec import SPECS_DIR, list_specs, load_spec, matches
from wrn.models import build_model, count_params

SPEC_NAMES = sorted(p.stem for p in SPECS_DIR.glob("*.toml") if p.stem != "deviations")  # no paper numbers


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_paper_csv_rows_match_planned_runs(name: str):
    spec = load_spec(name)
    runs = expand(spec, "paper", seeds=1)
    rows = read_paper_results(spec)
    assert rows, "every shipped spec has the paper's numbers"
    for row in rows:
        assert row.metric in spec.metrics
        if row.is_reference:
            assert row.method
            continue
        assert any(matches(row.keys, r.config) for r in runs), f"{name}: {row} matches no planned run"
    # ... and every planned network has the paper's number for the table's cell.
    cells = [row for row in rows if row.metric == spec.table.metric and not row.is_reference]
    for run in runs:
        assert any(matches(row.keys, run.config) for row in cells), f"{name}: no paper {spec.table.metric} for {run.label}"


def test_paper_param_counts_match_the_planned_networks():
    """The depth conventions (Table 2 nominal, Table 3 true) are what make the counts agree
    (docs/paper.md, "Depth"); the paper rounds to 0.1M."""
    known_deviation = {"preact-ResNet-1001": 10_327_706}  # paper quotes He et al.'s "10.2M"
    checked = 0
    for spec in list_specs():
        runs = expand(spec, "paper", seeds=1)
        for row in read_paper_results(spec):
            if row.metric != "params" or row.is_reference:
                continue
            run = next(r for r in runs if matches(row.keys, r.config))
            with torch.device("meta"):
                count = count_params(build_model(run.config))
            if run.label in known_deviation:
                assert count == known_deviation[run.label]
            else:
                assert abs(count - row.value) <= 50_000, (spec.name, run.label, count, row.value)
            checked += 1
    assert checked == 6 + 4 + 10 + 5 + 1  # Tables 2, 3, 4, 5 and 8


