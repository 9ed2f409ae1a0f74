"""Figures 2 and 3 as the paper draws them (`curves`): per panel, test error solid on the right axis
and training loss dashed on the left, one line per network (the median over its finished seeds per
epoch) with its own marker as well as its colour, the learning-rate drops of the schedule as dotted
verticals, the official training log of a network that has one in thin lines beside it
(`analysis.reference_logs`), and the legend naming each network with its final error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.collect import FINISHED, Collection
from analysis.figures.common import (MARKERS, figure_title, grid, no_runs_note, panel_masks, plain_log_axis, run_cells,
                                     run_configs, shared_legend, styled)
from analysis.reference_logs import OfficialLog, matching_log
from analysis.tables import SpecTable

LR_DROP = "lr-drop"  # the gid of a curve panel's learning-rate-drop lines
OFFICIAL_LOG = "official-log"  # the gid of a curve panel's official-log lines


def _milestones(value: Any) -> tuple[int, ...]:
    """A run's lr_milestones as the epochs frame holds them ("60,120,160", a list, or nothing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(int(p) for p in parts if str(p).strip())


def _lr_drops(ax, data: pd.DataFrame, names: list[str], hue: str, palette: dict) -> list[Line2D]:
    """Dotted verticals where the schedule drops the learning rate. A milestone m is the first epoch at
    the lower rate (`wrn.config.RunConfig.lr_at`), so its line stands at m − 0.5, between the last point
    at the old rate and the first at the new. Grey when every network of the panel drops together,
    else in each network's colour. Returns the legend's entries."""
    last = data["epoch"].max()
    schedules = {name: (_milestones(part["lr_milestones"].iat[0]), float(part["lr_decay"].iat[0]))
                 for name in names if len(part := data[data[hue] == name])}
    drawn = {name: [m for m in schedule[0] if m <= last] for name, schedule in schedules.items()}
    if not any(drawn.values()):
        return []
    together = len({(tuple(d), schedules[n][1]) for n, d in drawn.items()}) == 1
    handles = []
    for name in [next(iter(drawn))] if together else drawn:
        color = "0.45" if together else palette[name]
        for m in drawn[name]:
            ax.axvline(m - 0.5, color=color, linestyle=":", linewidth=1.3, zorder=0, gid=LR_DROP)
        epochs = ", ".join(str(m) for m in drawn[name])
        who = "" if together else f"{name}: "
        handles.append(Line2D([], [], color=color, linestyle=":", linewidth=1.3,
                              label=f"{who}LR ×{schedules[name][1]:g} from epoch {epochs}"))
    return handles


def _final_error_text(name: str, finals: list[tuple[str, float, float]]) -> str:
    """A network's legend entry: its final error and the paper's, per panel where they differ."""
    def one(ours: float, paper: float) -> str:
        parts = ([f"ours {ours:.2f}%"] if np.isfinite(ours) else []) + ([f"paper {paper:.2f}%"] if np.isfinite(paper) else [])
        return ", ".join(parts) or "no final error"
    distinct = list(dict.fromkeys((o, p) for _, o, p in finals))
    if len(distinct) == 1:
        return f"{name} ({one(*distinct[0])})"
    return f"{name} (" + "; ".join(f"{title}: {one(o, p)}" for title, o, p in finals) + ")"


def _network_log(rows: pd.DataFrame) -> OfficialLog | None:
    """The official log of the network whose per-epoch rows these are, if it has one."""
    first = rows.iloc[0]
    return matching_log(first["label"], first["dataset"], first["preprocessing"], first["recipe"])


def _draw_log(ax, error_ax, log: OfficialLog, name: str, color) -> Line2D:
    """`log`'s training loss (dashed, `ax`) and test error (solid, `error_ax`) in thin lines of
    `name`'s colour, under our lines; returns the legend's entry."""
    style = dict(color=color, linewidth=0.9, alpha=0.6, zorder=1, gid=OFFICIAL_LOG)
    ax.plot(log.curve["epoch"], log.curve["train_loss"], linestyle="--", label=f"{name} official log training loss", **style)
    error_ax.plot(log.curve["epoch"], log.curve["test_error"], linestyle="-", label=f"{name} official log test error", **style)
    return Line2D([], [], color=color, linewidth=0.9, alpha=0.6, label=f"thin: {name}, official log ({log.describe()})")


