import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fabricate import write_run

from analysis.report import main, write_index, write_spec_report
from experiments.plan import expand
from experiments.spec import load_spec, shipped_names

REPO = Path(__file__).resolve().parents[2]


def _fabricate_spec(results, spec, share=0.6):
    """Complete runs for the first `share` of the plan, one diverged, one failed, one corrupt."""
    rng = random.Random(0)
    plan = expand(spec)
    for i, planned in enumerate(plan[: max(1, int(len(plan) * share))]):
        state = {1: "diverged", 2: "failed", 3: "corrupt"}.get(i, "done")
        timing = {"ms_median": 50.0 + i} if spec.kind == "timing" else None
        write_run(results, spec.name, planned.config, state=state, test_error=5 + rng.random(), timing=timing)
    return plan


@pytest.mark.parametrize("name", shipped_names())
def test_every_spec_writes_its_tables_and_figures(tmp_path, name):
    spec = load_spec(name)
    _fabricate_spec(tmp_path, spec)
    written = write_spec_report(spec, tmp_path)
    names = {p.name for p in written}
    assert {f"{name}.md", f"{name}.tex", f"{name}.csv", f"{name}.runs.csv"} <= names
    assert (f"{name}.vs_baseline.csv" in names) == bool(spec.table.baseline)
    assert sum(n.endswith(".png") for n in names) == sum(n.endswith(".pdf") for n in names) == len(spec.figures)
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    md = (tmp_path / "tables" / f"{name}.md").read_text()
    assert "planned runs done" in md
    index = write_index(tmp_path).read_text()
    assert f"(`{name}`)" in index and f"tables/{name}.md" in index


def test_corrupt_run_is_reported_and_the_rest_analysed(tmp_path):
    spec = load_spec("table_deepening")
    cfg = dict(dataset="cifar10", depth=40, k=2, block="B(3,3)", depth_convention="true", preprocessing="zca")
    for seed in range(3):
        write_run(tmp_path, spec.name, dict(cfg, seed=seed), test_error=5.0 + seed)
    bad = write_run(tmp_path, spec.name, dict(cfg, seed=3), state="corrupt")
    write_spec_report(spec, tmp_path)
    md = (tmp_path / "tables" / "table_deepening.md").read_text()
    assert f"`{bad.name}` WRN-40-2-B(3,3)-true on cifar10 seed 3: **corrupt**: unreadable result.json" in md
    assert "6.00 [5.00, 7.00] (75%) n=3; 1 corrupt" in md


def test_zero_finished_runs_says_so(tmp_path):
    spec = load_spec("figure_curves")
    empty = write_spec_report(spec, tmp_path / "empty")  # the runner may call it with no run folder
    assert "No finished runs yet" in (tmp_path / "empty" / "tables" / "figure_curves.md").read_text()
    assert len(empty) == 6
    write_run(tmp_path, spec.name, dict(dataset="cifar10", depth=28, k=10, preprocessing="meanstd"), state="failed")
    assert main([spec.name, "--results", str(tmp_path)]) == 0
    md = (tmp_path / "tables" / "figure_curves.md").read_text()
    assert "No finished runs yet" in md and "1 failed" in md
    assert "0 of 4 planned runs done" in (tmp_path / "REPORT.md").read_text()


def test_cli_all_writes_report_linking_every_table_and_figure(tmp_path, capsys):
    for name in ("table_block_type", "figure_timing"):
        _fabricate_spec(tmp_path, load_spec(name))
    assert main(["--all", "--results", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    tables = sorted((tmp_path / "tables").iterdir())
    figures = sorted((tmp_path / "figures").iterdir())
    assert tables and figures
    for path in tables:
        assert f"tables/{path.name}" in report
    for path in figures:
        assert f"figures/{path.name}" in report
    assert "no runs yet (`python -m experiments.run table_width`)" in report
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["table_width"], "holds no runs"),
    (["--all"], "holds no runs"),
    (["no_such_spec"], "unknown spec 'no_such_spec'"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    results = tmp_path / "results"
    assert main([*args, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not results.exists()


def test_results_with_runs_of_other_specs_only(tmp_path, capsys):
    write_run(tmp_path, "table_width", dict(dataset="cifar10", depth=40, k=1, preprocessing="zca"))
    assert main(["table_deepening", "--results", str(tmp_path)]) == 2
    assert "python -m experiments.run table_deepening" in capsys.readouterr().err
    assert not (tmp_path / "tables").exists() and not (tmp_path / "REPORT.md").exists()


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "table_width", "--results", str(tmp_path / "x")],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_a_faithful_table_2_is_consistent_and_every_ordering_says_its_seeds_needed(tmp_path):
    """5 seeds per network drawn around the paper's own values (σ = 0.15 pp): no cell is flagged, and
    every ablation row has its seeds_needed, in the CSV and in words."""
    spec = load_spec("table_block_type")
    rng = np.random.default_rng(2016)
    for run in expand(spec, "paper"):
        paper = {(40, "B(1,3,1)"): 6.06, (40, "B(3,1)"): 5.78, (40, "B(1,3)"): 6.42, (40, "B(3,1,1)"): 5.86,
                 (28, "B(3,3)"): 5.73, (22, "B(3,1,3)"): 5.78}[(run.config.depth, run.config.block)]
        write_run(tmp_path, spec.name, run.config, test_error=paper + 0.15 * rng.standard_normal())
    assert main([spec.name, "--results", str(tmp_path)]) == 0
    cells = pd.read_csv(tmp_path / "tables" / "table_block_type.csv")
    assert list(cells["verdict_vs_paper"]) == ["consistent"] * 6
    assert (cells["sigma_source"] == "pooled").all() and (cells["sigma_df"] == 6 * 4).all()
    comps = pd.read_csv(tmp_path / "tables" / "table_block_type.vs_baseline.csv")
    assert len(comps) == 5 and comps["seeds_needed"].notna().all()
    assert set(comps["verdict"]) <= {"supported", "contradicted", "unresolved"}
    report = (tmp_path / "REPORT.md").read_text()
    for label in comps["label"]:
        assert f"  - {label} vs WRN-28-2: the paper's" in report
    assert "needs ~" in report and "seeds per side" in report
