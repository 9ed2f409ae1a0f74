"""Packed runs on SLURM: with runs_per_task = N (or --runs-per-task N) one array task trains up to N runs
of world_size 1 side by side on its GPU, one `experiments.worker` process and log each. Through the dev
cluster of slurm/start_cluster.sh: a USR2 stops every worker at its next step boundary and requeues the
task once, and both runs resume and end as uninterrupted ones; a run that fails leaves the other
training; a task cancelled before it ran records each of its runs failed with the run's own log.
"""

from __future__ import annotations

import pytest

import dataclasses
import re
import subprocess
from pathlib import Path

import torch

import test_slurm
from experiments import store
from experiments.slurm import reconcile, submit_runs, wait_for
from test_slurm import make_run, metrics_without_timing, model_weights, run_cli, training_mid_run, wait_until
from test_slurm_distributed import TINY_SPEC
from wrn.files import atomic_write_json, read_json

pytestmark = pytest.mark.slow  # real SLURM jobs

cluster, data_dir = test_slurm.cluster, test_slurm.data_dir  # the dev cluster's fixtures


def task_log(run: Path) -> str:
    """The packed task's own stderr then stdout (submitit's messages), every attempt."""
    info = read_json(run / store.SLURM)
    return "".join((Path(info["log_dir"]) / f"{info['job_id']}_0_log.{ext}").read_text() for ext in ("err", "out"))


def test_runs_are_packed_in_tasks_of_n_with_memory_for_each_and_a_log_of_their_own(cluster, tmp_path):
    """Three runs at runs_per_task = 2: one array of two tasks, the first of two runs; each task one
    process with memory for two workers. Cancelled before they ran, each run is recorded failed with
    its own worker's log."""
    results = tmp_path / "results"
    runs = [make_run(results, "packed", epochs=1, seed=s) for s in range(3)]
    packed = dataclasses.replace(cluster, runs_per_task=2, sbatch={"hold": True})
    [array] = submit_runs(runs, "slurm_tests", packed, None, None)
    try:
        infos = [read_json(r / store.SLURM) for r in runs]
        assert [i["job_id"] for i in infos] == [f"{array}_0", f"{array}_0", f"{array}_1"]
        assert [i["packed"] for i in infos] == [[runs[0].name, runs[1].name]] * 2 + [[runs[2].name]]
        assert [Path(i["worker_log"]) for i in infos] == [Path(i["log_dir"]) / f"{r.name}.log"
                                                         for i, r in zip(infos, runs)]
        assert {(i["tasks"], i["nodes"]) for i in infos} == {(1, 1)}
        shown = subprocess.run(["scontrol", "show", "job", f"{array}_0"], capture_output=True, text=True,
                               check=True).stdout
        assert re.search(r"NumCPUs=1 NumTasks=1 CPUs/Task=1", shown) and re.search(r"MinMemoryNode=4G\b", shown), shown
    finally:
        subprocess.run(["scancel", array], check=True)
    wait_until(lambda: {r.state for r in reconcile(runs)} == {"failed"}, 60, "the array to end")
    for run, info in zip(runs, infos):
        [log] = read_json(run / store.FAILURE)["logs"]
        assert log["path"] == info["worker_log"] and log["tail"] == "(no log: the process never started)"


def test_a_preempted_packed_task_resumes_each_run_and_they_end_as_uninterrupted_ones(cluster, tmp_path):
    """(c) --runs-per-task 2: two runs in one task, each in its own worker. scancel --signal=USR2
    mid-run: every worker checkpoints at its next step boundary, the task requeues once, and each run
    resumes from its own checkpoint and ends with the metrics and weights of an uninterrupted packed
    pair."""
    spec = tmp_path / "slurm_tiny.toml"
    spec.write_text(TINY_SPEC)
    args = [str(spec), "--profile", "smoke", "--seeds", "2", "--set", "epochs=12", "--set", "lr_milestones=[6]",
            "--set", 'data_source="synthetic:256:64"', "--executor", "slurm", "--cluster", "local",
            "--runs-per-task", "2"]
    out = run_cli(*args, "--results", str(tmp_path / "usr2"))
    assert out.returncode == 0, out.stdout + out.stderr
    runs = [r.path for r in store.all_runs(tmp_path / "usr2")]
    assert len(runs) == 2 and len({read_json(r / store.SLURM)["job_id"] for r in runs}) == 1  # one task
    job = read_json(runs[0] / store.SLURM)["job_id"]
    wait_until(lambda: all(training_mid_run(r, 2) for r in runs), 180, "both runs to train 2 epochs")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    out = run_cli(*args, "--results", str(tmp_path / "reference"))  # starts once the node has a CPU free
    assert out.returncode == 0, out.stdout + out.stderr
    references = {r.run_id: r.path for r in store.all_runs(tmp_path / "reference")}
    assert set(references) == {r.name for r in runs}
    assert wait_for(runs + list(references.values()), poll_s=1, timeout_s=300) == {"done": 4}

    log = task_log(runs[0])
    assert log.count(f"Requeued job {job}") == 1
    for run in runs:
        assert log.count(f"checkpointing {run.name} at the next step boundary") == 1
        worker = Path(read_json(run / store.SLURM)["worker_log"]).read_text()
        assert re.search(rf"resuming {run.name} at epoch \d+, step \d+", worker), worker
        reference = references[run.name]
        assert len(metrics_without_timing(run)) == 12
        assert metrics_without_timing(run) == metrics_without_timing(reference)
        got, want = model_weights(run), model_weights(reference)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_failing_run_leaves_the_run_it_is_packed_with_training(cluster, data_dir, tmp_path):
    """(c) Two runs in one task, one with a config the engine refuses: its worker records the error and
    exits; the other trains on to the end."""
    results = tmp_path / "results"
    good, broken = make_run(results, "mixed", epochs=2), make_run(results, "mixed", epochs=2, seed=1)
    meta = read_json(broken / store.CONFIG)
    atomic_write_json(broken / store.CONFIG, {**meta, "config": {**meta["config"], "depth": 11}})
    submit_runs([good, broken], "slurm_tests", dataclasses.replace(cluster, runs_per_task=2), data_dir, None)
    assert read_json(good / store.SLURM)["job_id"] == read_json(broken / store.SLURM)["job_id"]
    assert wait_for([good, broken], poll_s=1, timeout_s=180) == {"done": 1, "failed": 1}
    failure = store.read_run(broken).failure
    assert failure.error_type == "ConfigError" and "depth=11" in failure.message  # the worker's own record
    assert "error: depth=11" in Path(read_json(broken / store.SLURM)["worker_log"]).read_text()  # its own log
    assert len(store.read_metrics(good / store.METRICS)) == 2
