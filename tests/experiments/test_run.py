"""The runner's command line: dry runs of every shipped spec, overrides, and the smoke profile of
Table 2 end to end through the local executor (real subprocesses, real files), then the status command
and the report on its folder, and relaunches."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
from pathlib import Path

import pandas as pd
import pytest

from analysis import report
from experiments import run, status, store
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
        assert {"run_id", "spec", "label", "params", "flops", "config", "est_device", "est_hours"} <= set(row)
        assert row["spec"] == spec and row["params"] > 0 and row["flops"] > 0
        # paper runs are planned in GPU-hours, the smoke profile's on the CPU it exists for
        assert row["est_device"] == {"paper": "cuda", "smoke": "cpu"}[profile] and row["est_hours"] > 0
        cfg = row["config"]
        for key in ("dataset", "depth", "blocks_per_group", "k", "block", "dropout", "preprocessing",
                    "seed", "epochs", "batch_size", "lr", "lr_milestones", "lr_decay"):
            assert key in cfg, key
    assert len({r["run_id"] for r in rows}) == len(rows)
    assert not (tmp_path / "r").exists()  # a dry run writes nothing
    assert all(row["recipe"] == row["config"]["recipe"] and row["precision"] in ("fp32", "bf16") for row in rows)
    if profile == "paper":  # the paper's numerics: fp32, no TF32, but where a row of deviations measures them
        imposed = {(row["precision"], row["config"]["tf32"]) for row in rows
                   if row["precision"] != "fp32" or row["config"]["tf32"]}
        assert imposed == ({("bf16", False), ("fp32", True)} if spec == "deviations" else set())


def test_dry_run_table_names_every_run(capsys):
    assert run.main(["table_block_type", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for label in ("WRN-40-2-B(1,3,1)", "WRN-40-2-B(3,1)", "WRN-40-2-B(1,3)", "WRN-40-2-B(3,1,1)",
                  "WRN-28-2", "WRN-22-2-B(3,1,3)"):
        assert label in out
    assert "1,429,082" in out and "GPU-hours" in out


def test_a_dry_run_says_what_each_recipe_of_its_runs_resolves_to(capsys):
    """Table 5: He et al.'s recipe for the thin networks, the v2 code's for the WRNs, the v1 code's for
    the counterpart of the official ResNet-164 log."""
    assert run.main(["table_comparison", "--dry-run"]) == 0
    out = capsys.readouterr().out
    recipes = out[out.index("training recipes (docs/recipes.md):"):].splitlines()[1:]
    assert [line.split(":")[0].strip() for line in recipes] == [
        "he-2016 (cifar10, cifar100)", "v1-2016-05 (cifar10)", "official-current (cifar10, cifar100)"]
    he = recipes[0]
    for words in ("lr 0.1 after 400 steps at 0.01, x0.1 from epochs 83, 124 of 164", "batch 128 over 2 processes "
                  "(batch norm per process), the last partial batch kept", "without Nesterov, weight decay 0.0001, "
                  "momentum kept at a drop", "pixelmean, 4-pixel zeros padding", "fan-in init, batch-norm scale 1"):
        assert words in he, words
    assert "data order shared" in recipes[2] and "data order per seed" in recipes[1]


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


@pytest.mark.slow
def test_smoke_table_block_type_end_to_end_then_relaunch_skips(capsys, tmp_path, monkeypatch):
    """`make demo` as a new user runs it, from a folder of their own: the smoke profile writes into
    results/smoke/, every file says "smoke"; `analysis.report --all` and `experiments.status` then agree
    on the folder, nothing is presented as the paper profile's, and a relaunch trains nothing, also
    from the earlier per-spec layout of the run store."""
    monkeypatch.chdir(tmp_path)
    assert run.main(["table_block_type", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    results = tmp_path / "results" / "smoke"
    records = store.all_runs(results)
    assert len(records) == 6 and {r.state for r in records} == {"done"} and {r.profile for r in records} == {"smoke"}
    for rec in records:
        assert (rec.path / "result.json").exists() and (rec.path / "provenance.json").exists()
        assert rec.config.data_source == "synthetic:64:32" and rec.config.epochs == 2
        assert len(store.read_metrics(rec.path / "metrics.jsonl")) == 2
    for name in ("table_block_type.smoke.md", "table_block_type.smoke.tex", "table_block_type.smoke.csv"):
        assert (results / "tables" / name).exists(), name
    for ext in ("png", "pdf"):
        assert (results / "figures" / f"table_block_type_pointplot.smoke.{ext}").exists()
    table = pd.read_csv(results / "tables" / "table_block_type.smoke.csv")
    assert TABLE2_BLOCKS <= set(table["block"].astype(str)) and set(table["profile"]) == {"smoke"}
    markdown = (results / "tables" / "table_block_type.smoke.md").read_text()
    assert all(block in markdown for block in TABLE2_BLOCKS)
    assert "Runs: profile smoke (generated data, 64 training and 32 test images), on cpu" in markdown
    assert "table_block_type.smoke.md" in out
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "results" / "tables").exists()

    # the same folder through the status command and the report: they agree
    assert status.main(["table_block_type", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.startswith("table_block_type: 6 runs: 6 done")
    assert status.main(["table_block_type"]) == 0  # the paper profile: nothing of it anywhere
    assert capsys.readouterr().out.startswith("table_block_type: 30 runs: 30 to do")
    for path in (results / "tables").iterdir():
        path.unlink()
    assert report.main(["--all"]) == 0
    assert {p.name.split(".")[1] for p in (results / "tables").iterdir()} == {"smoke"}
    index = (results / "REPORT.md").read_text()
    assert "## Profile smoke (generated data" in index and "## Profile paper" not in index
    assert "(`table_block_type`): 6 of 6 planned runs done" in index
    assert re.search(r"- time: 6 finished runs on .+ trained [\d.]+ CPU-minutes against [\d.]+ CPU-minutes "
                     r"estimated \([\d.]+x the estimate; training alone; estimated at: [\d.]+ TFLOP/s in fp32, "
                     r"assumed for a CPU", index), "the report holds the smoke launch's time against its estimate"
    assert not (tmp_path / "results" / "REPORT.md").exists()
    capsys.readouterr()
    # the relaunch's dry run estimates each network at the rate its finished run measured
    assert run.main(["table_block_type", "--profile", "smoke", "--dry-run", "--json"]) == 0
    assert all(r["rate_source"].startswith("measured on ") and " run " in r["rate_source"]
               for r in json.loads(capsys.readouterr().out))

    mtimes = {r.run_id: (r.path / "result.json").stat().st_mtime_ns for r in records}
    assert run.main(["table_block_type", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "6 complete, 0 to run" in out and "start " not in out
    assert "] summary: nothing to run, 6 already done\n" in out
    legacy = results / "runs" / "table_block_type"
    legacy.mkdir()
    for rec in records:
        rec.path.rename(legacy / rec.run_id)
    assert run.main(["table_block_type", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "6 complete, 0 to run" in out and "start " not in out
    assert {r.run_id: (r.path / "result.json").stat().st_mtime_ns
            for r in store.all_runs(results)} == mtimes


def test_the_readme_example_spec_dry_runs(capsys, tmp_path):
    """The spec the documentation shows users as a template must stay valid."""
    readme = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_width_sweep.toml"
    path.write_text(block)
    rows = dry_run_json(capsys, str(path))
    assert [r["label"] for r in rows[:4]] == ["WRN-16-1", "WRN-16-2", "WRN-16-4", "WRN-16-8"]
    assert len(rows) == 12  # 4 widths x 3 seeds


ONE_NETWORK_SPEC = """
name = "one_network"
title = "One tiny network"
paper_ref = "none (a test spec)"
description = "WRN-10-1 on CIFAR-10."
kind = "train"
seeds = 1
metrics = ["test_error"]

