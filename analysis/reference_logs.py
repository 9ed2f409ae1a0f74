"""The official repository's own training logs as reference curves.

szagoruyko/wide-residual-networks keeps four logs of 200-epoch runs on ZCA-whitened CIFAR-10 under the
recipe of May 2016 (`logs/*/log.txt`, added at 1e3deaa and unchanged since), one `json_stats` line per
epoch. `results/paper/official_logs.csv` transcribes the two that a spec trains a counterpart of:
WRN-40-4 (8,949,210 parameters, 5.11 % at epoch 200) and the pre-activation ResNet-164 (1,703,258
parameters, 5.75 %), each epoch's test error (100 - test_acc), training loss (`loss`), learning rate and
training seconds, with the file and commit it comes from.

A network is the counterpart of a log when they agree on its label, dataset, preprocessing and recipe
(`matching_log`): the curves figure draws the log beside it as a reference line (`analysis.figures`),
whatever the profile, and where its finished runs trained on the real dataset for as many epochs as
the log, the table compares the two at the end of each of the log's learning-rate stages
(`stage_comparisons`). The logs are single runs: a difference at a stage end is read against the seed
spread of the table's cells, not as a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd

from analysis.collect import FINISHED
from experiments.schema import REPO_ROOT

LOGS_CSV = REPO_ROOT / "results" / "paper" / "official_logs.csv"
KEYS = ("label", "dataset", "preprocessing", "recipe")  # what a network shares with its log, with its epochs


@dataclass(frozen=True)
class OfficialLog:
    """One official run's curve: its name, what it trained (`KEYS`), where it comes from, and one row
    per epoch (epoch, test_error, train_loss, lr, epoch_time_s)."""

    name: str
    keys: tuple[str, str, str, str]
    source: str
    curve: pd.DataFrame

    @property
    def final_error(self) -> float:
        return float(self.curve["test_error"].iat[-1])

    @property
    def epochs(self) -> int:
        return int(self.curve["epoch"].iat[-1])

    def describe(self) -> str:
        """The log as a legend or a note names it: its source and its final error."""
        return f"{self.source}, {self.final_error:.2f}% at epoch {self.epochs}"

    def stage_ends(self) -> list[int]:
        """The last epoch at each learning rate of the log, the final epoch included (59, 119, 159, 200
        for the CIFAR schedule)."""
        lr = self.curve.set_index("epoch")["lr"]
        ends = [int(e) for e, nxt in zip(lr.index[:-1], lr.values[1:], strict=True) if lr[e] != nxt]
        return ends + [int(lr.index[-1])]


@cache
def official_logs() -> tuple[OfficialLog, ...]:
    frame = pd.read_csv(LOGS_CSV, dtype={"log": str})
    logs = []
    for name, rows in frame.groupby("log", sort=False):
        first = rows.iloc[0]
        logs.append(OfficialLog(str(name), tuple(str(first[k]) for k in KEYS), str(first["source"]),
                                rows[["epoch", "test_error", "train_loss", "lr", "epoch_time_s"]].reset_index(drop=True)))
    return tuple(logs)


def matching_log(label: str, dataset: str, preprocessing: str, recipe: str) -> OfficialLog | None:
    """The official log of the network with these `KEYS`, if the repository has one."""
    wanted = (str(label), str(dataset), str(preprocessing), str(recipe))
    return next((log for log in official_logs() if log.keys == wanted), None)


@dataclass(frozen=True)
class StageComparison:
    """Our median test error at the end of each of a log's learning-rate stages against the log's."""

    log: OfficialLog
    runs: int  # our finished runs behind each median
    points: list[tuple[int, float, float]]  # (epoch, ours, the log's)

    def sentence(self) -> str:
        """Our runs against the log, one stage end after another."""
        label, dataset, preprocessing, recipe = self.log.keys
        parts = [f"epoch {epoch}: ours {ours:.2f} vs {theirs:.2f} ({ours - theirs:+.2f})"
                 for epoch, ours, theirs in self.points]
        return (f"{label} ({dataset}, {preprocessing}, recipe {recipe}) against the official log "
                f"({self.log.source}; test error %, ours the median of "
                f"{self.runs} run{'s' if self.runs != 1 else ''}, at the end of each learning-rate stage): "
                + "; ".join(parts))


def stage_comparisons(epochs: pd.DataFrame) -> list[StageComparison]:
    """For each network of `epochs`, the collected per-epoch rows, whose finished runs on the real
    dataset have an official log: the comparison at the log's stage ends."""
    out: list[StageComparison] = []
    if epochs.empty:
        return out
    finished = epochs[(epochs["state"] == FINISHED) & (epochs["data_source"] == "real")]
    for (*keys, epochs), rows in finished.groupby([*KEYS, "epochs"], sort=False):
        log = matching_log(*keys)
        if log is None or log.epochs != int(epochs):
            continue
        per_epoch = rows.groupby("epoch")["test_error"].median()
        theirs = log.curve.set_index("epoch")["test_error"]
        points = [(e, float(per_epoch[e]), float(theirs[e])) for e in log.stage_ends() if e in per_epoch.index]
        if points:
            out.append(StageComparison(log, int(rows["run_id"].nunique()), points))
    return out
