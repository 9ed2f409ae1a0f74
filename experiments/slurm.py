"""Run a spec's runs on a SLURM cluster: one job array through submitit, tracked through the run store.

Submission (`submit_runs`) snapshots the code, then submits one job array per chunk of at most the
cluster's MaxArraySize runs (submitit does not split arrays itself, facebookincubator/submitit issue
1624; each chunk waits for the one before it, so the parallelism cap holds across chunks) and writes slurm.json into every run folder.

Each array task is a `SlurmRunJob`, a submitit Checkpointable: on USR2 (preemption, or the time limit
drawing near) its `checkpoint()` stops training at the next step boundary, which writes the run's
checkpoint, and submitit requeues the job. The requeued job, like any start of a run (an
`scontrol requeue` or a node failure reruns the original submission), resumes from the run store's last
good checkpoint, so nothing depends on how the job was restarted.

Code snapshot: the packages the jobs import (wrn/, experiments/, analysis/) are copied to
``<results>/slurm/<spec>/<submission>/code/`` and the jobs run from there (it is their working directory
and first on PYTHONPATH), so editing the checkout while jobs wait changes nothing. submitit's own files
(pickles, logs) go to ``<results>/slurm/<spec>/<submission>/jobs/<job id>/``.

Job states are read from the run store, never from submitit's result pickles: a failed array task
cannot hide the others, and `python -m experiments.status` in another shell sees what `wait_for` sees.
A job that ended without a result or a recorded error (cancelled, killed for memory, node failure,
requeued too often) is recorded as failed by `reconcile`, with the tail of its log.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import submitit

from experiments import store
from experiments.clusters import ClusterProfile
from experiments.console import Log, log_line
from experiments.provenance import git_state
from wrn.errors import UserError
from wrn.files import atomic_write_json
from wrn.records import timestamp

SNAPSHOT_PACKAGES = ("wrn", "experiments", "analysis")
DEV_CLUSTER_HINT = ("for a local dev cluster run slurm/start_cluster.sh and `source` the env.sh it "
                    "prints (it sets SLURM_CONF)")
# A job in one of these states will not run again: a run it owned without a result has failed.
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
         "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
WAITING_STATES = ("queued", "running")
QUERY_TIMEOUT_S = 60


# --------------------------------------------------------------------------------------------------
# The job


class SlurmRunJob(submitit.helpers.Checkpointable):
    """One array task: train (or resume) the run in `run_dir` through `experiments.worker.execute_run`.

    Training runs in a worker thread. submitit calls `checkpoint()` from its USR2 handler, at an
    arbitrary point of the main thread; the main thread only waits for the worker in short joins, so
    the handler runs promptly, asks the worker to stop at its next step boundary (where it writes the
    checkpoint), waits for it, and hands submitit a fresh job to requeue."""

    def __init__(self, data_dir: str | None, threads: int):
        self.data_dir = data_dir
        self.threads = threads
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict:
        return {"data_dir": self.data_dir, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["data_dir"], state["threads"])

    def __call__(self, run_dir: str) -> str:
        import torch  # deferred: the job needs torch and the engine when it runs, not when it is submitted

        from experiments.worker import execute_run  # deferred: as torch

        torch.set_num_threads(self.threads)  # SLURM does not confine CPUs here (no task/cgroup)
        code = Path(__file__).resolve().parent.parent
        print(f"training {run_dir} with the code in {code}", file=sys.stderr, flush=True)
        self._stop = threading.Event()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["state"] = execute_run(Path(run_dir), None if self.data_dir is None else Path(self.data_dir),
                                               stop=self._stop, progress=False)
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread below
                outcome["error"] = e

        self._thread = threading.Thread(target=work, name="train")
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(timeout=0.2)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["state"]

    def checkpoint(self, run_dir: str) -> submitit.helpers.DelayedSubmission:
        if self._thread is not None and self._thread.is_alive():
            print(f"checkpointing {Path(run_dir).name} at the next step boundary", file=sys.stderr, flush=True)
            self._stop.set()
            self._thread.join()
        return submitit.helpers.DelayedSubmission(SlurmRunJob(self.data_dir, self.threads), run_dir)


# --------------------------------------------------------------------------------------------------
# Availability and cluster facts


def check_available() -> None:
    """Raise `UserError` (one line) unless sbatch/srun/squeue exist and the controller answers."""
    for tool in ("sbatch", "srun", "squeue", "scontrol"):
        if shutil.which(tool) is None:
            raise UserError(f"--executor slurm: {tool} not found on PATH (no SLURM client here); {DEV_CLUSTER_HINT}")
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():  # scontrol would retry for a minute
        raise UserError(f"--executor slurm: SLURM_CONF={conf}: no such file; {DEV_CLUSTER_HINT}")
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"--executor slurm: the SLURM controller did not answer `scontrol ping` within "
                        f"{QUERY_TIMEOUT_S} s; {DEV_CLUSTER_HINT}") from None
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0 or " is UP" not in text:
        lines = [ln for ln in text.splitlines() if ln.strip("* ")]
        why = next((ln for ln in lines if "Slurmctld" in ln or "fatal" in ln), lines[-1] if lines else
                   f"exit code {out.returncode}")
        raise UserError(f"--executor slurm: the SLURM controller is not reachable ({why.strip()}); "
                        f"{DEV_CLUSTER_HINT}")


def max_array_size(cluster: ClusterProfile) -> int:
    """How many tasks one job array may have: the profile's value, else the cluster's MaxArraySize
    (array indices run 0..MaxArraySize-1)."""
    if cluster.max_array_size is not None:
        return cluster.max_array_size
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.M)
    return int(match.group(1)) if match else 1001  # SLURM's default


def chunks(items: list, size: int) -> list[list]:
    return [items[i: i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------------
# Submission


def snapshot_code(dest: Path) -> Path:
    """Copy the suite's packages to `dest` (the jobs' working directory and first PYTHONPATH entry).
    Contents only, not the checkout's permissions: the copies get the umask's, like every file the
    suite writes."""
    root = Path(__file__).resolve().parent.parent
    for package in SNAPSHOT_PACKAGES:
        for source in sorted((root / package).rglob("*")):
            relative = source.relative_to(root)
            skipped = any(part == "__pycache__" or part.startswith(".") for part in relative.parts)
            if skipped or source.suffix == ".pyc" or not source.is_file():
                continue
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / relative)
    return dest


def _job_setup(cluster: ClusterProfile, code: Path) -> list[str]:
    threads = str(cluster.cpus_per_run)
    lines = list(cluster.setup)
    lines.append(f"export PYTHONPATH={shlex.quote(str(code))}${{PYTHONPATH:+:$PYTHONPATH}}")
    lines.append(f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}")
    git = git_state()
    if git["git_commit"] is not None:  # the snapshot is no checkout: provenance reads these instead
        lines.append(f"export WRN_GIT_COMMIT={git['git_commit']} WRN_GIT_DIRTY={int(bool(git['git_dirty']))}")
    return lines


def make_executor(cluster: ClusterProfile, folder: Path, code: Path, job_name: str,
                  parallelism: int, dependency: str | None) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=cluster.max_num_timeout)
    params = dict(
        job_name=job_name,
        time=cluster.time_min,
        cpus_per_task=cluster.cpus_per_run,
        mem=f"{round(cluster.mem_gb * 1024)}MB",
        signal_delay_s=cluster.signal_delay_s,
        array_parallelism=parallelism,
        setup=_job_setup(cluster, code),
        additional_parameters={"chdir": str(code), **cluster.sbatch},
    )
    if cluster.gpus_per_run:
        params["gpus_per_node"] = cluster.gpus_per_run
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(cluster, key) is not None:
            params[key] = getattr(cluster, key)
    if dependency is not None:
        params["additional_parameters"]["dependency"] = dependency
    executor.update_parameters(**params)
    return executor


def _sbatch_error(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if "error" in ln.lower() and ln.strip()]
    return "; ".join(dict.fromkeys(lines)) or str(err).strip().splitlines()[-1]


def submit_runs(run_dirs: list[Path], spec: str, cluster: ClusterProfile, data_dir: Path | None,
                max_parallel: int | None) -> list[str]:
    """Submit the runs in `run_dirs` (folders of one results folder, each with its config.json) of
    spec `spec` as job arrays;
    return the array job ids, one per chunk. Every run folder gets slurm.json {"job_id" (array task id,
    e.g. "12_3"), "cluster", "submitted_at", "active": true, "log_dir", "snapshot"}.

    Runs that a live SLURM job already owns (queued or running) are left alone. Impossible resources
    (more CPUs than a node has, an unknown partition, GPUs on GPU-less nodes) are refused by sbatch
    at once: raised as `UserError` with sbatch's message; nothing is left behind for a refused chunk."""
    run_dirs = [Path(d).absolute() for d in run_dirs]
    if not run_dirs:
        return []
    results = _results_of(run_dirs[0])
    if any(_results_of(d) != results for d in run_dirs):
        raise ValueError("submit_runs: every run folder must belong to the same results folder")
    live = {r.path for r in reconcile(run_dirs) if r.state in WAITING_STATES}
    run_dirs = [d for d in run_dirs if d not in live]
    if not run_dirs:
        return []
    submission = results / "slurm" / spec / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    code = snapshot_code(submission / "code")
    jobs_dir = submission / "jobs"
    parallelism = min(max_parallel or cluster.array_parallelism, len(run_dirs))
    data = None if data_dir is None else str(Path(data_dir).absolute())
    job_ids: list[str] = []
    previous: str | None = None
    for chunk in chunks(run_dirs, max_array_size(cluster)):
        executor = make_executor(cluster, jobs_dir, code, f"wrn-{spec}", min(parallelism, len(chunk)),
                                 None if previous is None else f"afterany:{previous}")
        try:
            jobs = executor.map_array(SlurmRunJob(data, cluster.cpus_per_run), [str(d) for d in chunk])
        except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as err:
            if not job_ids:
                shutil.rmtree(submission, ignore_errors=True)
                for parent in (submission.parent, submission.parent.parent):
                    if parent.is_dir() and not any(parent.iterdir()):
                        parent.rmdir()
            done = f" (already submitted: job arrays {', '.join(job_ids)})" if job_ids else ""
            raise UserError(f"cluster {cluster.name!r}: sbatch refused the job array: "
                            f"{_sbatch_error(err)}{done}") from None
        now = timestamp()
        for run, job in zip(chunk, jobs):
            atomic_write_json(run / store.SLURM, {
                "job_id": job.job_id, "cluster": cluster.name, "submitted_at": now, "active": True,
                "log_dir": str(jobs_dir / job.job_id), "snapshot": str(code)})
            (run / store.FAILURE).unlink(missing_ok=True)  # a resubmitted failed run is queued again
        previous = jobs[0].job_id.split("_")[0]
        job_ids.append(previous)
    return job_ids


