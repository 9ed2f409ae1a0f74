"""Distributed runs on SLURM: a run of world_size W is one array task of W SLURM tasks (processes, one
GPU each) on ceil(W / tasks_per_node) nodes. Through the dev cluster of slurm/start_cluster.sh (one
node of two CPUs: a run of world_size 2 is two processes joined over gloo): a USR2 preemption stops
both ranks at one step boundary and requeues once, and the run ends bit-identical to an uninterrupted
one; a rank killed makes the run fail after the collective timeout instead of hanging, with every
rank's log, and a relaunch resumes it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import test_slurm
from experiments import store
from experiments.clusters import load_cluster
from experiments.slurm import ENDED, job_states, make_executor, reconcile, submit_runs, wait_for
from test_slurm import make_run, metrics_without_timing, model_weights, run_cli, training_mid_run, wait_until
from wrn.files import read_json

pytestmark = pytest.mark.slow  # real SLURM jobs of several processes

cluster, data_dir = test_slurm.cluster, test_slurm.data_dir  # the dev cluster's fixtures

TINY_SPEC = """
name = "slurm_tiny"
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
"""


def rank_logs(run: Path) -> list[str]:
    """Each rank's stderr then stdout (submitit writes its own messages to stdout), every attempt."""
    info = read_json(run / store.SLURM)
    folder, job = Path(info["log_dir"]), info["job_id"]
    return ["".join((folder / f"{job}_{rank}_log.{ext}").read_text() for ext in ("err", "out"))
            for rank in range(info["tasks"])]


def rank_pid(job_id: str, rank: int) -> int:
    """The pid of the process of SLURM task `rank` of job `job_id` ("12" or array task "12_3"), found by
    the SLURM variables in its environment."""
    base, _, index = job_id.partition("_")
    wanted = {"SLURM_PROCID": str(rank), **({"SLURM_ARRAY_JOB_ID": base, "SLURM_ARRAY_TASK_ID": index} if index
                                             else {"SLURM_JOB_ID": base})}
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            env = dict(item.split("=", 1) for item in (proc / "environ").read_text(errors="replace").split("\0")
                       if "=" in item)
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline and all(env.get(k) == v for k, v in wanted.items()):
            return int(proc.name)
    raise AssertionError(f"no process of rank {rank} of job {job_id}")


def test_an_8_gpu_node_profile_asks_for_whole_nodes_and_memory_per_process(tmp_path):
    """The sbatch lines of example_8gpu: world_size 16 is 2 nodes of 8 processes with 8 GPUs each and
    --mem for 8 processes; a packed task of 4 runs is 1 process on 1 GPU with --mem for 4 workers."""
    profile = load_cluster("example_8gpu")

    def sbatch(world_size: int) -> str:
        executor = make_executor(profile, tmp_path, tmp_path / "code", "wrn-x", 4, None,
                                 profile.topology(world_size, "r"))
        return executor._make_submission_file_text("python -m x", "uid")

    distributed = sbatch(16)
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=16",
                 f"--mem={120 * 8 * 1024}MB", "--signal=USR2@180"):
        assert f"#SBATCH {line}\n" in distributed, line
    assert "export WRN_COLLECTIVE_TIMEOUT_S=600\n" in distributed
    packed = sbatch(1)
    for line in ("--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=1", f"--mem={120 * 4 * 1024}MB"):
        assert f"#SBATCH {line}\n" in packed, line


def test_each_topology_is_an_array_of_its_own_and_a_cancelled_run_keeps_every_ranks_log(cluster, tmp_path):
    """A run of world_size 2 and one of world_size 1 are two arrays (submitit's parameters are per
    array), the second after the first; SLURM gives the first 2 tasks with 2 GB each. Cancelled while
    held, both are recorded failed, the distributed one with a log entry per rank."""
    results = tmp_path / "results"
    pair = make_run(results, "shapes", epochs=1, world_size=2)
    single = make_run(results, "shapes", epochs=1)
    held = dataclasses.replace(cluster, sbatch={"hold": True})
    first, second = submit_runs([pair, single], "slurm_tests", held, None, None)
    try:
        assert (read_json(pair / store.SLURM)["job_id"], read_json(single / store.SLURM)["job_id"]) == (first, second)
        assert {k: read_json(pair / store.SLURM)[k] for k in ("tasks", "nodes")} == {"tasks": 2, "nodes": 1}
        shown = subprocess.run(["scontrol", "show", "job", first], capture_output=True, text=True, check=True).stdout
        assert re.search(r"NumNodes=1(-1)? NumCPUs=2 NumTasks=2 CPUs/Task=1", shown), shown
        assert re.search(r"MinMemoryNode=4G\b", shown), shown
        assert f"afterany:{first}" in subprocess.run(["scontrol", "show", "job", second], capture_output=True,
                                                     text=True, check=True).stdout
    finally:
        subprocess.run(["scancel", first, second], check=True)
    wait_until(lambda: {r.state for r in reconcile([pair, single])} == {"failed"}, 60, "both jobs to end")
    logs = read_json(pair / store.FAILURE)["logs"]
    assert [log["name"] for log in logs] == ["rank 0", "rank 1"]
    assert logs[1]["path"].endswith(f"{first}_1_log.err")
    assert [log["name"] for log in read_json(single / store.FAILURE)["logs"]] == ["log"]


