"""Sequential launches (`--until-resolved`): seeds go only to the cells of orderings that are still
unresolved and can be resolved within the budget; the rounds stop when every ordering is decided or
the budget is spent; a stopped launch continues without training anything twice; the report replays
the same looks at the same levels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import fake_training
from experiments.sequential import SequentialDesign
from experiments import run, store, worker
from experiments.estimate import estimate
from experiments.profiles import load_profile
from experiments.rates import RateBook
from analysis.rounds import plan_rounds
from experiments.spec import load_spec

SPEC = """\
name = "rounds_tiny"
title = "Rounds: three tiny networks"
paper_ref = "none (a test spec)"
description = "WRN-10-1 (baseline), WRN-10-2 (far above it) and WRN-10-3 (a little above it)."
kind = "train"
seeds = 3
metrics = ["test_error"]
paper_results = "{csv}"

[base]
dataset = "cifar10"
arch = "wrn"
depth = 10
preprocessing = "meanstd"
dropout = false

[[rows]]
k = 1

[[rows]]
k = 2

[[rows]]
k = 3

[table]
rows = ["k"]
metric = "test_error"
baseline = {{ k = 1 }}
"""
PAPER = "k,runs,metric,value\n1,5,test_error,5.0\n2,5,test_error,7.0\n3,5,test_error,5.3\n"


@pytest.fixture
def spec(tmp_path) -> Path:
    csv = tmp_path / "rounds_tiny.csv"
    csv.write_text(PAPER)
    path = tmp_path / "rounds_tiny.toml"
    path.write_text(SPEC.format(csv=csv))
    return path


@pytest.fixture
def trained(monkeypatch) -> Counter:
    """Training replaced by `fake_training`; counts the runs trained to the end, by run folder."""
    done: Counter = Counter()

    def train(cfg, run_dir, *args, **kwargs):
        result = fake_training.train(cfg, run_dir, *args, **kwargs)
        done[Path(run_dir).name] += 1
        return result

    monkeypatch.setattr(worker, "train", train)
    return done


def launch(spec: Path, results: Path, *extra: str) -> int:
    return run.main([str(spec), "--profile", "smoke", "--seeds", "3", "--until-resolved", "--max-seeds", "12",
                     "--executor", "debug", "--results", str(results), *extra])


def seeds_by_k(results: Path) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for rec in store.all_runs(results):
        out.setdefault(rec.config.k, []).append(rec.config.seed)
    return {k: sorted(v) for k, v in sorted(out.items())}


def test_seeds_go_where_they_decide_something(spec, tmp_path, trained, capsys):
    results = tmp_path / "results"
    assert launch(spec, results) == 0
    out = capsys.readouterr().out
    # WRN-10-2's 2 pp above the baseline is decided by the first round's 3 seeds; WRN-10-3's 0.3 pp is
    # not, and is followed with more seeds for it and its baseline only.
    seeds = seeds_by_k(results)
    assert seeds[2] == [0, 1, 2]
    assert seeds[1] == seeds[3] and len(seeds[3]) in (6, 12) and seeds[3] == list(range(len(seeds[3])))
    assert "round 2 of at most 3: 3 seeds per cell, 6 for the 2 cells of unresolved orderings" in out
    comps = pd.read_csv(results / "tables" / "rounds_tiny.smoke.vs_baseline.csv").set_index("k")
    # generated data (the smoke profile): differences of their own, no paper ordering to support
    assert (comps.loc[2, "verdict"], comps.loc[2, "look"]) == ("higher", 1) and comps.loc[2, "alpha"] == pytest.approx(0.0125)
    assert comps.loc[3, "look"] > 1 and comps.loc[3, "n"] == len(seeds[3])
    assert {"verdict", "diff", "ci_low", "ci_high", "p_value", "seeds_needed"} <= set(comps.columns)
    design = json.loads((results / "sequential" / "rounds_tiny.smoke.json").read_text())
    assert design == {"spec": "rounds_tiny", "profile": "smoke", "start": 3, "max_seeds": 12, "alpha": 0.05}
    assert set(trained.values()) == {1}  # every run trained once
    # the dry run's worst case: the three cells to 12 seeds (all take part in an ordering)
    assert run.main([str(spec), "--profile", "smoke", "--seeds", "3", "--until-resolved", "--max-seeds", "12",
                     "--dry-run", "--json", "--results", str(results)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 36


def test_a_stopped_launch_continues_its_rounds_without_training_twice(spec, tmp_path, trained, monkeypatch):
    straight = tmp_path / "straight"
    assert launch(spec, straight) == 0
    expected = seeds_by_k(straight)
    trained.clear()

    calls = {"n": 0}
    real = worker.train

    def dies_in_round_2(cfg, run_dir, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:  # round 1 is 9 runs: the launcher dies in the middle of round 2
            raise KeyboardInterrupt
        return real(cfg, run_dir, *args, **kwargs)

    monkeypatch.setattr(worker, "train", dies_in_round_2)
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        launch(spec, stopped)
    assert sum(trained.values()) == 10
    monkeypatch.setattr(worker, "train", real)
    assert launch(spec, stopped) == 0
    assert seeds_by_k(stopped) == expected
    assert set(trained.values()) == {1}, "a run was trained to the end twice"
    same = [pd.read_csv(folder / "tables" / "rounds_tiny.smoke.vs_baseline.csv")[["k", "verdict", "look", "p_value"]]
            for folder in (straight, stopped)]
    pd.testing.assert_frame_equal(*same)


def test_the_report_replays_the_recorded_design(spec, tmp_path, trained):
    results = tmp_path / "results"
    assert launch(spec, results) == 0
    from analysis.report import main as report
    before = (results / "tables" / "rounds_tiny.smoke.vs_baseline.csv").read_text()
    assert report([str(spec), "--results", str(results), "--profile", "smoke"]) == 0
    assert (results / "tables" / "rounds_tiny.smoke.vs_baseline.csv").read_text() == before
    assert SequentialDesign.read(results, "rounds_tiny", load_profile("smoke")).looks == [3, 6, 12]
    assert SequentialDesign.read(results, "rounds_tiny", load_profile("paper")) is None  # another profile's runs


@pytest.mark.parametrize("argv, message", [
    (["--until-resolved"], "give both"),
    (["--max-seeds", "4"], "give both"),
    (["--until-resolved", "--max-seeds", "2"], "--max-seeds: 2: expected at least the 3 seeds"),
])
def test_bad_sequential_flags_are_one_line(spec, tmp_path, argv, message, capsys):
    assert run.main([str(spec), "--profile", "smoke", "--seeds", "3", *argv, "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_spec_without_orderings_has_nothing_to_resolve(tmp_path, capsys):
    assert run.main(["table_width", "--until-resolved", "--max-seeds", "4", "--dry-run"]) == 2
    assert "no table.baseline" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sequential_smoke_launch_with_real_training_stops_within_its_budget(tmp_path, capsys):
    """Real training on the smoke profile, through the local executor's worker processes: whatever the
    tiny networks' errors decide, the rounds stop by the budget, every cell has seeds 0..n-1 with n a
    round's size, and a relaunch trains nothing."""
    csv = tmp_path / "paper.csv"
    csv.write_text("k,runs,metric,value\n1,5,test_error,60.0\n2,5,test_error,50.0\n")
    spec = tmp_path / "rounds_real.toml"
    spec.write_text(SPEC.replace("rounds_tiny", "rounds_real").replace("[[rows]]\nk = 3\n\n", "")
                    .format(csv=csv))
    args = [str(spec), "--profile", "smoke", "--seeds", "2", "--until-resolved", "--max-seeds", "4",
            "--max-parallel", "2", "--results", str(tmp_path / "results")]
    assert run.main(args) == 0
    for rec in store.all_runs(tmp_path / "results"):
        assert rec.state == "done"
    seeds: dict[int, list[int]] = {}
    for rec in store.all_runs(tmp_path / "results"):
        seeds.setdefault(rec.config.k, []).append(rec.config.seed)
    assert all(sorted(s) in ([0, 1], [0, 1, 2, 3]) for s in seeds.values()), seeds
    assert (tmp_path / "results" / "tables" / "rounds_real.smoke.vs_baseline.csv").exists()
    capsys.readouterr()
    assert run.main(args) == 0
    assert "start " not in capsys.readouterr().out


