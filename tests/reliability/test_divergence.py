"""Divergence: a NaN/inf training loss ends the run as "diverged" at the (epoch, step)
where it first appeared; it is a finished result (not retrained by the next launch, not a failure),
and the table shows it as diverged, never as a number."""

from __future__ import annotations

import pytest

import csv
import signal

from harness import STEPS_PER_EPOCH, make_run, metrics_rows, worker_log, write_spec
from experiments import store
from experiments.run import main
from wrn.files import read_json

pytestmark = pytest.mark.slow  # workers driven to divergence

S = STEPS_PER_EPOCH
ONE_NETWORK_SPEC = '''\
name = "reliability_diverging"
title = "Reliability: a diverging network"
paper_ref = "none (a test spec)"
description = "WRN-10-1 on CIFAR-10 with an absurd learning rate."
kind = "train"
seeds = 1
metrics = ["test_error"]

[base]
dataset = "cifar10"
arch = "wrn"
depth = 10
k = 1
preprocessing = "meanstd"
dropout = false

[table]
rows = ["k"]
metric = "test_error"
'''


def test_nan_loss_marks_the_run_diverged_at_its_epoch_and_step(workers, data_dir, reference, tmp_path):
    """The weights are poisoned after step S+3, so the loss of epoch 2's step 3 (0-based) is NaN."""
    run = make_run(tmp_path / "results")
    assert workers.run(run, data_dir, [f"step:{S + 3}:nan"]) == 0, worker_log(run)
    result = read_json(run / store.RESULT)
    assert result["status"] == "diverged" and result["final"] is None
    assert (result["diverged"]["epoch"], result["diverged"]["step"]) == (2, 3)
    assert result["diverged"]["loss"] == "nan"
    assert metrics_rows(run) == reference["metrics"][:1], "the diverged epoch must not be reported"
    assert store.read_run(run).state == "diverged"
    # A relaunch does not retrain a diverged run: it is a result.
    assert workers.run(run, data_dir, ["step:1:kill"]) == 0


def test_divergence_survives_a_kill_before_the_result_is_written(workers, data_dir, tmp_path):
    run = make_run(tmp_path / "results")
    code = workers.run(run, data_dir, [f"step:{S + 3}:nan", "replace:result.json:1:kill"])
    assert code == -signal.SIGKILL
    assert not (run / store.RESULT).exists()
    assert workers.run(run, data_dir, ["step:1:kill"]) == 0, "the resumed run trained past its divergence"
    result = read_json(run / store.RESULT)
    assert result["status"] == "diverged" and (result["diverged"]["epoch"], result["diverged"]["step"]) == (2, 3)


def test_diverged_run_is_shown_as_diverged_in_the_table(tmp_path, capsys):
    spec = write_spec(tmp_path, "reliability_diverging", ONE_NETWORK_SPEC)
    results = tmp_path / "results"
    code = main([str(spec), "--profile", "smoke", "--results", str(results), "--executor", "debug",
                 "--set", "lr=1e12"])
    assert code == 0, capsys.readouterr()
    (rec,) = store.all_runs(results)
    assert rec.state == "diverged"
    where = rec.result.diverged
    table = (results / "tables" / "reliability_diverging.smoke.md").read_text()
    assert "diverged" in table
    with open(results / "tables" / "reliability_diverging.smoke.runs.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["state"] == "diverged" and row["test_error"] == ""
    with open(results / "tables" / "reliability_diverging.smoke.csv") as f:
        (cell,) = list(csv.DictReader(f))
    assert cell["median"] == "" and cell["n"] == "0", "a diverged run entered a median"
    assert float(row["diverged_epoch"]) == where.epoch
    # Where it diverged is what a reader needs to pick a smaller learning rate.
    run_line = next(line for line in table.splitlines() if rec.run_id in line)
    assert f"epoch {where.epoch}" in run_line and f"step {where.step}" in run_line, run_line