@styled
def curves(spec_fig, table: SpecTable, collection: Collection):
    """Figures 2 and 3: per panel, test error (solid, right axis) and training loss (dashed, left
    axis) per epoch, one line of each per network (median over its finished seeds), beside it its
    official log where it has one, the LR drops dotted; one legend naming each network with its final
    error."""
    epochs = collection.epochs
    epochs = epochs[epochs["state"] == FINISHED] if len(epochs) else epochs
    configs = run_configs(collection)
    hue = spec_fig.hue or "label"
    epoch_configs = {i: configs.get(r) for i, r in zip(epochs.index, epochs["run_id"], strict=True)} if len(epochs) else {}
    cells = run_cells(table)
    panel_order = list(cells[spec_fig.panel]) if spec_fig.panel and spec_fig.panel in cells else []
    panels = panel_masks(spec_fig, epochs, epoch_configs, panel_order)
    names = list(dict.fromkeys(cells["label"])) if len(cells) else []
    names += [n for n in dict.fromkeys(epochs[hue]) if n not in names] if len(epochs) else []
    palette = dict(zip(names, sns.color_palette("colorblind", max(1, len(names))), strict=False))
    markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
    finals = {(c["label"], c.get(spec_fig.panel) if spec_fig.panel else None): (c["median"], c["paper"])
              for _, c in cells.iterrows()}
    fig, axes, spare = grid(len(panels), (5.4, 4.2), spare=True)
    drawn: dict[str, list[tuple[str, float, float]]] = {}
    drop_handles: list[Line2D] = []
    log_handles: dict[str, Line2D] = {}
    for ax, (title, mask) in zip(axes, panels, strict=True):
        error_ax = ax.twinx()
        data = epochs[mask] if len(epochs) else epochs
        present = [n for n in names if len(data) and n in set(data[hue])]
        for i, name in enumerate(present):
            rows = data[data[hue] == name]
            per_epoch = rows.groupby("epoch")[["train_loss", "test_error"]].median()
            every = max(1, len(per_epoch) // 8)  # about 8 markers a line, staggered between the networks
            style = dict(color=palette[name], marker=markers[name], markersize=5,
                         markevery=(i * every // len(present), every))
            ax.plot(per_epoch.index, per_epoch["train_loss"], linestyle="--", label=f"{name} training loss", **style)
            error_ax.plot(per_epoch.index, per_epoch["test_error"], linestyle="-", label=f"{name} test error", **style)
            panel_value = data[spec_fig.panel].iat[0] if spec_fig.panel else None
            drawn.setdefault(name, []).append((title, *finals.get((name, panel_value), (np.nan, np.nan))))
            log = _network_log(rows)
            if log is not None:
                log_handles[name] = _draw_log(ax, error_ax, log, name, palette[name])
        losses = data["train_loss"].astype(float) if len(data) else pd.Series(dtype=float)
        log_loss = len(data) and (data.get("dataset") == "svhn").all() and (losses > 0).all()
        if log_loss:  # as the paper draws Figure 3
            ax.set_yscale("log")
            plain_log_axis(ax.yaxis, float(losses.min()), float(losses.max()))
        if len(data):
            drop_handles += [h for h in _lr_drops(ax, data, present, hue, palette)
                             if h.get_label() not in {d.get_label() for d in drop_handles}]
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("training loss (dashed" + (", log scale)" if log_loss else ")"))
        error_ax.set_ylabel("test error (%) (solid)")
        ax.set_title(title)
        no_runs_note(ax, len(data))
    handles = [Line2D([], [], color=palette[name], marker=markers[name], label=_final_error_text(name, finals_of))
               for name, finals_of in drawn.items()]
    if handles:
        handles += [Line2D([], [], color="0.3", linestyle="-", label="test error (right axis)"),
                    Line2D([], [], color="0.3", linestyle="--", label="training loss (left axis)"),
                    *log_handles.values(), *drop_handles]
    shared_legend(fig, handles, spare, columns=1 if any(len(h.get_label()) > 60 for h in handles) else 2)
    figure_title(fig, spec_fig, table)
    return fig