[base]
dataset = "cifar10"
depth = 10
k = 1
preprocessing = "meanstd"

[table]
rows = ["k"]
metric = "test_error"

[[figures]]
kind = "curves"
"""


@pytest.mark.slow
@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_every_file_and_folder_of_a_launch_honours_the_umask(umask, file_mode, folder_mode, tmp_path, capsys):
    """Run folders, checkpoints, results, tables, figures, the report, the kept spec and the generated
    data: what a group shares on a cluster is readable by it exactly when the umask says so."""
    spec = tmp_path / "one_network.toml"
    spec.write_text(ONE_NETWORK_SPEC)
    results = tmp_path / "results"
    previous = os.umask(umask)
    try:
        assert run.main([str(spec), "--profile", "smoke", "--executor", "debug", "--results", str(results)]) == 0
    finally:
        os.umask(previous)
    capsys.readouterr()
    paths = list(results.rglob("*"))
    for kind in ("result.json", "checkpoint.pt", "metrics.jsonl", "one_network.smoke.md", "REPORT.md",
                 "one_network.toml", "one_network_curves.smoke.png"):
        assert any(p.name == kind for p in paths), kind
    wrong = {str(p.relative_to(results)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) != (folder_mode if p.is_dir() else file_mode)}
    assert not wrong, wrong


@pytest.mark.slow
def test_the_deviations_spec_runs_end_to_end_on_the_smoke_profile(capsys, tmp_path):
    """Every deviation of one process trained on generated data (WRN-16-4's: WRN-28-10's take some twenty
    CPU-minutes and run with the spec's own launch; the rows of two processes are the local executor's,
    tests/experiments/test_executors.py), tabled against the exact recipe and plotted; one seed decides
    nothing, and the table says so."""
    results = tmp_path / "results"
    assert run.main(["deviations", "--profile", "smoke", "--only", "label=WRN-16-4", "--only", "world_size=1",
                     "--executor", "debug", "--results", str(results)]) == 0
    capsys.readouterr()
    records = store.all_runs(results)
    assert len(records) == 15 and {r.state for r in records} == {"done"} and {r.label for r in records} == {"WRN-16-4"}
    assert {r.result.runtime.precision for r in records} == {"fp32", "bf16"}
    comps = pd.read_csv(results / "tables" / "deviations.smoke.vs_baseline.csv")
    assert len(comps) == 15 and set(comps["baseline"]) == {"WRN-16-4"}
    assert {"precision = bf16", "crop_draw = per_image", "recipe = official-current", "data_order = shared",
            "lr_scaling = linear, warmup_epochs = 5",  # the smoke profile keeps its batch of 16
            "best test epoch reported, not the final one"} <= set(comps["deviation"])
    assert set(comps["verdict"]) == {"too_few"}  # one seed: no seed noise to test against
    markdown = (results / "tables" / "deviations.smoke.md").read_text()
    assert "too few runs to estimate the seed noise (0 degrees of freedom, 2 needed)" in markdown
    assert "| none (the baseline) |" in markdown and "15 of 34 planned runs done" in markdown
    assert (results / "figures" / "deviations_differences.smoke.png").exists()


def test_only_selects_part_of_a_spec_and_says_when_it_selects_nothing(capsys, tmp_path):
    rows = dry_run_json(capsys, "table_dropout", "--only", "dataset=svhn", "--only", "dropout=true")
    assert {(r["config"]["dataset"], r["config"]["dropout"]) for r in rows} == {("svhn", 0.4)} and len(rows) == 10
    assert run.main(["table_dropout", "--only", "label=WRN-99-1", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --only: label=WRN-99-1: selects none of the 80 runs of table_dropout"
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_ctrl_c_in_the_debug_executor_is_an_interruption_and_the_relaunch_resumes(capsys, tmp_path, monkeypatch):
    """Ctrl-C as an in-process run starts: no traceback, the run recorded as interrupted (not failed),
    the run not reached counted, the exact command to go on given; the relaunch says where the
    interrupted run resumes (Ctrl-C there again: these tests train nothing)."""
    spec = tmp_path / "one_network.toml"
    spec.write_text(ONE_NETWORK_SPEC)
    results = tmp_path / "results"
    argv = [str(spec), "--profile", "smoke", "--seeds", "2", "--executor", "debug", "--results", str(results)]

    def press_ctrl_c_as_a_run_starts(message: str) -> None:
        print(message)
        if message.startswith(("start", "resume")):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(run, "log_line", press_ctrl_c_as_a_run_starts)
    assert run.main(argv) == 130
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    first, second = sorted(store.all_runs(results), key=lambda r: r.config.seed)
    assert (first.state, second.state) == ("interrupted", "todo")
    assert f"interrupted WRN-10-1 cifar10 seed 0 [{first.run_id}]: stopped at epoch 1, step 0" in out
    assert "summary: 1 interrupted, 1 not started\n" in out
    assert f"1 interrupted, 1 not started: relaunch with `python -m experiments.run {shlex.join(argv)}`" in out

    assert run.main(argv) == 130
    out = capsys.readouterr().out
    assert f"resume WRN-10-1 cifar10 seed 0 [{first.run_id}] at epoch 1, step 0 (in-process)" in out
    assert "summary: 1 interrupted, 1 not started\n" in out
    assert store.read_run(first.path).state == "interrupted"


def test_a_slurm_dry_run_shows_each_runs_nodes_and_task_and_the_gpu_hours_with_and_without_packing(capsys):
    """--runs-per-task 4: the tasks hold 4 runs each, runs of similar length together; the GPU-hours
    packed are the sum of each task's longest run, unpacked the sum of every run."""
    argv = ["table_block_type", "--executor", "slurm", "--cluster", "example_gpu", "--runs-per-task", "4"]
    rows = dry_run_json(capsys, *argv)
    tasks: dict[int, list[dict]] = {}
    for row in rows:
        assert row["world_size"] == 1 and row["slurm"]["nodes"] == 1
        tasks.setdefault(row["slurm"]["array_task"], []).append(row)
    assert sorted(tasks) == list(range(8)) and sorted(len(t) for t in tasks.values()) == [2] + [4] * 7
    assert all(row["slurm"]["runs_in_task"] == len(tasks[row["slurm"]["array_task"]]) for row in rows)
    packed = sum(max(r["est_hours"] for r in task) for task in tasks.values())
    unpacked = sum(r["est_hours"] for r in rows)
    assert packed < unpacked / 3
    assert run.main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-7:] == ["GPUs", "nodes", "task", "est", "GPU-h", "wall-h", "state"]
    assert "on cluster 'example_gpu': 30 runs to train as 8 array tasks" in lines[-2]
    assert lines[-1].startswith(f"{packed:.2f} GPU-hours packed, {unpacked:.2f} GPU-hours one run per task")


def test_a_distributed_run_on_a_cluster_takes_whole_nodes(capsys):
    rows = dry_run_json(capsys, "table_block_type", "--seeds", "1", "--set", "world_size=16", "--set",
                        "batch_size=128", "--executor", "slurm", "--cluster", "example_8gpu")
    assert {(r["world_size"], r["slurm"]["nodes"], r["slurm"]["runs_in_task"]) for r in rows} == {(16, 2, 1)}
    assert all(r["est_wall_hours"] == pytest.approx(r["est_hours"] / 16) for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["--runs-per-task", "2"], "--runs-per-task: only meaningful with --executor slurm"),
    (["--executor", "slurm", "--runs-per-task", "0"], "--runs-per-task: 0: expected an integer >= 1"),
    (["--executor", "slurm", "--cluster", "example_8gpu", "--set", "world_size=12", "--set", "batch_size=96"],
     r"run [0-9a-f]{12}: world_size = 12 does not fit cluster 'example_8gpu' .*tasks_per_node = 8"),
])
def test_bad_cluster_layouts_are_one_line_errors(argv, message, capsys):
    assert run.main(["table_block_type", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