def _cost(runs) -> float:
    """The estimated CPU-hours of `runs` (a smoke launch's device)."""
    return sum(e.est_seconds for e in estimate(runs, RateBook("cpu", None, []))) / 3600


def test_a_budget_that_fits_two_rounds_plans_two(spec, tmp_path, capsys):
    """The dry run projects the rounds (before any run the smoke profile's generated data gives no
    paper difference to plan for, so every ordering is followed to the end) and marks those over the
    budget."""
    results = tmp_path / "results"
    design = SequentialDesign("rounds_tiny", "smoke", 3, 12)
    projected = plan_rounds(load_spec(spec), results, load_profile("smoke"), {}, design)
    assert [(r.seeds, r.cells, len(r.runs)) for r in projected] == [(3, 3, 9), (6, 3, 18), (12, 3, 36)]
    assert [r.decided for r in projected] == [0, 0, 0] and {r.orderings for r in projected} == {2}
    budget = (_cost(projected[1].runs) + _cost(projected[2].runs)) / 2
    assert run.main([str(spec), "--profile", "smoke", "--seeds", "3", "--until-resolved", "--max-seeds", "12",
                     "--dry-run", "--results", str(results), "--budget-gpu-hours", f"{budget:.9f}"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  round")]
    assert [line.split("; ")[-1].split(" --budget")[0] for line in lines] == ["within", "within", "over"]
    assert lines[2].endswith("not run") and lines[1].startswith("  round 2: 6 seeds for 3 cells: 18 runs")


def test_a_launch_stops_before_the_round_that_would_pass_its_budget(spec, tmp_path, trained, capsys):
    """Round 1's nine runs fit; round 2's six more (the two cells left unresolved) would not: the
    launch says so and reports what it has."""
    results = tmp_path / "results"
    first = plan_rounds(load_spec(spec), results, load_profile("smoke"), {},
                        SequentialDesign("rounds_tiny", "smoke", 3, 12))[0].runs
    budget = float(f"{_cost(first) * 1.2:.4g}")  # 9 runs and a little: not 15
    assert launch(spec, results, "--budget-gpu-hours", f"{budget:g}") == 0
    out = capsys.readouterr().out
    assert {k: len(v) for k, v in seeds_by_k(results).items()} == {1: 3, 2: 3, 3: 3}
    assert "round 2 would bring the launch to" in out and f"over --budget-gpu-hours {budget:g}: no more rounds" in out
    assert (results / "tables" / "rounds_tiny.smoke.md").exists()  # the report follows
    assert launch(spec, results, "--budget-gpu-hours", f"{budget / 2:g}") == 2  # the first round alone is over it
    assert "the first round alone is estimated at" in capsys.readouterr().err


def test_a_plain_launch_over_its_budget_refuses_before_anything_starts(tmp_path, capsys):
    results = tmp_path / "results"
    assert run.main(["table_block_type", "--profile", "smoke", "--dry-run", "--budget-gpu-hours", "0.001",
                     "--results", str(results)]) == 0
    assert "--budget-gpu-hours 0.001: the runs to train are estimated at" in capsys.readouterr().out
    assert run.main(["table_block_type", "--profile", "smoke", "--budget-gpu-hours", "0.001",
                     "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget-gpu-hours 0.001: the runs to train are estimated at 1." in err[0]
    assert not results.exists()
