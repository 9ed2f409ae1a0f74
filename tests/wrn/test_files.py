"""Atomic writes (wrn.files): a reader sees the old file or the whole new one, never a torn one."""

from __future__ import annotations

import json
import os
import stat

import pytest

from wrn.files import atomic_write, atomic_write_json, atomic_write_text, read_json, remove_temp_files


def test_a_write_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'  # sorted, one format
    assert read_json(path) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_write_that_fails_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "table.md"
    atomic_write_text(path, "old\n")

    def half_then_fail(handle):
        handle.write("new, but only ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def test_keep_previous_keeps_the_last_complete_version(tmp_path):
    path, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.prev.pt"
    atomic_write(path, lambda h: h.write(b"one"), binary=True, keep_previous=previous)
    assert not previous.exists()
    atomic_write(path, lambda h: h.write(b"two"), binary=True, keep_previous=previous)
    assert (path.read_bytes(), previous.read_bytes()) == (b"two", b"one")


def test_text_is_utf8_whatever_the_locale(tmp_path):
    path = tmp_path / "t.md"
    atomic_write_text(path, "Δ ✓ —")
    assert path.read_bytes().decode("utf-8") == "Δ ✓ —"


def test_temp_files_of_interrupted_writes_are_removed(tmp_path):
    (tmp_path / ".checkpoint.pt.x1.tmp").write_bytes(b"torn")
    (tmp_path / ".result.json.x2.tmp").write_text("{")
    (tmp_path / "result.json").write_text(json.dumps({}))
    remove_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_written_file_has_the_permissions_the_umask_gives_new_files(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        for write in (lambda p: atomic_write_text(p, "x"), lambda p: atomic_write(p, lambda h: h.write(b"x"),
                                                                                   binary=True)):
            path = tmp_path / f"f{umask:o}"
            write(path)
            assert stat.S_IMODE(path.stat().st_mode) == mode
            path.unlink()
    finally:
        os.umask(old)
