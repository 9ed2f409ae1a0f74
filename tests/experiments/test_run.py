"""The runner's command line: dry runs of every shipped spec, overrides, and the smoke profile of
Table 2 end to end through the local executor (real subprocesses, real files), then a relaunch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments import run, store
from experiments.spec import list_specs

SPEC_NAMES = [s.name for s in list_specs()]
TABLE2_BLOCKS = {"B(1,3,1)", "B(3,1)", "B(1,3)", "B(3,1,1)", "B(3,3)", "B(3,1,3)"}


def dry_run_json(capsys, *argv) -> list[dict]:
    assert run.main([*argv, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("spec", SPEC_NAMES)
@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_every_shipped_spec_dry_runs(spec, profile, capsys, tmp_path):
    rows = dry_run_json(capsys, spec, "--profile", profile, "--results", str(tmp_path / "r"))
    assert rows, spec
    for row in rows:
        assert {"run_id", "spec", "label", "params", "flops", "config", "est_gpu_hours"} <= set(row)
        assert row["spec"] == spec and row["params"] > 0 and row["flops"] > 0
        cfg = row["config"]
        for key in ("dataset", "depth", "blocks_per_group", "k", "block", "dropout", "preprocessing",
                    "seed", "epochs", "batch_size", "lr", "lr_milestones", "lr_decay"):
            assert key in cfg, key
    assert len({r["run_id"] for r in rows}) == len(rows)
    assert not (tmp_path / "r").exists()  # a dry run writes nothing


def test_dry_run_table_names_every_run(capsys):
    assert run.main(["table_block_type", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for label in ("WRN-40-2-B(1,3,1)", "WRN-40-2-B(3,1)", "WRN-40-2-B(1,3)", "WRN-40-2-B(3,1,1)",
                  "WRN-28-2", "WRN-22-2-B(3,1,3)"):
        assert label in out
    assert "1,429,082" in out and "GPU-hours" in out


def test_run_ids_are_stable_across_invocations(capsys):
    first = [r["run_id"] for r in dry_run_json(capsys, "table_deepening")]
    second = [r["run_id"] for r in dry_run_json(capsys, "table_deepening")]
    assert first == second


def test_set_overrides_and_seeds_reach_the_run_config(capsys):
    rows = dry_run_json(capsys, "table_dropout", "--seeds", "2", "--set", "epochs=7",
                        "--set", "lr_milestones=[3,5]", "--set", "pad_mode=zeros")
    assert {r["config"]["seed"] for r in rows} == {0, 1}
    assert all(r["config"]["epochs"] == 7 and r["config"]["lr_milestones"] == [3, 5] for r in rows)
    assert all(r["config"]["pad_mode"] == "zeros" for r in rows)
    baseline = dry_run_json(capsys, "table_dropout", "--seeds", "2")
    assert {r["run_id"] for r in rows}.isdisjoint({r["run_id"] for r in baseline})  # a new config is a new run


def test_cpu_launch_over_an_hour_asks_for_yes(capsys, tmp_path):
    assert run.main(["table_width", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--yes" in err and "--profile smoke" in err
    assert not (tmp_path / "r").exists()


def test_smoke_table_block_type_end_to_end_then_relaunch_skips(capsys, tmp_path):
    results = tmp_path / "results"
    assert run.main(["table_block_type", "--profile", "smoke", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    records = store.spec_runs(results, "table_block_type")
    assert len(records) == 6 and {r.state for r in records} == {"done"}
    for rec in records:
        assert (rec.path / "result.json").exists() and (rec.path / "provenance.json").exists()
        assert rec.config["data_source"] == "synthetic:64:32" and rec.config["epochs"] == 2
        assert len(store.read_metrics(rec.path / "metrics.jsonl")) == 2
    for name in ("table_block_type.md", "table_block_type.tex", "table_block_type.csv"):
        assert (results / "tables" / name).exists(), name
    assert (results / "figures" / "table_block_type_pointplot.png").exists()
    assert (results / "figures" / "table_block_type_pointplot.pdf").exists()
    assert (results / "REPORT.md").exists()
    table = pd.read_csv(results / "tables" / "table_block_type.csv")
    assert TABLE2_BLOCKS <= set(table["block"].astype(str))
    markdown = (results / "tables" / "table_block_type.md").read_text()
    assert all(block in markdown for block in TABLE2_BLOCKS)
    assert "table_block_type.md" in out

    mtimes = {r.run_id: (r.path / "result.json").stat().st_mtime_ns for r in records}
    assert run.main(["table_block_type", "--profile", "smoke", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "6 complete, 0 to run" in out and "start " not in out
    assert {r.run_id: (r.path / "result.json").stat().st_mtime_ns
            for r in store.spec_runs(results, "table_block_type")} == mtimes


def test_the_readme_example_spec_dry_runs(capsys, tmp_path):
    """The spec the README shows users as a template must stay valid."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_width_sweep.toml"
    path.write_text(block)
    rows = dry_run_json(capsys, str(path))
    assert [r["label"] for r in rows[:4]] == ["WRN-16-1", "WRN-16-2", "WRN-16-4", "WRN-16-8"]
    assert len(rows) == 12  # 4 widths x 3 seeds
