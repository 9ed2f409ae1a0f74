import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fabricate import write_run

from analysis.report import main, write_index, write_spec_report
from analysis.tables import csv_rounding
from experiments.plan import expand
from experiments.spec import list_specs, load_spec, shipped_names

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


def _assert_rounded(path: Path) -> None:
    """Every float of a written CSV keeps at most the digits its kind allows (`csv_rounding`)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        how, digits = csv_rounding(column)
        for text in frame[column]:
            if re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", text):
                value = float(text)
                kept = round(value, digits) if how == "decimals" else float(f"{value:.{digits}g}")
                assert value == kept, (path.name, column, text)


@pytest.mark.slow
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
    tex = (tmp_path / "tables" / f"{name}.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\caption{" in tex
    for path in (p for p in written if p.suffix == ".csv"):
        _assert_rounded(path)
    index = write_index(tmp_path).read_text()
    assert f"(`{name}`)" in index and f"tables/{name}.md" in index


def test_corrupt_run_is_reported_and_the_rest_analysed(tmp_path):
    spec = load_spec("table_deepening")
    cfg = dict(dataset="cifar10", depth=40, k=2, block="B(3,3)", depth_convention="true", preprocessing="zca", recipe="v1-2016-05", bn_init="ones")
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
    write_run(tmp_path, "table_width", dict(dataset="cifar10", depth=40, k=1, preprocessing="zca", recipe="v1-2016-05"))
    assert main(["table_deepening", "--results", str(tmp_path)]) == 2
    assert "python -m experiments.run table_deepening" in capsys.readouterr().err
    assert not (tmp_path / "tables").exists() and not (tmp_path / "REPORT.md").exists()


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "table_width", "--results", str(tmp_path / "x")],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_a_faithful_table_2_is_never_flagged_and_every_ordering_says_its_seeds_needed(tmp_path):
    """5 seeds per network drawn around the paper's own values (σ = 0.15 pp): no cell is flagged, each
    is equivalent within the margin or indistinguishable with what the test could have seen, at its
    level; every ablation row has its seeds_needed, detectable difference and P(better), in the CSV and
    in words."""
    spec = load_spec("table_block_type")
    rng = np.random.default_rng(2016)
    for run in expand(spec, "paper"):
        paper = {(40, "B(1,3,1)"): 6.06, (40, "B(3,1)"): 5.78, (40, "B(1,3)"): 6.42, (40, "B(3,1,1)"): 5.86,
                 (28, "B(3,3)"): 5.73, (22, "B(3,1,3)"): 5.78}[(run.config.depth, run.config.block)]
        write_run(tmp_path, spec.name, run.config, test_error=paper + 0.15 * rng.standard_normal())
    assert main([spec.name, "--results", str(tmp_path)]) == 0
    cells = pd.read_csv(tmp_path / "tables" / "table_block_type.csv")
    assert set(cells["verdict_vs_paper"]) <= {"equivalent", "indistinguishable"}
    assert (cells["sigma_source"] == "pooled").all() and (cells["sigma_df"] == 6 * 4).all()
    assert (cells["alpha"] - 0.05 / 6).abs().max() < 1e-4 and (cells["detectable"] > 0).all()
    assert (cells["equivalence_margin"] == 0.5).all() and cells["p_equivalence"].notna().all()
    markdown = (tmp_path / "tables" / "table_block_type.md").read_text()
    assert "equivalent (within ±0.5 pp)" in markdown or "indistinguishable (could detect ≥ " in markdown
    comps = pd.read_csv(tmp_path / "tables" / "table_block_type.vs_baseline.csv")
    assert len(comps) == 5 and comps["seeds_needed"].notna().all() and (comps["alpha"] == 0.05).all()
    assert comps["detectable"].notna().all() and comps["paired"].all()
    assert comps["p_improvement"].between(0, 1).all() and (comps["p_improvement_low"] <= comps["p_improvement"]).all()
    assert set(comps["verdict"]) <= {"supported", "contradicted", "unresolved"}
    report = (tmp_path / "REPORT.md").read_text()
    for label in comps["label"]:
        assert f"  - {label} vs WRN-28-2: the paper's" in report
    assert "needs ~" in report and "seeds per side for 80% power at α = 0.05" in report


def test_each_profile_is_reported_on_its_own(tmp_path, capsys):
    """Paper and smoke runs of one spec in one folder: a table each, a REPORT.md section each, and no
    smoke number in the paper profile's table or figure."""
    spec = load_spec("table_block_type")
    for planned in expand(spec, "paper")[:6]:
        write_run(tmp_path, spec.name, planned.config, test_error=5.5)
    for planned in expand(spec, "smoke"):
        write_run(tmp_path, spec.name, planned.config, test_error=88.0, profile="smoke")
    assert main(["--all", "--results", str(tmp_path)]) == 0
    paper_table = (tmp_path / "tables" / "table_block_type.md").read_text()
    smoke_table = (tmp_path / "tables" / "table_block_type.smoke.md").read_text()
    assert "5.50" in paper_table and "88.00" not in paper_table
    assert "88.00" in smoke_table and "5.50" not in smoke_table
    assert "profile smoke (generated data, 64 training and 32 test images), on cpu: cpu, fp32" in smoke_table
    assert "profile paper (the real data)" in paper_table
    smoke_cells = pd.read_csv(tmp_path / "tables" / "table_block_type.smoke.csv")
    assert set(smoke_cells["profile"]) == {"smoke"} and set(smoke_cells["data_source"]) == {"synthetic:64:32"}
    assert set(smoke_cells["device"]) == {"cpu"} and set(smoke_cells["runtime_precision"]) == {"fp32"}
    assert set(smoke_cells["verdict_vs_paper"].dropna()) == {"not_applicable"}  # generated data
    assert "n/a (generated data)" in smoke_table and "HIGHER" not in smoke_table
    assert set(pd.read_csv(tmp_path / "tables" / "table_block_type.csv")["profile"]) == {"paper"}
    assert (tmp_path / "figures" / "table_block_type_pointplot.smoke.png").exists()
    report = (tmp_path / "REPORT.md").read_text()
    paper_part, smoke_part = report.split("## Profile smoke")
    assert "## Profile paper (the real data)" in paper_part and "tables/table_block_type.md" in paper_part
    assert "tables/table_block_type.smoke.md" in smoke_part and "table_block_type.smoke" not in paper_part
    assert "6 of 30 planned runs done" in paper_part and "6 of 6 planned runs done" in smoke_part


