"""Run a spec's runs on a SLURM cluster: job arrays through submitit, tracked through the run store.

Submission (`submit_runs`) snapshots the code, lays the runs out on the cluster profile's nodes
(`experiments.clusters.place_runs`: a run of world_size W is W processes, one per GPU, on
ceil(W / tasks_per_node) nodes; up to `runs_per_task` runs of world_size 1 share one GPU), and submits
one job array per topology (submitit's parameters are per array) and per chunk of at most the cluster's
MaxArraySize tasks (submitit does not split arrays itself:
https://github.com/facebookincubator/submitit/issues/1624). Each array waits for the one before it, so
the parallelism cap holds across them. Every run folder gets slurm.json.

Each array task is a submitit Checkpointable of `experiments.slurm_jobs`: `SlurmRunJob` (one run, in
one process or as the W processes of a distributed run) or `SlurmPackJob` (several runs side by side,
one worker process each).
On USR2 (preemption, or the time limit drawing near) its `checkpoint()` stops training at the next step
boundary, which writes each run's checkpoint, and submitit requeues the job once. The requeued job, like
any start of a run (an `scontrol requeue` or a node failure reruns the original submission), resumes
from the run store's last good checkpoint, so nothing depends on how the job was restarted.

Code snapshot: the packages the jobs import (wrn/, experiments/, analysis/) are copied to
``<results>/slurm/<spec>/<submission>/code/`` and the jobs run from there (it is their working directory
and first on PYTHONPATH), so editing the checkout while jobs wait changes nothing. submitit's own files
(pickles, logs: ``<job>_<rank>_log.err`` per process) and the workers' logs of a packed task
(``<run_id>.log``) go to ``<results>/slurm/<spec>/<submission>/jobs/<job id>/``.

Job states are read from the run store, never from submitit's result pickles: a failed array task
cannot hide the others, and `python -m experiments.status` in another shell sees what `wait_for` sees.
A job that ended without a result or a recorded error (cancelled, killed for memory, node failure,
requeued too often) is recorded as failed by `reconcile`, with the tail of the log of each of its
processes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import submitit

from experiments import store
from experiments.clusters import ArrayTask, ClusterProfile, RunLoad, Topology, place_runs
from experiments.console import Log, log_line
from experiments.estimate import estimate
from experiments.plan import PlannedRun
from experiments.provenance import git_state
from experiments.rates import RateBook
from experiments.slurm_jobs import SlurmPackJob, SlurmRunJob, worker_log
from wrn.errors import UserError
from wrn.records import timestamp

SNAPSHOT_PACKAGES = ("wrn", "experiments", "analysis")
DEV_CLUSTER_HINT = ("for a local dev cluster run slurm/start_cluster.sh and `source` the env.sh it "
                    "prints (it sets SLURM_CONF)")
# A job in one of these states will not run again: a run it owned without a result has failed.
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
         "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
WAITING_STATES = ("queued", "running")
QUERY_TIMEOUT_S = 60
LOG_TAIL_LINES = 15


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
    threads = str(cluster.cpus_per_task)
    lines = list(cluster.setup)
    lines.append(f"export PYTHONPATH={shlex.quote(str(code))}${{PYTHONPATH:+:$PYTHONPATH}}")
    lines.append(f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}")
    lines.append(f"export WRN_COLLECTIVE_TIMEOUT_S={cluster.collective_timeout_s}")
    git = git_state()
    if git["git_commit"] is not None:  # the snapshot is no checkout: provenance reads these instead
        lines.append(f"export WRN_GIT_COMMIT={git['git_commit']} WRN_GIT_DIRTY={int(bool(git['git_dirty']))}")
    return lines


def make_executor(cluster: ClusterProfile, folder: Path, code: Path, job_name: str, parallelism: int,
                  dependency: str | None, topology: Topology) -> submitit.SlurmExecutor:
    """The executor of one job array, every task of it shaped as `topology`: its nodes, its processes
    (SLURM tasks) per node with a GPU and `cpus_per_task` CPUs each, and --mem for every process the
    node runs (a packed task's workers included: `mem_gb` is per process). The processes of a
    distributed run end together: one that exits with an error (its collective timed out, say) makes
    srun end the others (--kill-on-bad-exit), since a hung one would otherwise hold the job until its
    time limit."""
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=cluster.max_num_timeout)
    processes = topology.tasks_per_node * topology.runs
    params = dict(
        job_name=job_name,
        time=cluster.time_min,
        nodes=topology.nodes,
        ntasks_per_node=topology.tasks_per_node,
        cpus_per_task=cluster.cpus_per_task,
        mem=f"{round(cluster.mem_gb * processes * 1024)}MB",
        signal_delay_s=cluster.signal_delay_s,
        array_parallelism=parallelism,
        setup=_job_setup(cluster, code),
        additional_parameters={"chdir": str(code), **cluster.sbatch},
    )
    if cluster.gpus_per_task:
        params["gpus_per_node"] = cluster.gpus_per_task * topology.tasks_per_node
    if topology.tasks > 1:  # a process that fails (a collective timed out) ends its run's others: none hangs on
        params["srun_args"] = ["--kill-on-bad-exit=1"]
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


def run_load(run_dir: Path, book: RateBook) -> RunLoad:
    """What placing a stored run needs (`experiments.clusters.place_runs`), from its config.json, with
    its estimated time at the rates of `book`."""
    meta = store.read_meta(run_dir)
    planned = PlannedRun(meta.run_id, meta.spec, meta.label, meta.config, meta.timing)
    return estimate([planned], book)[0].load()


def arrays(tasks: list[ArrayTask], size: int) -> list[list[ArrayTask]]:
    """The job arrays that submit `tasks`: one per run of consecutive tasks of one topology, in chunks
    of at most `size` (MaxArraySize)."""
    groups: list[list[ArrayTask]] = []
    for task in tasks:
        if groups and groups[-1][0].topology == task.topology:
            groups[-1].append(task)
        else:
            groups.append([task])
    return [chunk for group in groups for chunk in chunks(group, size)]


def submit_runs(run_dirs: list[Path], spec: str, cluster: ClusterProfile, data_dir: Path | None,
                max_parallel: int | None) -> list[str]:
    """Submit the runs in `run_dirs` (folders of one results folder, each with its config.json) of
    spec `spec` as job arrays, laid out by `place_runs`; return the array job ids, one per array.
    Every run folder gets slurm.json {"job_id" (its array task id, e.g. "12_3"), "cluster",
    "submitted_at", "active": true, "log_dir", "snapshot", "tasks" and "nodes" (its job's processes and
    nodes: world_size W on ceil(W / tasks_per_node) nodes, else 1 and 1); a packed run also
    "packed" (the run ids of its task) and "worker_log" (its worker's log)}.

    Runs that a live SLURM job already owns (queued or running) are left alone. A run whose world_size
    does not fit the profile's nodes is refused (`ClusterError`) before anything is submitted;
    impossible resources (more CPUs than a node has, an unknown partition, GPUs on GPU-less nodes) are
    refused by sbatch at once: raised as `UserError` with sbatch's message; nothing is left behind for
    a refused array."""
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
    # what packing compares is one run's time with another's: the assumed rates of the cluster's device
    book = RateBook("cuda" if cluster.gpus_per_task else "cpu", cluster.gpu, [])
    tasks = place_runs([run_load(d, book) for d in run_dirs], cluster)
    by_name = {d.name: d for d in run_dirs}
    submission = results / "slurm" / spec / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    code = snapshot_code(submission / "code")
    jobs_dir = submission / "jobs"
    parallelism = max_parallel or cluster.array_parallelism
    data = None if data_dir is None else str(Path(data_dir).absolute())
    job_ids: list[str] = []
    previous: str | None = None
    for array in arrays(tasks, max_array_size(cluster)):
        topology = array[0].topology
        executor = make_executor(cluster, jobs_dir, code, f"wrn-{spec}", min(parallelism, len(array)),
                                 None if previous is None else f"afterany:{previous}", topology)
        folders = [[by_name[name] for name in task.runs] for task in array]
        if topology.runs > 1:
            job, args = (SlurmPackJob(data, max(1, cluster.cpus_per_task // topology.runs)),
                         [[str(d) for d in runs] for runs in folders])
        else:
            job, args = SlurmRunJob(data, cluster.cpus_per_task), [str(runs[0]) for runs in folders]
        try:
            jobs = executor.map_array(job, args)
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
        for runs, task_job in zip(folders, jobs):
            log_dir = jobs_dir / task_job.job_id
            for run in runs:
                packed = topology.runs > 1
                store.write_slurm(run, store.SlurmSubmission(
                    job_id=task_job.job_id, cluster=cluster.name, submitted_at=now, log_dir=str(log_dir),
                    snapshot=str(code), tasks=topology.tasks, nodes=topology.nodes,
                    packed=tuple(d.name for d in runs) if packed else (),
                    worker_log=str(worker_log(log_dir, run)) if packed else None))
                store.clear_failure(run)  # a resubmitted failed run is queued again
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


def run_logs(slurm: store.SlurmSubmission) -> list[tuple[str, Path]]:
    """The logs of the processes that train a run, named: its worker's when packed; each rank's of a
    distributed run (submitit writes ``<job>_<task>_log.err`` per SLURM task; SLURM's own messages, such
    as a task killed, go to task 0's); else its job's."""
    if slurm.worker_log is not None:
        return [("log", Path(slurm.worker_log))]
    log_dir = Path(slurm.log_dir)
    if slurm.tasks == 1:
        return [("log", log_dir / f"{slurm.job_id}_0_log.err")]
    return [(f"rank {rank}", log_dir / f"{slurm.job_id}_{rank}_log.err") for rank in range(slurm.tasks)]


def _log_tails(slurm: store.SlurmSubmission) -> tuple[store.LogTail, ...]:
    """The last lines of each of the run's process logs (`run_logs`): what failure.json keeps of them."""
    tails = []
    for name, path in run_logs(slurm):
        try:
            tail = "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-LOG_TAIL_LINES:])
        except OSError:
            tail = "(no log: the process never started)"
        tails.append(store.LogTail(name, str(path), tail))
    return tuple(tails)


def _unsettled(rec: store.RunRecord) -> bool:
    """A run whose SLURM job may have ended without settling it: queued without a result, or a
    distributed run whose failure rank 0 recorded without the other ranks' logs (why a collective
    timed out is in another rank's log)."""
    slurm = rec.slurm
    if slurm is None or not slurm.job_id or not slurm.active:
        return False
    return rec.state == "queued" or (rec.state == "failed" and slurm.tasks > 1)


def reconcile(run_dirs: Iterable[Path]) -> list[store.RunRecord]:
    """Read each run and settle the ones whose SLURM job ended (`_unsettled`): a run left without a
    result or an error is recorded as failed (failure.json with the job's final state and the tail of
    each of its processes' logs), so status shows it and a relaunch resubmits it; a distributed run's
    recorded failure gets every rank's log tail. SLURM is asked before the store is read again, so a
    job that just finished cleanly is seen with its result."""
    records = [store.read_run(Path(d)) for d in run_dirs]
    unsettled = [r for r in records if _unsettled(r)]
    if not unsettled:
        return records
    states = job_states(r.slurm.job_id for r in unsettled)
    if states is None:
        return records
    now = timestamp()
    for rec in unsettled:
        job_id = rec.slurm.job_id
        state = states.get(job_id)
        if state is not None and state not in ENDED:
            continue
        rec_now = store.read_run(rec.path)
        if rec_now.state == "queued":
            what = f"ended {state}" if state else "is no longer known to SLURM (squeue, sacct)"
            store.write_failure(rec.path, store.Failure(
                "SlurmJobEnded", f"SLURM job {job_id} {what} without a result; logs: {rec.slurm.log_dir}", "", now,
                _log_tails(rec.slurm)))
        elif rec_now.state == "failed" and rec_now.failure is not None:
            store.write_failure(rec.path, replace(rec_now.failure, logs=_log_tails(rec.slurm)))
        else:
            continue
        store.write_slurm(rec.path, replace(rec.slurm, active=False))
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
