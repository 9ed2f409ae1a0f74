"""What building a table produces and rendering reads: `SpecTable`, what a cell reports, and how a
field's name and value are written (`display_name`, `display_value`: also the figures' axis labels).

A module of its own because both sides of the package need it: building (`cells`, `comparisons`,
`build`) fills a `SpecTable`, rendering (`layout`, `notes`, `text`, `latex`, `files`) and the figures
read it, and neither side imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.verdicts import Ordering

# How a metric or field is named in headers and axis labels (units included).
DISPLAY_NAMES = {
    "test_error": "test error (%)", "time_ms": "time per minibatch (ms)", "params": "# params",
    "epoch_time_s": "time per epoch (s)", "train_loss": "training loss", "flops": "FLOPs",
    "label": "network", "block": "block type", "depth": "depth", "k": "k", "dataset": "dataset",
    "dropout": "dropout", "arch": "architecture", "method": "method", "top1_error": "top-1 error (%)",
    "top5_error": "top-5 error (%)",
}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "imagenet": "ImageNet"}
FINAL_EPOCH, BEST_EPOCH = "final epoch", "best epoch"  # what a cell reports of its runs


def display_name(name: str) -> str:
    return DISPLAY_NAMES.get(name, name.replace("_", " "))


def display_value(field_name: str, value: Any) -> str:
    """A key value as the paper writes it (datasets as CIFAR-10, dropout as a tick or blank)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if field_name == "dataset":
        return DATASET_NAMES.get(str(value), str(value))
    if field_name == "dropout":  # the paper ticks it; the rate is the dataset's (0.3 CIFAR, 0.4 SVHN)
        return "✓" if float(value) > 0 else ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class SpecTable:
    """One spec's table: tidy ``cells`` (one row per cell, in the paper's row order), the finished
    values and config of each cell, ``comparisons`` against the baseline, and the layout."""

    spec: str
    title: str
    metric: str
    row_fields: list[str]
    column_field: str | None
    extra: list[str]
    cells: pd.DataFrame
    comparisons: pd.DataFrame
    values: dict[int, dict[int, float]] = field(default_factory=dict)  # cell index -> {seed: finished value}
    baseline: dict[str, Any] | None = None
    description: str = ""  # what the runs are: profile and data, device and precision (`Collection.describe`)
    profile: str = "paper"  # the profile's source, as --profile takes it
    caveat: str = ""  # what makes the runs differ from what the title says (a profile's minibatch, say)
    sentences: list[str] = field(default_factory=list)  # what the seeds decide, per comparison
    orderings: dict[tuple[int, int], Ordering] = field(default_factory=dict)  # (variant, baseline) cell indices
    official_logs: list[str] = field(default_factory=list)  # our curves against the official logs, per network

    @property
    def finished_runs(self) -> int:
        return int(self.cells["n"].sum()) if len(self.cells) else 0

    @property
    def has_paper(self) -> bool:
        """Whether any cell has a number of the paper to set ours against (a user's spec may have none)."""
        columns = ["paper", *(f"paper_{e}" for e in self.extra)]
        return bool(len(self.cells)) and bool(self.cells[columns].notna().to_numpy().any())

    @property
    def metric_label(self) -> str:
        """The metric's name in headers, with the minibatch of a time per minibatch."""
        if self.metric != "time_ms":
            return display_name(self.metric)
        batches = sorted({c.batch_size for c in self.cells["config"] if c is not None})
        return f"time per minibatch of {'/'.join(map(str, batches)) or '?'} (ms)"


def metric_unit(metric: str) -> str:
    """The unit of a metric's differences in the tables' words: ms for a time, pp for an error."""
    return "ms" if metric == "time_ms" else "pp"
