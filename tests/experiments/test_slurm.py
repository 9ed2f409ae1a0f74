"""Submission through a real SLURM cluster: the dev cluster of slurm/start_cluster.sh.

The module uses the cluster that SLURM_CONF points to, or starts one with the repository's scripts (and
stops it at the end), so CI always exercises real sbatch, squeue, sacct, requeue and preemption. Runs are
tiny WRN-10-1 networks on generated CIFAR-10 images, trained on one CPU per job.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments import slurm as slurm_mod
from experiments import store
from experiments.clusters import load_cluster
from experiments.slurm import check_available, reconcile, snapshot_code, submit_runs, wait_for
from test_rounds import PAPER, SPEC
from wrn import checkpoint
from wrn.config import RunConfig, resolve
from wrn.data.fake import write_fake_dataset
from wrn.errors import UserError
from wrn.files import atomic_write_json, read_json
from wrn.names import render_label

pytestmark = pytest.mark.slow  # real SLURM jobs

REPO = Path(__file__).resolve().parents[2]
TIMING_FIELDS = {"train_time_s", "images_per_s"}


# --------------------------------------------------------------------------------------------------
# Fixtures


def _source_env(env_file: Path) -> None:
    for line in env_file.read_text().splitlines():
        for assignment in line.removeprefix("export ").split():
            key, _, value = assignment.partition("=")
            os.environ[key] = value.replace("$PATH", os.environ.get("PATH", ""))


@pytest.fixture(scope="module")
def cluster():
    """The local dev cluster's profile, with a cluster running (started here when none is)."""
    started = None
    try:
        check_available()
    except UserError:
        base = Path(os.environ.get("WRN_SLURM_BASE", "/tmp/wrn-slurm"))
        out = subprocess.run([str(REPO / "slurm" / "start_cluster.sh"), str(base)], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        _source_env(base / "env.sh")
        if out.stdout.startswith("started"):
            started = base
        check_available()
    yield load_cluster("local")
    if started is not None:
        subprocess.run([str(REPO / "slurm" / "stop_cluster.sh"), str(started)], check=True, timeout=120)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_dataset("cifar10", root, 256, 64, seed=0)
    return root


def make_run(results: Path, spec: str, epochs: int, **fields) -> Path:
    """A run folder of a WRN-10-1 on generated CIFAR-10 (about 1.3 s per epoch on one CPU)."""
    cfg = resolve(RunConfig(dataset="cifar10", depth=10, k=1, epochs=epochs, lr_milestones=(max(1, epochs // 2),),
                            batch_size=16, eval_batch_size=64, preprocessing="meanstd",
                            data_source="synthetic:256:64", **fields))
    rid = store.run_id(cfg)
    path = store.run_dir(results, rid)
    path.mkdir(parents=True)
    atomic_write_json(path / store.CONFIG, {"run_id": rid, "spec": spec, "label": render_label(cfg),
                                                  "kind": "train", "config": cfg.to_dict(), "created_at": "now"})
    return path


def job_log(run: Path) -> str:
    """The job's stderr then stdout (submitit writes its own messages to stdout), all attempts."""
    info = read_json(run / store.SLURM)
    return "".join((Path(info["log_dir"]) / f"{info['job_id']}_0_log.{ext}").read_text() for ext in ("err", "out"))


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def training_mid_run(run: Path, epochs: int) -> bool:
    return store.read_run(run).state == "running" and len(store.read_metrics(run / store.METRICS)) >= epochs


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load_latest(run)["model"]


def metrics_without_timing(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in store.read_metrics(run / store.METRICS)]


# --------------------------------------------------------------------------------------------------
# Availability


def test_check_available_on_the_running_cluster(cluster):
    check_available()


def test_missing_slurm_client_is_one_line_pointing_to_the_dev_cluster(cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match=r"sbatch not found on PATH.*slurm/start_cluster.sh") as err:
        check_available()
    assert "\n" not in str(err.value)


def test_unreachable_controller_is_one_line(cluster, monkeypatch, tmp_path):
    conf = Path(os.environ["SLURM_CONF"]).read_text()
    bad = tmp_path / "slurm.conf"
    bad.write_text("".join(line if not line.startswith("SlurmctldPort=") else "SlurmctldPort=6899\n"
                           for line in conf.splitlines(keepends=True)))
    monkeypatch.setenv("SLURM_CONF", str(bad))
    with pytest.raises(UserError, match=r"controller is not reachable \(Slurmctld\(primary\) at \S+ is DOWN\);"
                                        r".*slurm/start_cluster.sh") as err:
        check_available()
    assert "\n" not in str(err.value)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))
    with pytest.raises(UserError, match=r"SLURM_CONF=.*missing.conf: no such file"):
        check_available()


# --------------------------------------------------------------------------------------------------
# Submission


@pytest.mark.parametrize("change, message", [
    ({"cpus_per_task": 512}, "More processors requested than permitted"),
    ({"partition": "nonexistent"}, "invalid partition specified: nonexistent"),
    ({"gpus_per_task": 1}, "Invalid generic resource"),
])
def test_impossible_resources_are_refused_at_submission(cluster, data_dir, tmp_path, change, message):
    results = tmp_path / "results"
    run = make_run(results, "probe", epochs=1)
    with pytest.raises(UserError, match=f"cluster 'local': sbatch refused the job array: .*{message}") as err:
        submit_runs([run], "slurm_tests", dataclasses.replace(cluster, **change), data_dir, None)
    assert "\n" not in str(err.value)
    assert not (run / store.SLURM).exists()
    assert not (results / "slurm").exists()
    assert store.read_run(run).state == "todo"


def test_array_is_chunked_under_max_array_size_and_runs_from_the_snapshot(cluster, data_dir, tmp_path):
    results = tmp_path / "results"
    runs = [make_run(results, "chunked", epochs=1, seed=s) for s in range(3)]
    job_ids = submit_runs(runs, "chunked", dataclasses.replace(cluster, max_array_size=2), data_dir, max_parallel=2)
    assert len(job_ids) == 2
    infos = [read_json(r / store.SLURM) for r in runs]
    assert [i["job_id"] for i in infos] == [f"{job_ids[0]}_0", f"{job_ids[0]}_1", job_ids[1]]
    assert all(i["active"] and i["cluster"] == "local" for i in infos)
    # the second chunk waits for the first, so the parallelism cap holds across chunks
    shown = subprocess.run(["scontrol", "show", "job", job_ids[1]], capture_output=True, text=True).stdout
    assert f"afterany:{job_ids[0]}" in shown
    assert wait_for(runs, poll_s=1, timeout_s=180) == {"done": 3}
    snapshot = Path(infos[0]["snapshot"])
    assert snapshot.parent.parent == results / "slurm" / "chunked"
    assert (snapshot / "experiments" / "slurm.py").is_file()
    for run in runs:
        assert f"with the code in {snapshot}" in job_log(run)
        assert read_json(run / store.PROVENANCE)["git_commit"] is not None


def test_submitting_a_queued_run_again_is_a_no_op(cluster, data_dir, tmp_path):
    run = make_run(tmp_path / "results", "again", epochs=1)
    first = submit_runs([run], "slurm_tests", cluster, data_dir, None)
    assert submit_runs([run], "slurm_tests", cluster, data_dir, None) == []
    assert read_json(run / store.SLURM)["job_id"] == first[0]
    assert wait_for([run], poll_s=1, timeout_s=120) == {"done": 1}


def test_failed_and_cancelled_runs_are_reported_and_only_they_are_resubmitted(cluster, data_dir, tmp_path):
    results = tmp_path / "results"
    good = make_run(results, "mixed", epochs=1)
    broken = make_run(results, "mixed", epochs=1, seed=1)
    cancelled = make_run(results, "mixed", epochs=1, seed=2)
    meta = read_json(broken / store.CONFIG)
    atomic_write_json(broken / store.CONFIG, {**meta, "config": {**meta["config"], "depth": 11}})
    submit_runs([good, broken], "slurm_tests", cluster, data_dir, None)
    [cancel_id] = submit_runs([cancelled], "slurm_tests", dataclasses.replace(cluster, sbatch={"hold": True}), data_dir, None)
    subprocess.run(["scancel", cancel_id], check=True)
    assert wait_for([good, broken, cancelled], poll_s=1, timeout_s=180) == {"done": 1, "failed": 2}

    failed = store.read_run(broken)
    assert failed.failure.error_type == "ConfigError" and "depth=11" in failed.failure.message
    gone = store.read_run(cancelled)
    assert gone.failure.error_type == "SlurmJobEnded"
    assert f"SLURM job {cancel_id} ended CANCELLED without a result" in gone.failure.message
    assert not read_json(cancelled / store.SLURM)["active"]

    # relaunch: what the runner submits is every run not done; the done one keeps its result untouched
    atomic_write_json(broken / store.CONFIG, meta)
    done_result = (good / store.RESULT).stat().st_mtime_ns
    to_run = [r.path for r in reconcile([good, broken, cancelled]) if r.state not in ("done", "diverged")]
    assert to_run == [broken, cancelled]
    submit_runs(to_run, "slurm_tests", cluster, data_dir, None)
    assert {store.read_run(r).state for r in to_run} <= {"queued", "running"}  # failure.json cleared
    assert wait_for([good, broken, cancelled], poll_s=1, timeout_s=180) == {"done": 3}
    assert (good / store.RESULT).stat().st_mtime_ns == done_result


# --------------------------------------------------------------------------------------------------
# Preemption and requeue


def test_preempted_and_requeued_jobs_resume_and_match_an_uninterrupted_run(cluster, data_dir, tmp_path):
    """(b) scancel --signal=USR2 (what preemption and the time limit send): submitit's checkpoint()
    stops training at a step boundary and requeues; (c) scontrol requeue (no USR2: the job is killed
    and reruns its original submission): it resumes from the run store's last epoch checkpoint.
    Both end with exactly the metrics and weights of an uninterrupted run on one CPU."""
    # Long enough that a job signalled after 2 epochs is still training when SLURM kills it: a plain
    # requeue only takes effect after KillWait (10 s) and an idle CPU trains an epoch in ~0.4 s.
    # One run (one config, one id) three times: in three results folders.
    epochs = 60
    preempted = make_run(tmp_path / "usr2", "usr2", epochs)
    requeued = make_run(tmp_path / "requeue", "requeue", epochs)
    reference = make_run(tmp_path / "reference", "reference", epochs)
    [usr2_job] = submit_runs([preempted], "slurm_tests", cluster, data_dir, None)
    [requeue_job] = submit_runs([requeued], "slurm_tests", cluster, data_dir, None)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = subprocess.Popen([sys.executable, "-m", "experiments.worker", str(reference), "--data-dir",
                            str(data_dir), "--device", "cpu"], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    wait_until(lambda: training_mid_run(preempted, 2), 120, "the USR2 job to train 2 epochs")
    subprocess.run(["scancel", "--signal=USR2", usr2_job], check=True)
    wait_until(lambda: training_mid_run(requeued, 2), 120, "the requeue job to train 2 epochs")
    subprocess.run(["scontrol", "requeue", requeue_job], check=True)

    assert wait_for([preempted, requeued], poll_s=1, timeout_s=240) == {"done": 2}
    assert ref.wait(timeout=120) == 0, ref.stderr.read()

    usr2_log = job_log(preempted)
    assert "checkpointing" in usr2_log and f"Requeued job {usr2_job}" in usr2_log
    assert re.search(rf"resuming {preempted.name} at epoch \d+, step \d+", usr2_log)
    assert f"resuming {requeued.name} at epoch" in job_log(requeued)
    expected = metrics_without_timing(reference)
    assert len(expected) == epochs
    for run in (preempted, requeued):
        assert metrics_without_timing(run) == expected
        assert read_json(run / store.RESULT)["final"] == read_json(reference / store.RESULT)["final"]
        got, want = model_weights(run), model_weights(reference)
        assert all(torch.equal(got[k], want[k]) for k in want)


# --------------------------------------------------------------------------------------------------
# Parsing


def test_parse_states_expands_pending_array_ranges_and_skips_steps():
    text = "JobID|State\n12_[3-5,7%2]|PENDING\n12_1|RUNNING\n12_1.batch|RUNNING\n13|CANCELLED by 0\n"
    assert slurm_mod.parse_job_states(text) == {"12_3": "PENDING", "12_4": "PENDING", "12_5": "PENDING",
                                             "12_7": "PENDING", "12_1": "RUNNING", "13": "CANCELLED"}


def test_chunks_keep_every_run_once():
    assert slurm_mod.chunks(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert slurm_mod.chunks([1], 1001) == [[1]]


# --------------------------------------------------------------------------------------------------
# The command line, end to end


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=env)


def table_without_timing(results: Path, spec: str) -> pd.DataFrame:
    table = pd.read_csv(results / "tables" / f"{spec}.smoke.csv")
    return table[[c for c in table.columns if "time" not in c]]


def test_smoke_spec_through_the_cluster_gives_the_local_executors_table(cluster, tmp_path):
    """(a) --executor slurm --wait through the real cluster writes the same table as the local
    executor (timings aside); launching again submits nothing."""
    spec = "table_block_type"
    via_slurm = run_cli(spec, "--profile", "smoke", "--executor", "slurm", "--cluster", "local", "--wait",
                        "--results", str(tmp_path / "slurm"))
    assert via_slurm.returncode == 0, via_slurm.stderr
    assert "submitted 6 runs as SLURM job(s)" in via_slurm.stdout
    follow = f"python -m experiments.status {spec} --profile smoke --results {tmp_path / 'slurm'}"
    assert follow in via_slurm.stdout  # and it shows these runs, done
    status = subprocess.run([sys.executable, *follow.split()[1:]], cwd=REPO, capture_output=True, text=True)
    assert status.stdout.startswith(f"{spec}: 6 runs: 6 done"), status.stdout + status.stderr
    # two runs at a time on one core each, as on the dev cluster's two cores
    local = run_cli(spec, "--profile", "smoke", "--max-parallel", "2", "--results", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    via_local = table_without_timing(tmp_path / "local", spec)
    assert len(via_local) == 6 and via_local["median"].notna().all()  # every network has its test error
    pd.testing.assert_frame_equal(table_without_timing(tmp_path / "slurm", spec), via_local)
    for run in store.all_runs(tmp_path / "slurm"):
        assert run.state == "done" and run.slurm.cluster == "local"

    again = run_cli(spec, "--profile", "smoke", "--executor", "slurm", "--results", str(tmp_path / "slurm"))
    assert again.returncode == 0, again.stderr
    assert "6 complete, 0 to run" in again.stdout and "submitted" not in again.stdout


def test_bad_cluster_profile_on_the_command_line_writes_nothing(tmp_path):
    for cluster_arg, message in (("nosuch", "unknown cluster profile 'nosuch'"), (str(tmp_path / "bad.toml"), "unknown key")):
        (tmp_path / "bad.toml").write_text('partiton = "debug"\n')
        out = run_cli("table_block_type", "--profile", "smoke", "--executor", "slurm", "--cluster", cluster_arg,
                      "--results", str(tmp_path / "results"))
        assert out.returncode == 2 and message in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "results").exists()


def test_no_slurm_client_on_the_command_line_is_one_line(tmp_path):
    out = run_cli("table_block_type", "--profile", "smoke", "--executor", "slurm", "--results",
                  str(tmp_path / "results"), env=dict(os.environ, PATH=str(tmp_path)))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "sbatch not found on PATH" in out.stderr and "slurm/start_cluster.sh" in out.stderr
    assert not (tmp_path / "results").exists()


def test_a_sequential_launch_runs_its_rounds_through_the_cluster(cluster, tmp_path):
    """--until-resolved on the smoke profile through the dev cluster: each round is a job array that
    the launcher waits for; the rounds stop when the orderings are decided (training is the stand-in
    of tests/experiments/fake_training.py, so the rounds needed are known)."""
    csv = tmp_path / "rounds_tiny.csv"
    csv.write_text(PAPER)
    spec = tmp_path / "rounds_tiny.toml"
    spec.write_text(SPEC.format(csv=csv))
    env = dict(os.environ, WRN_TEST_FAKE_TRAINING="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "hooks"), str(Path(__file__).parent), str(REPO)]))
    args = [str(spec), "--profile", "smoke", "--seeds", "3", "--until-resolved", "--max-seeds", "12", "--executor",
            "slurm", "--cluster", "local", "--results", str(tmp_path / "results")]
    out = run_cli(*args, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("submitted") == 2  # round 1: 9 runs; round 2: 6 runs for the unresolved ordering
    assert "every ordering is decided" in out.stdout
    runs = store.all_runs(tmp_path / "results")
    assert len(runs) == 15 and {r.state for r in runs} == {"done"}
    comps = pd.read_csv(tmp_path / "results" / "tables" / "rounds_tiny.smoke.vs_baseline.csv")
    # generated data (the smoke profile): differences of their own, no paper ordering to support
    assert list(comps["verdict"]) == ["higher", "higher"] and list(comps["look"]) == [1, 2]
    again = run_cli(*args, env=env)
    assert again.returncode == 0 and "submitted" not in again.stdout


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_the_code_snapshot_is_the_packages_with_the_umasks_permissions(umask, file_mode, folder_mode, tmp_path):
    previous = os.umask(umask)
    try:
        snapshot_code(tmp_path / "code")
    finally:
        os.umask(previous)
    paths = list((tmp_path / "code").rglob("*"))
    assert (tmp_path / "code" / "wrn" / "train.py").read_bytes() == (REPO / "wrn" / "train.py").read_bytes()
    assert (tmp_path / "code" / "experiments" / "specs" / "table_width.toml").exists()
    assert not [p for p in paths if "__pycache__" in p.parts or p.suffix == ".pyc"]
    wrong = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) != (folder_mode if p.is_dir() else file_mode)}
    assert not wrong, wrong
