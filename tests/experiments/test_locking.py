"""Run locks: one live owner, stale locks broken (dead pid, old heartbeat, requeued SLURM task)."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from experiments.locking import STALE_AFTER_S, RunLock, RunLocked, lock_is_live


def write_lock(path, **owner):
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), **owner}))


def test_a_held_lock_refuses_a_second_owner_and_is_released(tmp_path):
    path = tmp_path / "lock.json"
    with RunLock(path):
        assert lock_is_live(path)
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            RunLock(path).acquire()
        assert lock_is_live(path) and json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()
    with RunLock(path):  # free again
        pass


def test_a_dead_owner_on_this_host_is_stale(tmp_path):
    path = tmp_path / "lock.json"
    write_lock(path, pid=2**22 + 12345)  # beyond pid_max: certainly not running
    assert not lock_is_live(path)
    with RunLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_an_old_heartbeat_is_stale_even_on_another_host(tmp_path):
    path = tmp_path / "lock.json"
    write_lock(path, host="some-other-node", pid=1)
    assert lock_is_live(path)
    old = time.time() - STALE_AFTER_S - 5
    os.utime(path, (old, old))
    assert not lock_is_live(path)


def test_a_lock_of_this_slurm_tasks_previous_incarnation_is_stale(tmp_path, monkeypatch):
    path = tmp_path / "lock.json"
    write_lock(path, host="node-that-died", pid=4242, slurm_task="77_3")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert not lock_is_live(path)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")  # another task of the array: a live owner
    assert lock_is_live(path)