def _results_of(run_dir: Path) -> Path:
    """The results folder of a run folder, in either layout of the run store."""
    for parent in run_dir.parents:
        if parent.name == "runs":
            return parent.parent
    raise ValueError(f"{run_dir}: not a run folder of a results folder, <results>/runs/<run_id>")


# --------------------------------------------------------------------------------------------------
# Tracking


def parse_job_states(text: str) -> dict[str, str]:
    """`JOBID|STATE` lines (squeue -o '%i|%T', sacct -P -o JobID,State) -> {job id: state}; a pending
    array range such as ``12_[3-5,7%2]`` becomes 12_3, 12_4, 12_5, 12_7."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or parts[0] in ("", "JobID") or "." in parts[0]:
            continue
        job, state = parts[0], parts[1].split()[0] if parts[1].split() else ""
        match = re.fullmatch(r"(\d+)_\[([^\]]*)\]", job)
        if match:
            base, ranges = match.group(1), match.group(2).split("%")[0]
            for part in ranges.split(","):
                lo, _, hi = part.partition("-")
                for i in range(int(lo), int(hi or lo) + 1):
                    states.setdefault(f"{base}_{i}", state)
        else:
            states.setdefault(job, state)
    return states


def job_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """SLURM's state of each job id ("12" or "12_3"), from squeue then sacct; a job neither knows is
    missing from the answer. None when SLURM cannot be asked (then nothing may be concluded)."""
    job_ids = sorted(set(job_ids))
    if not job_ids:
        return {}
    conf = os.environ.get("SLURM_CONF")
    if shutil.which("squeue") is None or (conf and not Path(conf).is_file()):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%T"], capture_output=True,
                             text=True, timeout=QUERY_TIMEOUT_S)
        if out.returncode != 0:
            return None
        states = parse_job_states(out.stdout)
        missing = [j for j in job_ids if j not in states]
        if missing:
            if shutil.which("sacct") is None:
                return None
            out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(missing)],
                                 capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
            if out.returncode != 0:
                return None
            states.update({k: v for k, v in parse_job_states(out.stdout).items() if k not in states})
    except subprocess.TimeoutExpired:
        return None
    return {j: states[j] for j in job_ids if j in states}


def _log_tail(slurm: dict, lines: int = 15) -> str:
    job_id = slurm.get("job_id", "")
    log_dir = Path(slurm.get("log_dir", ""))
    for name in (f"{job_id}_0_log.err", f"{job_id}_0_log.out"):
        path = log_dir / name
        if path.is_file():
            text = path.read_text(errors="replace").rstrip().splitlines()
            return "\n".join(text[-lines:])
    return f"(no log found in {log_dir})"


def reconcile(run_dirs: Iterable[Path]) -> list[store.RunRecord]:
    """Read each run and settle the ones whose SLURM job ended without a result or an error: they are
    recorded as failed (failure.json with the job's final state and the tail of its log), so status
    shows them and a relaunch resubmits them. SLURM is asked before the store is read again, so a job
    that just finished cleanly is seen with its result."""
    records = [store.read_run(Path(d)) for d in run_dirs]
    pending = {r.slurm["job_id"]: r for r in records
               if r.state == "queued" and r.slurm and r.slurm.get("job_id")}
    if not pending:
        return records
    states = job_states(pending)
    if states is None:
        return records
    now = timestamp()
    for job_id, rec in pending.items():
        state = states.get(job_id)
        if state is not None and state not in ENDED:
            continue
        rec_now = store.read_run(rec.path)
        if rec_now.state != "queued":
            continue
        what = f"ended {state}" if state else "is no longer known to SLURM (squeue, sacct)"
        atomic_write_json(rec.path / store.FAILURE, {
            "error_type": "SlurmJobEnded",
            "message": f"SLURM job {job_id} {what} without a result; log: {rec.slurm.get('log_dir')}",
            "traceback_tail": _log_tail(rec.slurm),
            "at": now,
        })
        atomic_write_json(rec.path / store.SLURM, {**rec.slurm, "active": False})
    return [store.read_run(r.path) for r in records]


def wait_for(run_dirs: list[Path], poll_s: float = 10.0, log: Log = log_line,
             timeout_s: float | None = None) -> dict[str, int]:
    """Block until no run is queued or running; print a progress line whenever the counts change;
    return the final count of each state. `timeout_s` (None: no limit) raises TimeoutError."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        counts = Counter(r.state for r in reconcile(run_dirs))
        line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if line != last:
            finished = sum(n for s, n in counts.items() if s not in WAITING_STATES)
            log(f"slurm: {finished}/{len(run_dirs)} finished ({line})")
            last = line
        if not any(counts[s] for s in WAITING_STATES):
            return dict(counts)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"slurm: runs still waiting after {timeout_s} s ({line})")
        time.sleep(poll_s)
