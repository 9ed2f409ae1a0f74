"""python -m analysis.tensorboard: the curves of runs trained without TensorBoard, written from their
metrics.jsonl for a whole results folder (its profiles' folders included), once."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fabricate import make_config, write_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import wrn.tensorboard
from analysis.tensorboard import main
from experiments import store
from experiments.locking import RunLock
from wrn.tensorboard import SCALAR_TAGS, event_file


def curve(run_dir) -> dict[str, list[tuple[int, float]]]:
    cfg = store.read_run(run_dir).config
    accumulator = EventAccumulator(str(event_file(run_dir, cfg).parent), purge_orphaned_data=False)
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def expected(run_dir) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for row in store.read_metrics(run_dir / store.METRICS):
        for key, value in row.items():
            if key != "epoch":
                out.setdefault(SCALAR_TAGS.get(key, key), []).append((row["epoch"], float(np.float32(value))))
    return out


@pytest.fixture
def results(tmp_path):
    """Runs of the paper profile and of the smoke profile (results/smoke/), and one with no epoch yet."""
    root = tmp_path / "results"
    runs = [write_run(root, "table_width", make_config(depth=16, k=k), epochs=4) for k in (4, 8)]
    runs.append(write_run(root / "smoke", "table_width", make_config(depth=10, k=1), epochs=3, profile="smoke"))
    write_run(root, "table_width", make_config(depth=16, k=2), state="todo")
    return root, runs


def test_every_run_of_every_profile_gets_its_metrics_once(results, capsys):
    root, runs = results
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{root}: 4 runs: 1 without a config or a finished epoch, 3 written (11 epochs)" in out, out
    for run in runs:
        assert curve(run) == expected(run) and curve(run)["error/test"][0][0] == 1
    before = {run: event_file(run, store.read_run(run).config).read_bytes() for run in runs}

    assert main([str(root), str(root / "smoke")]) == 0  # again, and a profile's folder by itself
    out = capsys.readouterr().out
    assert "3 up to date" in out and "1 up to date" in out and "written" not in out, out
    assert all(event_file(run, store.read_run(run).config).read_bytes() == data
               for run, data in before.items())


def test_a_run_folder_alone_and_a_running_run_left_to_its_trainer(results, capsys):
    root, (first, _, _) = results
    second = write_run(root, "table_width", make_config(depth=16, k=10), state="interrupted")
    with RunLock(second / store.LOCK):
        assert main([str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"{first}: 1 runs: 1 written (4 epochs)" in out and f"{second}: 1 runs: 1 running" in out, out
    assert curve(first) == expected(first)
    assert not (second / wrn.tensorboard.EVENTS_FOLDER).exists()


@pytest.mark.parametrize("argument, message", [
    ("missing", "missing: no such folder; expected a results folder"),
    ("empty", "empty: holds no run folders"),
])
def test_a_folder_without_runs_is_one_line_and_exit_2(tmp_path, capsys, argument, message):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / argument)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_without_the_package_it_says_how_to_install_it(results, monkeypatch, capsys):
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    root, runs = results
    assert main([str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[tensorboard]"' in err[0], err
    assert not any((run / wrn.tensorboard.EVENTS_FOLDER).exists() for run in runs)
