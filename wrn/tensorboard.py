"""TensorBoard curves of a run, derived from its metrics.jsonl: `tensorboard --logdir results/` plots
every run of a results folder, live while they train.

metrics.jsonl is the record of a run (`wrn.train` rebuilds it from the checkpoint on every resume);
the event file is a view of it, written after each epoch's metrics line and never read by the suite.
Each run has one file, `<run folder>/tensorboard/<curve name>/events.out.tfevents.metrics`, whose
folder names the curves in TensorBoard's run list (``runs/<run_id>/tensorboard/WRN-28-10_cifar10_seed0``)
and which holds, at step 0, a text summary of the run and its config as hyperparameters (TensorBoard's
HParams tab tells runs of one label apart by any config field), then each epoch's scalars at step =
epoch (`SCALAR_TAGS`).

`write_curves` brings the file up to the metrics rows it is given, from what the file itself holds:
it appends the epochs the file lacks, so a resumed run (a new process) never writes an epoch twice
and a run trained before TensorBoard was installed gets its past epochs at its next one. The file is
only appended to, one record per epoch, except that it is first cut back to what it must agree with:
a torn end (a kill or a full disk mid-write) goes, with the last whole step before it (whose records
it may complete), and so do epochs the metrics no longer hold (a resume from the previous checkpoint,
the last one being damaged); they are written again from the rows, or as they are trained again.

The `tensorboard` package is an optional extra (``pip install -e ".[tensorboard]"``). Without it
nothing is written and one line says so; with it, writing is best effort: a failure is reported once
and never fails the run, since metrics.jsonl has every epoch and `sync_curves` writes the curves from
it at any time (``python -m analysis.tensorboard`` does, for a whole results folder).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from wrn.config import RunConfig
from wrn.names import render_label

EVENTS_FOLDER = "tensorboard"
EVENT_FILE = "events.out.tfevents.metrics"  # TensorBoard reads every file whose name holds "tfevents"
FILE_VERSION = "brain.Event:2"

# metrics.jsonl key -> TensorBoard tag: the part before "/" is the chart group, so train and test
# curves sit side by side. A key not listed here (a metric added later) is plotted under its own name.
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_error": "error/train",
    "test_error": "error/test",
    "test_top5_error": "error/test_top5",
    "lr": "lr",
    "images_per_s": "speed/images_per_s",
    "train_time_s": "speed/train_time_s",
}
INSTALL_HINT = 'pip install -e ".[tensorboard]"'

_HEADER_BYTES = 12  # a TFRecord: uint64 length, uint32 masked CRC of it, the data, uint32 masked CRC of the data
_FOOTER_BYTES = 4
_reported: set[str] = set()


def curve_name(cfg: RunConfig) -> str:
    """The folder, and so TensorBoard's run name, of a run's curves: label, dataset and seed."""
    return f"{render_label(cfg)}_{cfg.dataset}_seed{cfg.seed}"


def event_file(run_dir: Path, cfg: RunConfig) -> Path:
    return Path(run_dir) / EVENTS_FOLDER / curve_name(cfg) / EVENT_FILE


def write_curves(run_dir: Path, cfg: RunConfig, rows: list[dict[str, Any]]) -> None:
    """Best effort `sync_curves`: training goes on whatever happens here, with one line on stderr the
    first time the package is missing or a write fails."""
    try:
        sync_curves(run_dir, cfg, rows)
    except ImportError as error:
        _report_once("missing", f"TensorBoard curves are off: no tensorboard package ({error}); {INSTALL_HINT} adds it")
    except Exception as error:  # a view of metrics.jsonl must never fail the run
        _report_once("failed", f"TensorBoard curves of {Path(run_dir).name} not written ({type(error).__name__}: "
                               f"{error}); training goes on and metrics.jsonl has every epoch")


def sync_curves(run_dir: Path, cfg: RunConfig, rows: list[dict[str, Any]]) -> int:
    """Make the run's event file hold exactly `rows` (metrics.jsonl's, in epoch order) and its header;
    return how many epochs were written. Raises ImportError without the tensorboard package."""
    tb = _tensorboard()
    path = event_file(run_dir, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes() if path.exists() else b""
    groups, torn = _step_groups(data, tb)
    if torn and groups:
        groups.pop()  # the torn record may belong to the last step's (the header has several records)
    last_epoch = rows[-1]["epoch"] if rows else 0
    kept = list(itertools.takewhile(lambda group: group[0] <= last_epoch, groups))  # steps only rise
    end = kept[-1][2] if kept else 0
    if end < len(data):
        os.truncate(path, end)
    done = kept[-1][0] if kept else -1
    blob = io.BytesIO()
    writer = tb.RecordWriter(blob)
    if done < 0:
        for event in _header(run_dir, cfg, tb):
            writer.write(event.SerializeToString())
    new = [row for row in rows if row["epoch"] > done]
    for row in new:
        writer.write(_epoch_event(row, tb).SerializeToString())
    if blob.tell():
        with open(path, "ab") as f:
            f.write(blob.getvalue())
    return len(new)


def _tensorboard() -> SimpleNamespace:
    """The parts of the tensorboard package used here: its protos, record framing and summaries."""
    from tensorboard.compat.proto import event_pb2, summary_pb2  # deferred: optional extra, ~1 s to import
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # deferred: optional extra
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb  # deferred: optional extra
    from tensorboard.plugins.text.metadata import create_summary_metadata  # deferred: optional extra
    from tensorboard.summary.writer.record_writer import RecordWriter  # deferred: optional extra
    from tensorboard.util.tensor_util import make_tensor_proto  # deferred: optional extra

    return SimpleNamespace(event_pb2=event_pb2, summary_pb2=summary_pb2, masked_crc32c=masked_crc32c,
                           hparams_pb=hparams_pb, text_metadata=create_summary_metadata,
                           RecordWriter=RecordWriter, make_tensor_proto=make_tensor_proto)


def _step_groups(data: bytes, tb) -> tuple[list[tuple[int, int, int]], bool]:
    """(step, start, end) of each run of consecutive whole records of one step in `data`, and whether
    it ends in a record that is not whole (cut short, or failing its checksums)."""
    groups: list[tuple[int, int, int]] = []
    offset = 0
    while offset < len(data):
        if offset + _HEADER_BYTES > len(data):
            return groups, True
        length_bytes = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + _HEADER_BYTES])
        start, stop = offset + _HEADER_BYTES, offset + _HEADER_BYTES + length
        if length_crc != tb.masked_crc32c(length_bytes) or stop + _FOOTER_BYTES > len(data):
            return groups, True
        (data_crc,) = struct.unpack("<I", data[stop:stop + _FOOTER_BYTES])
        if data_crc != tb.masked_crc32c(data[start:stop]):
            return groups, True
        step = tb.event_pb2.Event.FromString(data[start:stop]).step
        end = stop + _FOOTER_BYTES
        if groups and groups[-1][0] == step:
            groups[-1] = (step, groups[-1][1], end)
        else:
            groups.append((step, offset, end))
        offset = end
    return groups, False


def _header(run_dir: Path, cfg: RunConfig, tb) -> list:
    """Step 0: the file version, the run's text summary and its config as HParams."""
    now = time.time()
    label, run_id = render_label(cfg), Path(run_dir).name
    fields = cfg.to_dict()
    hparams = {"label": label, **{k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
                                  for k, v in fields.items()}}
    table = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in fields.items())
    text = (f"**{label}** on {cfg.dataset}, seed {cfg.seed}, recipe {cfg.recipe}: run {run_id}\n\n"
            f"| field | value |\n|---|---|\n{table}")
    summary = tb.summary_pb2.Summary(value=[tb.summary_pb2.Summary.Value(
        tag="run", metadata=tb.text_metadata(display_name="run", description="the run and its config"),
        tensor=tb.make_tensor_proto(text))])
    return [
        tb.event_pb2.Event(wall_time=now, step=0, file_version=FILE_VERSION),
        tb.event_pb2.Event(wall_time=now, step=0, summary=summary),
        tb.event_pb2.Event(wall_time=now, step=0, summary=tb.hparams_pb(hparams, trial_id=run_id)),
    ]


def _epoch_event(row: dict[str, Any], tb):
    """One event with every numeric value of a metrics row, at step = its epoch."""
    values = [tb.summary_pb2.Summary.Value(tag=SCALAR_TAGS.get(key, key), simple_value=float(value))
              for key, value in row.items()
              if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)]
    return tb.event_pb2.Event(wall_time=time.time(), step=int(row["epoch"]),
                              summary=tb.summary_pb2.Summary(value=values))


def _report_once(kind: str, line: str) -> None:
    if kind not in _reported:
        _reported.add(kind)
        print(line, file=sys.stderr, flush=True)
