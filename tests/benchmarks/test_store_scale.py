"""The store benchmark fabricates finished stores through the store's writers, times each command over
them as a user runs it, and reports the growth between sizes (no timing is asserted: machines are
noisy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import store_scale
from experiments import store
from experiments.plan import expand
from experiments.spec import load_spec


def test_a_fabricated_store_is_finished_runs_of_the_spec_read_back_as_the_analysis_reads_them(tmp_path):
    seeds = store_scale.build_store(tmp_path, "table_block_type", 15)
    records = store.all_runs(tmp_path)
    assert seeds == 3 and len(records) == 15 and {r.state for r in records} == {"done"}
    planned = expand(load_spec("table_block_type"), "paper", seeds=seeds)
    assert {r.run_id for r in store.runs_of(records, planned)} == {r.run_id for r in records}
    assert all(r.epochs_done == r.config.epochs == 200 for r in records)


def test_the_report_gives_each_commands_growth_against_the_first_size():
    times = {"status": {100: 1.0, 1000: 8.0}, "dry run": {100: 1.0, 1000: 12.0}, "report": {100: 2.0, 1000: 40.0}}
    lines = store_scale.report_lines(times, [100, 1000], 30.0)
    assert lines[0].split() == ["command", "100", "runs", "1000", "runs", "growth", "x10", "runs", "under", "30", "s"]
    assert lines[1].split()[-2:] == ["x8.0", "yes"] and lines[3].split()[-2:] == ["x20.0", "NO"]


def test_sizes_must_grow(capsys):
    assert store_scale.main(["--sizes", "100", "10"]) == 2
    assert "--sizes: [100, 10]: expected positive run counts, smallest first" in capsys.readouterr().err


@pytest.mark.slow
def test_it_times_every_command_on_small_stores(capsys):
    assert store_scale.main(["--sizes", "6", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sizes"] == [6, 12] and set(out["seconds"]) == set(store_scale.COMMANDS)
    assert all(np.isfinite(list(per.values())).all() for per in out["seconds"].values())