def test_report_without_a_folder_finds_each_profiles_default_folder(tmp_path, monkeypatch, capsys):
    """Where `experiments.run` writes by default (results/smoke/ for the smoke profile) is where the
    report looks when given no folder; results/ without runs is no error then."""
    monkeypatch.chdir(tmp_path)
    for planned in expand(load_spec("table_block_type"), "smoke"):
        write_run(Path("results/smoke"), "table_block_type", planned.config, test_error=88.0, profile="smoke")
    assert main(["--all"]) == 0
    assert (tmp_path / "results" / "smoke" / "REPORT.md").exists()
    assert not (tmp_path / "results" / "REPORT.md").exists()
    assert main(["--all", "--profile", "paper"]) == 2
    err = capsys.readouterr().err
    assert "results holds no runs under profile paper of any spec" in err


MY_SPEC = """
name = "my_dropout"
title = "WRN-16-4 with and without dropout on CIFAR-10"
paper_ref = "my ablation"
description = "Dropout at depth 16, width 4."
kind = "train"
seeds = 2
metrics = ["test_error"]

[base]
dataset = "cifar10"
depth = 16
k = 4
preprocessing = "meanstd"

[grid]
dropout = [false, true]

[table]
rows = ["dropout"]
metric = "test_error"

[[figures]]
kind = "pointplot"
x = "dropout"
"""


