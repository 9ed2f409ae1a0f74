"""Concurrency: two launchers of the same spec at once, two launchers of two specs that share a
run, and two jobs given the same run, train each run exactly once (a launcher waits for a run held
elsewhere and resumes it if its owner stops); a dead job's lock (dead pid on this host, or a heartbeat too old) is
broken, a live one is respected, and breaking a stale lock cannot hand the run to two owners."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pandas as pd
import pytest

from harness import (REPO_ROOT, STEPS_PER_EPOCH, USER_SPEC, assert_identical, make_run, python_env,
                      snapshot, wait_for, worker_log, write_spec)
from experiments import locking, store
from experiments.executors import plan_slots, run_local
from experiments.locking import RunLock, RunLocked
from experiments.run import main as launch
from experiments.worker import EXIT_LOCKED

pytestmark = pytest.mark.slow  # concurrent launchers of real workers

S = STEPS_PER_EPOCH


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(run, host: str, pid: int, age_s: float = 0.0, text: str | None = None) -> None:
    path = run / store.LOCK
    path.write_text(json.dumps({"host": host, "pid": pid, "started_at": time.time() - age_s})
                    if text is None else text)
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))


# --------------------------------------------------------------------------------------------------
# Real concurrent launchers and workers


def test_two_launchers_of_the_same_spec_train_each_run_once(tmp_path):
    spec = write_spec(tmp_path)
    results = tmp_path / "results"
    train_log = tmp_path / "training-starts.log"
    env = python_env(PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "tests" / "hooks"), str(REPO_ROOT)]),
                     WRN_TEST_TRAIN_LOG=str(train_log))
    cmd = [sys.executable, "-m", "experiments.run", str(spec), "--profile", "smoke", "--results", str(results),
           "--max-parallel", "2"]
    launchers = [subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = []
    for proc in launchers:
        out, _ = proc.communicate(timeout=300)
        outputs.append(out)
    for proc, out in zip(launchers, outputs):
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
    runs = store.all_runs(results)
    assert len(runs) == 2 and all(r.state == "done" for r in runs), [(r.state, r.reason) for r in runs]
    starts = Counter(line.split()[0] for line in train_log.read_text().splitlines())
    assert starts == {r.run_id: 1 for r in runs}, f"training starts per run: {dict(starts)}\n" + "\n".join(outputs)
    for r in runs:
        assert [row["epoch"] for row in store.read_metrics(r.path / store.METRICS)] == [1, 2]
        assert not (r.path / store.LOCK).exists(), "a finished run still holds its lock"
    for out in outputs:  # each launcher accounts for every run: trained here, waited for, or already complete
        complete = int(re.search(r"2 runs, (\d) complete", out).group(1))
        ended = set(re.findall(r"^\[[\d:]+\] done .*\[(\w+)\](?: \(trained by another launcher\))?$", out, re.M))
        assert len(ended) == 2 - complete and ended <= {r.run_id for r in runs}, out


def test_two_launchers_of_two_specs_that_share_a_network_train_it_once(tmp_path, capsys):
    """reliability_a plans k = 1, 2 and reliability_b k = 2, 3: launched at once, WRN-10-2 is trained
    by one of them, and both tables count it."""
    spec_a = write_spec(tmp_path, "reliability_a")
    spec_b = write_spec(tmp_path, "reliability_b", USER_SPEC.format(name="reliability_b")
                        .replace("k = 1\n", "k = 3\n"))
    results = tmp_path / "results"
    train_log = tmp_path / "training-starts.log"
    env = python_env(PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "tests" / "hooks"), str(REPO_ROOT)]),
                     WRN_TEST_TRAIN_LOG=str(train_log))
    launchers = [subprocess.Popen([sys.executable, "-m", "experiments.run", str(spec), "--profile", "smoke",
                                   "--results", str(results)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for spec in (spec_a, spec_b)]
    outputs = [proc.communicate(timeout=300)[0] for proc in launchers]
    assert [proc.returncode for proc in launchers] == [0, 0], outputs
    runs = {rec.config.k: rec for rec in store.all_runs(results)}
    assert sorted(runs) == [1, 2, 3] and all(r.state == "done" for r in runs.values())
    starts = Counter(line.split()[0] for line in train_log.read_text().splitlines())
    assert starts == {r.run_id: 1 for r in runs.values()}, f"training starts per run: {dict(starts)}"
    for name in ("reliability_a", "reliability_b"):
        table = pd.read_csv(results / "tables" / f"{name}.smoke.csv").set_index("k")
        assert table.loc[2, "n"] == 1 and table.loc[2, "median"] == runs[2].result.final.test_error
        assert (results / "specs" / f"{name}.toml").exists()  # kept with the results
    # the dry run of either says that the shared run is done, and which spec planned it first
    other = {"reliability_a": "reliability_b", "reliability_b": "reliability_a"}[runs[2].spec]
    assert launch([str(tmp_path / f"{other}.toml"), "--profile", "smoke", "--results", str(results),
                     "--dry-run"]) == 0
    assert f"2 of 2 runs are done, of which 1 first planned by {runs[2].spec}" in capsys.readouterr().out


def test_a_launcher_waits_for_a_run_held_elsewhere_and_resumes_it_when_released(data_dir, tmp_path):
    """The owner on another host stops without finishing: the launcher that was waiting trains it."""
    run = make_run(tmp_path / "results")
    write_lock(run, "gpu-node-7.cluster", 4242)
    lines: list[str] = []

    def release_once_waiting():
        wait_for(lambda: any(line.startswith("wait") for line in lines), 120, "the launcher to wait")
        time.sleep(1.0)  # still waiting, not finished, while the lock is live
        assert not any(line.startswith("done") for line in lines), lines
        (run / store.LOCK).unlink()

    releaser = threading.Thread(target=release_once_waiting)
    releaser.start()
    counts = run_local([run], data_dir, plan_slots(1), lines.append)
    releaser.join()
    assert counts["done"] == 1 and counts["skipped"] == 0, (counts, lines)
    assert [row["epoch"] for row in store.read_metrics(run / store.METRICS)] == [1, 2]


@pytest.mark.parametrize("n_workers", [2, 4])
def test_jobs_given_the_same_run_train_it_once(n_workers, workers, data_dir, reference, tmp_path):
    run = make_run(tmp_path / "results")
    counts = [tmp_path / f"worker{i}.steps" for i in range(n_workers)]
    procs = [workers.start(run, data_dir, count_file=c, slow=0.05, log=tmp_path / f"worker{i}.log")
             for i, c in enumerate(counts)]
    for proc in procs:
        proc.join(180)
    codes = sorted(p.exitcode for p in procs)
    assert codes == [0] + [EXIT_LOCKED] * (n_workers - 1), codes
    steps = sorted(len(c.read_text()) if c.exists() else 0 for c in counts)
    assert steps == [0] * (n_workers - 1) + [2 * S], f"steps trained per worker: {steps}"
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(n_workers)]
    skipped = [log for log in logs if "skipped" in log]
    assert len(skipped) == n_workers - 1
    assert all(socket.gethostname() in log and "pid" in log for log in skipped), skipped
    assert_identical(snapshot(run), reference, "concurrent")


# --------------------------------------------------------------------------------------------------
# Stale and live locks, through a real worker


def test_lock_of_a_dead_process_on_this_host_is_broken(workers, data_dir, reference, tmp_path):
    run = make_run(tmp_path / "results")
    write_lock(run, socket.gethostname(), dead_pid())
    assert workers.run(run, data_dir) == 0, worker_log(run)
    assert_identical(snapshot(run), reference, "after a dead lock")
    assert not (run / store.LOCK).exists()


def test_lock_with_an_old_heartbeat_from_another_host_is_broken(workers, data_dir, reference, tmp_path):
    run = make_run(tmp_path / "results")
    write_lock(run, "node-that-died.cluster", 12345, age_s=locking.STALE_AFTER_S + 60)
    assert workers.run(run, data_dir) == 0, worker_log(run)
    assert_identical(snapshot(run), reference, "after a stale heartbeat")


@pytest.mark.parametrize("owner", ["other-host", "this-host-live-pid"])
def test_live_lock_is_respected_and_named(owner, workers, data_dir, tmp_path):
    run = make_run(tmp_path / "results")
    host, pid = ("gpu-node-7.cluster", 4242) if owner == "other-host" else (socket.gethostname(), os.getpid())
    write_lock(run, host, pid, age_s=1.0)
    before = sorted(p.name for p in run.iterdir())
    assert workers.run(run, data_dir) == EXIT_LOCKED
    log = worker_log(run)
    assert "skipped" in log and host in log and str(pid) in log, log
    assert sorted(p.name for p in run.iterdir()) == before, "a skipped worker wrote into the run"
    assert json.loads((run / store.LOCK).read_text())["pid"] == pid, "the live owner's lock was replaced"


# --------------------------------------------------------------------------------------------------
# The lock itself


def test_heartbeat_keeps_a_long_run_s_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(locking, "HEARTBEAT_S", 0.05)
    path = tmp_path / store.LOCK
    with RunLock(path):
        old = time.time() - locking.STALE_AFTER_S - 10
        os.utime(path, (old, old))
        assert not locking.lock_is_live(path)
        time.sleep(0.5)
        assert locking.lock_is_live(path), "the heartbeat did not refresh the lock"
    assert not path.exists()


def test_a_lock_being_written_is_not_broken(tmp_path):
    """Between O_EXCL create and writing its owner, a lock file is empty: a contender that reads it
    then must not call it stale (it would break a live lock and both would train)."""
    path = tmp_path / store.LOCK
    path.write_text("")  # just created by another contender, owner not written yet
    with pytest.raises(RunLocked):
        RunLock(path).acquire()
    assert path.exists() and path.read_text() == "", "the contender broke a lock being written"


def test_an_old_unreadable_lock_is_broken(tmp_path):
    path = tmp_path / store.LOCK
    path.write_text('{"host": "x", "pi')
    old = time.time() - locking.STALE_AFTER_S - 10
    os.utime(path, (old, old))
    lock = RunLock(path)
    lock.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid(), "the stale lock was not replaced by ours"
    lock.release()
    assert not path.exists()


def test_breaking_a_stale_lock_cannot_give_the_run_two_owners(tmp_path, monkeypatch):
    """B finds the lock stale; before B renames it away, A breaks it too and takes the run. B must
    then find A's fresh lock and back off, not rename A's lock away and take the run as well."""
    path = tmp_path / store.LOCK
    write_lock(tmp_path, socket.gethostname(), dead_pid())
    real_is_live = locking.lock_is_live
    a = RunLock(path)
    a_lock = []  # the inode of A's lock file: A and B share a pid, so the contents cannot tell them apart

    def b_checks_then_a_wins(p):
        verdict = real_is_live(p)  # B's look: stale
        if not a_lock:
            monkeypatch.setattr(locking, "lock_is_live", real_is_live)
            a.acquire()  # A breaks the stale lock and takes the run in between
            a_lock.append(path.stat().st_ino)
        return verdict

    monkeypatch.setattr(locking, "lock_is_live", b_checks_then_a_wins)
    b = RunLock(path)
    try:
        with pytest.raises(RunLocked):
            b.acquire()
        assert len(a_lock) == 1, "the race did not happen"
        assert path.exists() and path.stat().st_ino == a_lock[0] and locking.lock_is_live(path), \
            "B removed or replaced A's live lock"
    finally:
        a.release()
        b.release()


def test_rewriting_the_generated_data_never_exposes_a_partial_file(tmp_path):
    """Two launchers of a synthetic-data profile both (re)write <results>/data/synthetic-*/ while the
    other's workers may already read it: each file must be kept as it is or replaced atomically
    (new inode), never truncated and rewritten in place under a reader."""
    from wrn.data.fake import write_fake_dataset

    folder = write_fake_dataset("cifar10", tmp_path, 32, 16, seed=0)
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    time.sleep(0.01)
    write_fake_dataset("cifar10", tmp_path, 32, 16, seed=0)
    in_place = [p.name for p in folder.iterdir() if p.name in first
                and p.stat().st_ino == first[p.name][0] and p.stat().st_mtime_ns != first[p.name][1]]
    assert in_place == [], f"rewritten in place (a concurrent reader can see them half-written): {in_place}"
