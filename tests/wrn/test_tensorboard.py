"""TensorBoard curves: a run's event file holds its metrics.jsonl, each epoch once, through resumes,
torn writes and resumes from the previous checkpoint; training without the package, or with a
failing write, goes on. Read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.metadata import parse_session_start_info_plugin_data

import wrn.tensorboard
from wrn.config import RunConfig, resolve
from wrn.data.fake import write_fake_dataset
from wrn.tensorboard import EVENTS_FOLDER, SCALAR_TAGS, event_file, sync_curves, write_curves
from wrn.train import TrainingInterrupted, train

N_TRAIN, N_TEST, BATCH = 32, 16, 16  # two steps per epoch


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_dataset("cifar10", root, n_train=N_TRAIN, n_test=N_TEST, seed=0)
    return root


def tiny(**overrides) -> RunConfig:
    fields = dict(dataset="cifar10", data_source=f"synthetic:{N_TRAIN}:{N_TEST}", depth=10, k=1,
                  preprocessing="meanstd", epochs=2, batch_size=BATCH, eval_batch_size=N_TEST,
                  lr_milestones=(3,), seed=3)
    fields.update(overrides)
    return resolve(RunConfig(**fields))


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def curves(run_dir, cfg) -> EventAccumulator:
    """Everything the file holds: no purging, so a step written twice would show twice."""
    accumulator = EventAccumulator(str(event_file(run_dir, cfg).parent), purge_orphaned_data=False)
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def expected(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The scalars of metrics rows, as TensorBoard stores them (float32)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "epoch":
                out.setdefault(SCALAR_TAGS.get(key, key), []).append((row["epoch"], float(np.float32(value))))
    return out


def fake_rows(epochs: int, time_s: float = 60.0) -> list[dict]:
    return [{"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_error": 50.0 / e, "test_loss": 1.5 / e,
             "test_error": 40.0 / e, "test_top5_error": 10.0 / e, "train_time_s": time_s,
             "images_per_s": 800.0, "grad_norm": 3.0 * e} for e in range(1, epochs + 1)]


def test_training_writes_every_epoch_of_metrics_jsonl_with_the_run_named(tmp_path, data_dir):
    cfg = tiny()
    run = tmp_path / "0123456789ab"
    train(cfg, run, data_dir, device="cpu")
    accumulator = curves(run, cfg)
    assert scalars(accumulator) == expected(metrics(run))
    assert {"loss/train", "loss/test", "error/train", "error/test", "lr", "speed/images_per_s"} <= \
        set(accumulator.Tags()["scalars"])
    assert event_file(run, cfg).parent.relative_to(run).parts == (EVENTS_FOLDER, "WRN-10-1_cifar10_seed3")
    text = accumulator.Tensors("run")[0].tensor_proto.string_val[0].decode()
    assert "**WRN-10-1** on cifar10, seed 3, recipe official-current: run 0123456789ab" in text
    start = parse_session_start_info_plugin_data(
        accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    assert start.group_name == "0123456789ab"
    assert start.hparams["label"].string_value == "WRN-10-1" and start.hparams["seed"].number_value == 3
    assert start.hparams["recipe"].string_value == "official-current"


def test_a_resumed_run_writes_each_epoch_once(tmp_path, data_dir):
    cfg = tiny()
    calls = {"n": 0}

    def stop() -> bool:  # mid-way through epoch 2: epoch 1 is in the file of the first process
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path, data_dir, device="cpu", should_stop=stop)
    assert [step for step, _ in scalars(curves(tmp_path, cfg))["error/test"]] == [1]
    train(cfg, tmp_path, data_dir, device="cpu")
    curve = scalars(curves(tmp_path, cfg))
    assert all([step for step, _ in points] == [1, 2] for points in curve.values()), curve
    assert curve == expected(metrics(tmp_path))


def test_writing_again_adds_nothing(tmp_path):
    cfg, rows = tiny(), fake_rows(3)
    assert sync_curves(tmp_path, cfg, rows) == 3
    before = event_file(tmp_path, cfg).read_bytes()
    assert sync_curves(tmp_path, cfg, rows) == 0
    assert event_file(tmp_path, cfg).read_bytes() == before
    assert scalars(curves(tmp_path, cfg)) == expected(rows)  # a key of no known tag keeps its own name
    assert "grad_norm" in scalars(curves(tmp_path, cfg))


def test_epochs_the_metrics_no_longer_hold_are_cut_and_written_again(tmp_path):
    """A resume from the previous checkpoint (the last one was damaged) trains epoch 3 again, and
    metrics.jsonl is rewritten without it: the file follows, never holding epoch 3 twice."""
    cfg = tiny()
    sync_curves(tmp_path, cfg, fake_rows(3, time_s=60.0))
    assert sync_curves(tmp_path, cfg, fake_rows(2)) == 0
    assert scalars(curves(tmp_path, cfg)) == expected(fake_rows(2))
    retrained = [*fake_rows(2), fake_rows(3, time_s=75.0)[2]]
    assert sync_curves(tmp_path, cfg, retrained) == 1
    assert scalars(curves(tmp_path, cfg)) == expected(retrained)


@pytest.mark.parametrize("damage", ["cut", "zeros"])
def test_a_torn_last_epoch_is_written_again_whole(tmp_path, damage):
    """A kill or a full disk in the middle of an append, or a power cut that leaves zeros."""
    cfg, rows = tiny(), fake_rows(3)
    sync_curves(tmp_path, cfg, rows)
    path = event_file(tmp_path, cfg)
    whole = path.read_bytes()
    path.write_bytes(whole[:-7] if damage == "cut" else whole + bytes(40))
    assert sync_curves(tmp_path, cfg, rows) >= 1  # the last whole epoch too: it may be the torn one's
    assert scalars(curves(tmp_path, cfg)) == expected(rows)
    assert len(path.read_bytes()) == len(whole)  # the same records again, nothing left of the damage


def hide_tensorboard(monkeypatch) -> None:
    """As if the package were not installed: every import of it raises ImportError."""
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setattr(wrn.tensorboard, "_reported", set())


def test_training_without_tensorboard_works_and_says_so_once(tmp_path, data_dir, monkeypatch, capsys):
    hide_tensorboard(monkeypatch)
    result = train(tiny(), tmp_path, data_dir, device="cpu")
    assert result.status == "done" and [r["epoch"] for r in metrics(tmp_path)] == [1, 2]
    assert not (tmp_path / EVENTS_FOLDER).exists()
    lines = [line for line in capsys.readouterr().err.splitlines() if "tensorboard" in line.lower()]
    assert len(lines) == 1 and 'pip install -e ".[tensorboard]"' in lines[0], lines


def test_a_failing_write_is_reported_once_and_never_raises(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wrn.tensorboard, "_reported", set())
    (tmp_path / EVENTS_FOLDER).write_text("a file where the folder goes")
    write_curves(tmp_path, tiny(), fake_rows(1))
    write_curves(tmp_path, tiny(), fake_rows(2))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not written" in err[0] and "metrics.jsonl has every epoch" in err[0], err