def test_a_user_spec_kept_with_the_results_is_reported_and_shares_its_runs(tmp_path, capsys):
    """A user spec whose copy a launch kept in <results>/specs/ is in `--all` and REPORT.md, without
    paper columns; the runs it shares with Table 6 are counted in Table 6 too."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "my_dropout.toml").write_text(MY_SPEC)
    spec = load_spec(tmp_path / "specs" / "my_dropout.toml")
    for planned in expand(spec):
        write_run(tmp_path, spec.name, planned.config, test_error=4.0 + planned.config.seed + planned.config.dropout)
    assert main(["--all", "--results", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "(`my_dropout`): 4 of 4 planned runs done" in report and "tables/my_dropout.md" in report
    assert "(`table_dropout`): 4 of 80 planned runs done" in report
    ours = pd.read_csv(tmp_path / "tables" / "my_dropout.csv")
    assert not [c for c in ours.columns if "paper" in c] and list(ours["median"]) == [4.5, 4.8]
    markdown = (tmp_path / "tables" / "my_dropout.md").read_text()
    assert "| dropout | ours |" in markdown and "ours − paper" not in markdown
    table6 = pd.read_csv(tmp_path / "tables" / "table_dropout.csv")
    shared = table6[(table6["label"].str.startswith("WRN-16-4")) & (table6["dataset"] == "cifar10")]
    assert sorted(shared["n"]) == [2, 2] and sorted(shared["median"]) == [4.5, 4.8]


def test_runs_in_the_earlier_per_spec_layout_are_read_where_they_are(tmp_path):
    spec = load_spec("table_deepening")
    cfg = dict(dataset="cifar10", depth=40, k=2, block="B(3,3)", depth_convention="true", preprocessing="zca", recipe="v1-2016-05", bn_init="ones")
    for seed in range(3):
        flat = write_run(tmp_path, spec.name, dict(cfg, seed=seed), test_error=5.0 + seed)
        legacy = tmp_path / "runs" / spec.name / flat.name
        legacy.parent.mkdir(exist_ok=True)
        flat.rename(legacy)
    write_spec_report(spec, tmp_path)
    assert "6.00 [5.00, 7.00] (75%) n=3" in (tmp_path / "tables" / "table_deepening.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("spec_name", sorted(s.name for s in list_specs()))
@pytest.mark.parametrize("profile", ["fast", None])  # None: runs recorded before profiles were (any profile)
def test_a_store_of_any_shipped_spec_reports_itself_and_everything_else(tmp_path, capsys, spec_name, profile):
    """A store holding one spec's runs of the fast profile, or recorded without a profile: the spec's
    report and --all both exit 0, REPORT.md included, whatever the other specs make of that profile
    (under fast, the deviations spec's bf16 and TF32 rows are its base row: they drop out, noted)."""
    spec = load_spec(spec_name)
    for planned in expand(spec, profile or "paper", seeds=1)[:4]:
        timing = {"ms_median": 50.0} if spec.kind == "timing" else None
        path = write_run(tmp_path, spec.name, planned.config, test_error=5.0, timing=timing,
                         profile=profile or "paper")
        if profile is None:
            meta = json.loads((path / "config.json").read_text())
            del meta["profile"]
            (path / "config.json").write_text(json.dumps(meta))
    assert main([spec.name, "--results", str(tmp_path)]) == 0, capsys.readouterr().err
    assert main(["--all", "--results", str(tmp_path)]) == 0, capsys.readouterr().err
    assert (tmp_path / "REPORT.md").exists()


def test_under_the_fast_profile_the_deviations_rows_it_erases_drop_out_with_a_note(tmp_path):
    spec = load_spec("deviations")
    for planned in expand(spec, "fast", seeds=1):
        write_run(tmp_path, spec.name, planned.config, test_error=5.0, profile="fast")
    assert main([spec.name, "--results", str(tmp_path)]) == 0
    table = (tmp_path / "tables" / "deviations.fast.md").read_text()
    assert "Under profile fast, rows[1] with grid {'depth': 16, 'k': 4} (precision = bf16) is the run of rows[0]" in table
    assert "precision = bf16 |" not in table  # no row of its own
