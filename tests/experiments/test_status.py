"""`python -m experiments.status`: each planned run's state from the run store, SLURM jobs settled."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import time

import pytest

from experiments import run, slurm, status, store
from experiments.plan import expand
from experiments.spec import load_spec
from wrn.files import atomic_write_json, read_json
from wrn.records import EpochMetrics, RunResult, RuntimeSettings

SPEC = "table_block_type"


@pytest.fixture
def results(tmp_path, monkeypatch):
    """Six smoke runs of table_block_type in every state the store knows; SLURM answers from a table."""
    planned = expand(load_spec(SPEC), "smoke")
    assert len(planned) == 6
    root = tmp_path / "results"
    dirs = []
    for plan in planned[:5]:
        path = store.run_dir(root, plan.run_id)
        path.mkdir(parents=True)
        atomic_write_json(path / store.CONFIG, {"run_id": plan.run_id, "spec": SPEC, "label": plan.label,
                                                      "config": plan.config.to_dict(), "created_at": "now"})
        dirs.append(path)
    done, failed, queued, cancelled, running = dirs
    (done / store.METRICS).write_text(json.dumps({"epoch": 1}) + "\n" + json.dumps({"epoch": 2}) + "\n")
    result = RunResult(kind="train", status="done", final=EpochMetrics(
        epoch=2, lr=0.1, train_loss=0.5, train_error=10.0, test_loss=0.6, test_error=12.345, test_top5_error=1.0),
        diverged=None, params=1, flops=2, epoch_time_s=1.0, train_time_s=2.0, images_per_s=64.0, timing=None,
        runtime=RuntimeSettings(device="cpu", device_name="cpu", precision="fp32", channels_last=True,
                                tf32=False, compile=False, torch="2", threads=1))
    atomic_write_json(done / store.RESULT, result.to_dict())
    atomic_write_json(failed / store.FAILURE, {
        "error_type": "RuntimeError", "message": "CUDA out of memory", "at": "now",
        "traceback_tail": "Traceback (most recent call last):\n  File \"train.py\", line 1\nRuntimeError: CUDA out of memory"})
    log_dir = root / "slurm" / SPEC / "sub" / "jobs" / "41_3"
    log_dir.mkdir(parents=True)
    (log_dir / "41_3_0_log.err").write_text("slurmstepd: error: *** JOB 41 CANCELLED AT now ***\n")
    for path, job in ((failed, "41_1"), (queued, "41_2"), (cancelled, "41_3"), (running, "41_4")):
        atomic_write_json(path / store.SLURM, {"job_id": job, "cluster": "local", "submitted_at": "now",
                                                     "active": True, "log_dir": str(root / "slurm" / SPEC / "sub"
                                                                                    / "jobs" / job)})
    (running / store.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                  "started_at": time.time()}))
    asked = []

    def job_states(ids):
        asked.append(sorted(ids))
        return {"41_2": "PENDING", "41_3": "CANCELLED", "41_4": "RUNNING"}

    monkeypatch.setattr(slurm, "job_states", job_states)
    return root, planned, dirs, asked


def test_every_state_with_jobs_and_error_tails(results, capsys):
    root, planned, (done, failed, queued, cancelled, running), asked = results
    assert status.main([SPEC, "--profile", "smoke", "--results", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"{SPEC}: 6 runs: 1 running, 1 queued, 1 to do, 1 done, 2 failed"
    row = {m.group(0): line for line in lines[2:] if (m := re.search(r"\b[0-9a-f]{12}\b", line))}
    assert row[done.name].startswith("done") and "2/2" in row[done.name] and "test error 12.35%" in row[done.name]
    assert row[failed.name].startswith("failed") and "41_1" in row[failed.name]
    assert "RuntimeError: CUDA out of memory" in row[failed.name]
    assert "    | RuntimeError: CUDA out of memory" in out  # the tail of the traceback
    assert row[queued.name].startswith("queued") and "41_2" in row[queued.name]
    assert row[running.name].startswith("running")
    assert row[planned[5].run_id].startswith("to do") and "0/2" in row[planned[5].run_id]
    # the cancelled job is settled as failed, with the job's final state and its log
    assert row[cancelled.name].startswith("failed")
    assert "SLURM job 41_3 ended CANCELLED without a result" in row[cancelled.name]
    assert "    | slurmstepd: error: *** JOB 41 CANCELLED AT now ***" in out
    assert asked == [["41_2", "41_3"]]  # only runs that look queued are asked about
    # the command that relaunches them, every flag included, to the cluster the runs went to
    assert lines[-1] == (f"launching again runs only the 2 failed, 0 interrupted and 1 missing runs: python -m "
                         f"experiments.run {SPEC} --profile smoke --results {root} --executor slurm --cluster local")
    assert lines[1].split()[:5] == ["state", "run_id", "label", "dataset", "seed"]
    assert all(" cifar10 " in line for line in row.values())
    # recorded, so the runner resubmits it and a later status agrees without asking SLURM
    assert store.read_run(cancelled).state == "failed"
    assert not read_json(cancelled / store.SLURM)["active"]


def test_runs_of_another_profile_are_counted_not_listed(results, capsys):
    root, *_ = results
    assert status.main([SPEC, "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{SPEC}: 30 runs: 30 to do"
    assert (f"(5 more run folders under {root} were planned by {SPEC} under another profile or --set: not in "
            "these tables)") in out


def test_slurm_unreachable_leaves_store_states(results, capsys, monkeypatch):
    root, _, (_, _, queued, cancelled, _), _ = results
    monkeypatch.setattr(slurm, "job_states", lambda ids: None)
    assert status.main([SPEC, "--profile", "smoke", "--results", str(root)]) == 0
    assert store.read_run(cancelled).state == "queued"  # nothing concluded without SLURM's answer


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown spec 'nosuch'"),
    ([SPEC, "--profile", "nosuch"], "unknown profile 'nosuch'"),
    ([SPEC, "--seeds", "0"], "--seeds: 0: expected an integer >= 1"),
    ([SPEC, "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert status.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_relaunch_hint_plans_exactly_the_runs_shown(tmp_path, capsys):
    """Profile, results folder, seeds and --set all reach the command the hint gives: run, it plans
    the very runs the status lists."""
    root = tmp_path / "results"
    argv = [SPEC, "--profile", "smoke", "--results", str(root), "--seeds", "2", "--set", "epochs=3"]
    assert status.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = {m.group(0) for line in lines[2:] if (m := re.search(r"\b[0-9a-f]{12}\b", line))}
    assert len(shown) == 12
    command = shlex.split(lines[-1].split(": ", 1)[1])
    assert command[:3] == ["python", "-m", "experiments.run"] and "--executor" not in command
    assert run.main([*command[3:], "--dry-run", "--json"]) == 0
    assert {r["run_id"] for r in json.loads(capsys.readouterr().out)} == shown


def test_distributed_and_packed_runs_show_their_task_and_each_processs_log(tmp_path, monkeypatch, capsys):
    """A distributed run shows its ranks and nodes and, running, each rank's log; a failed one whose job
    has ended gets the tail of every rank's log (a killed rank's last words included) next to the error
    rank 0 recorded; a packed run shows its task's runs and its own worker's log."""
    planned = expand(load_spec(SPEC), "smoke")[:4]
    root = tmp_path / "results"
    jobs = root / "slurm" / SPEC / "sub" / "jobs"
    dirs = []
    for plan in planned:
        path = store.run_dir(root, plan.run_id)
        path.mkdir(parents=True)
        atomic_write_json(path / store.CONFIG, {"run_id": plan.run_id, "spec": SPEC, "label": plan.label,
                                                "config": plan.config.to_dict(), "created_at": "now"})
        dirs.append(path)
    running, failed, packed_a, packed_b = dirs
    for path, job in ((running, "50_0"), (failed, "50_1")):
        atomic_write_json(path / store.SLURM, {"job_id": job, "cluster": "local", "active": True, "tasks": 4,
                                               "nodes": 2, "log_dir": str(jobs / job)})
    for path in (packed_a, packed_b):
        atomic_write_json(path / store.SLURM, {"job_id": "51", "cluster": "local", "active": True, "tasks": 1,
                                               "nodes": 1, "log_dir": str(jobs / "51"),
                                               "packed": [packed_a.name, packed_b.name],
                                               "worker_log": str(jobs / "51" / f"{path.name}.log")})
    for path in (running, packed_a):
        (path / store.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                   "started_at": time.time()}))
    atomic_write_json(failed / store.FAILURE, {"error_type": "DistBackendError", "message": "timed out", "at": "now",
                                               "traceback_tail": "DistBackendError: wait timeout after 20000ms"})
    (jobs / "50_1").mkdir(parents=True)
    for rank in (0, 1, 3):  # rank 2 never wrote a line
        (jobs / "50_1" / f"50_1_{rank}_log.err").write_text(f"training as rank {rank}\nlast words of rank {rank}\n")
    asked = []

    def job_states(ids):
        asked.append(sorted(ids))
        return {"50_1": "FAILED", "51": "RUNNING"}

    monkeypatch.setattr(slurm, "job_states", job_states)
    assert status.main([SPEC, "--profile", "smoke", "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert asked == [["50_1", "51"]]  # the failed distributed run (its job may hold more logs) and the queued one
    assert re.search(rf"running\s+{running.name}.*50_0 \(4 ranks on 2 nodes\)", out)
    for rank in range(4):
        assert f"    rank {rank}: {jobs / '50_0' / f'50_0_{rank}_log.err'}" in out
    assert re.search(rf"failed\s+{failed.name}.*50_1 \(4 ranks on 2 nodes\)\s+DistBackendError: timed out", out)
    assert "    | DistBackendError: wait timeout after 20000ms" in out
    for rank in (0, 1, 3):
        assert f"    | last words of rank {rank}" in out
    assert f"    rank 2: {jobs / '50_1' / '50_1_2_log.err'}\n    | (no log: the process never started)" in out
    assert re.search(rf"running\s+{packed_a.name}.*51 \(packed: 2 runs\)", out)
    assert f"    log: {jobs / '51' / f'{packed_a.name}.log'}" in out
    assert re.search(rf"queued\s+{packed_b.name}.*51 \(packed: 2 runs\)", out)
    failure = read_json(failed / store.FAILURE)
    assert failure["error_type"] == "DistBackendError" and [log["name"] for log in failure["logs"]] == [
        "rank 0", "rank 1", "rank 2", "rank 3"]
    assert not read_json(failed / store.SLURM)["active"]
    assert status.main([SPEC, "--profile", "smoke", "--results", str(root)]) == 0
    assert asked[-1] == ["51"]  # settled once