def test_a_preempted_distributed_run_resumes_and_ends_as_an_uninterrupted_one(cluster, tmp_path):
    """(a) scancel --signal=USR2 reaches both ranks mid-epoch; rank 0's checkpoint() stops both at one
    step boundary through the engine's agreement and requeues once, rank 1 waits for the requeue; the
    run resumes and ends with the metrics and weights of an uninterrupted run of the same 2 processes."""
    spec = tmp_path / "slurm_tiny.toml"
    spec.write_text(TINY_SPEC)
    args = [str(spec), "--profile", "smoke", "--set", "world_size=2", "--set", "epochs=12", "--set",
            "lr_milestones=[6]", "--set", 'data_source="synthetic:256:64"', "--executor", "slurm", "--cluster", "local"]
    out = run_cli(*args, "--results", str(tmp_path / "usr2"))
    assert out.returncode == 0, out.stdout + out.stderr
    [preempted] = [r.path for r in store.all_runs(tmp_path / "usr2")]
    job = read_json(preempted / store.SLURM)["job_id"]
    wait_until(lambda: training_mid_run(preempted, 2), 180, "the run to train 2 epochs")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    out = run_cli(*args, "--results", str(tmp_path / "reference"))  # starts once the node is free
    assert out.returncode == 0, out.stdout + out.stderr
    [reference] = [r.path for r in store.all_runs(tmp_path / "reference")]
    assert reference.name == preempted.name
    assert wait_for([preempted, reference], poll_s=1, timeout_s=300) == {"done": 2}

    rank0, rank1 = rank_logs(preempted)
    assert rank0.count("checkpointing") == 1 and rank0.count(f"Requeued job {job}") == 1
    assert re.search(rf"resuming {preempted.name} at epoch \d+, step [1-9]\d*", rank0)  # mid-epoch
    assert "Not checkpointing nor requeuing since I am a slave (procid=1)" in rank1
    assert "rank 1: stopped with rank 0 at a step boundary; waiting" in rank1
    assert all(log.count("as rank") == 2 for log in (rank0, rank1))  # two starts of each rank
    expected = metrics_without_timing(reference)
    assert len(expected) == 12 and metrics_without_timing(preempted) == expected
    assert read_json(preempted / store.RESULT)["final"] == read_json(reference / store.RESULT)["final"]
    got, want = model_weights(preempted), model_weights(reference)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_dead_or_hung_rank_fails_the_run_without_hanging_and_a_relaunch_resumes_it(how, cluster, data_dir, tmp_path):
    """(b) Rank 1 killed (SIGKILL: rank 0's next collective fails at once, gloo sees the connection
    reset) or hung (SIGSTOP: rank 0's collective times out after collective_timeout_s, 20 s here) mid-run:
    rank 0 records the error and exits, srun ends rank 1 (--kill-on-bad-exit), the job ends, and
    reconcile adds every rank's log tail. Submitted again, the run resumes from its last checkpoint and
    finishes."""
    run = make_run(tmp_path / "results", how, epochs=12, world_size=2)
    profile = dataclasses.replace(cluster, collective_timeout_s=20)
    [job] = submit_runs([run], "slurm_tests", profile, data_dir, None)
    wait_until(lambda: training_mid_run(run, 2), 180, "the run to train 2 epochs")
    os.kill(rank_pid(job, 1), signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    stopped = time.monotonic()
    wait_until(lambda: (job_states([job]) or {}).get(job) in ENDED, 90, "the job to end")
    took = time.monotonic() - stopped
    assert took < 20 + 30 and (how == "killed" or took >= 20), took
    [rec] = reconcile([run])
    assert rec.state == "failed" and rec.failure.error_type != "SlurmJobEnded"  # rank 0 recorded it
    logs = {log.name: log for log in rec.failure.logs}
    assert sorted(logs) == ["rank 0", "rank 1"]
    if how == "killed":
        assert "task 1: Killed" in logs["rank 0"].tail  # srun's words, in task 0's log
        assert "as rank 1 of 2" in logs["rank 1"].tail  # the killed rank's last words
    else:
        assert "Timed out waiting 20000ms" in rec.failure.message
        assert "Terminating StepId" in logs["rank 0"].tail  # srun ends the hung rank
        assert "[rank1]:" in logs["rank 1"].tail
    epochs_before = rec.epochs_done
    assert 2 <= epochs_before < 12

    [again] = submit_runs([run], "slurm_tests", profile, data_dir, None)
    assert again != job
    assert wait_for([run], poll_s=1, timeout_s=240) == {"done": 1}
    rank0 = rank_logs(run)[0]
    assert re.search(rf"resuming {run.name} at epoch {epochs_before + 1}, step 0", rank0), rank0
    assert len(store.read_metrics(run / store.METRICS)) == 12


def test_table_8_smoke_trains_as_two_processes_through_the_cluster(cluster, tmp_path):
    """The smoke-sized WRN-50-2 of Table 8 is a run of world_size 2: one array task of two SLURM
    tasks over gloo, its table written and captioned with the processes that trained it."""
    results = tmp_path / "results"
    done = run_cli("imagenet_bottleneck", "--profile", "smoke", "--executor", "slurm", "--cluster", "local",
                   "--wait", "--results", str(results))
    assert done.returncode == 0, done.stderr
    [run] = store.all_runs(results)
    assert run.state == "done" and run.slurm.tasks == 2 and run.slurm.nodes == 1
    runtime = run.result.runtime
    assert (runtime.world_size, runtime.per_rank_batch, runtime.backend) == (2, 2, "gloo")
    assert [f"as rank {r} of 2" in log for r, log in enumerate(rank_logs(run.path))] == [True, True]
    table = (results / "tables" / "imagenet_bottleneck.smoke.md").read_text()
    assert "data-parallel: 2 processes x 2 images (gloo)" in table
