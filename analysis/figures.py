"""The spec's figures, drawn with seaborn from the collected runs and the table's cells.

Five kinds (a spec's ``[[figures]]``):

- ``pointplot``: the table's metric by one factor (``x``), every finished seed a dot, our median a bar
  marker and the paper's value a red cross; one panel per value of ``panel``.
- ``curves``: Figures 2 and 3 as the paper draws them: per panel, test error solid on the right axis
  and training loss dashed on the left, one line per network (median over its finished seeds per
  epoch), each network with its own marker as well as its colour, the learning-rate drops of the
  schedule as dotted verticals, and the legend naming each network with its final error. A network
  with an official training log (`analysis.reference_logs`) has the log drawn beside it in thin lines,
  under any profile (a smoke run's two epochs next to the log's 200).
- ``timing_bars``: Figure 4: time per minibatch (ms), our bar next to the paper's on a log scale (a
  CPU's seconds and a Titan X's milliseconds both read), and beside it each network's time as a ratio
  to the first network's, the quantity that compares across devices; under each network's name its
  CIFAR-10 test error where the run store has it.
- ``error_vs_params``: Table 4's test error against parameter count, ours filled, the paper's hollow,
  a thin line from the paper's point to ours, depth by marker and colour.
- ``differences``: an ablation's comparisons (`analysis.tables.compare_to_baseline`): each row's
  difference from its baseline with its 95 % interval, coloured and shaped by verdict, over the band of
  differences its seeds could not have resolved; one panel per table column.

Made to be read on a page or a slide: panels wrap into at most `MAX_COLUMNS` columns, fonts are set
once (`STYLE`), a figure has one legend shared by its panels and set outside every panel's data (in
the grid's spare cell, or under the panels), log axes are labelled in plain numbers (0.05, 2, 500; no
"2×10⁰"), and `write_figures` stamps every figure with its profile, data, device and precision under
everything else drawn. Every figure is written as PNG and PDF; the draw functions return the
matplotlib Figure so tests can check its artists. Only finished runs are drawn (the tables list the
others).
"""

from __future__ import annotations

import functools
import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window: before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from scipy.stats import norm  # noqa: E402

from analysis import stats  # noqa: E402
from analysis.collect import FINISHED, Collection  # noqa: E402
from analysis.reference_logs import OfficialLog, matching_log  # noqa: E402
from analysis.tables import SpecTable, display_name, display_value  # noqa: E402
from experiments.spec import matches  # noqa: E402
from wrn.config import RunConfig  # noqa: E402
from wrn.files import atomic_write  # noqa: E402

PAPER_COLOR = "#d62728"
FORMATS = ("png", "pdf")
DPI = 150
MAX_COLUMNS = 2  # panels per row: two panels of a paper's width still read on a slide
# Font sizes for a figure printed at about its size (a column or a slide): read at 100 %.
STYLE = {"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 9.5, "legend.title_fontsize": 10, "figure.titlesize": 13}
STAMP_FONTSIZE = 8
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "X")  # one per series, so series differ without colour
LR_DROP = "lr-drop"  # the gid of a curve panel's learning-rate-drop lines
OFFICIAL_LOG = "official-log"  # the gid of a curve panel's official-log lines


# ------------------------------------------------------------------------------------------ helpers
def styled(draw):
    """Draw under `STYLE`: fonts are fixed when an artist is made, so the whole draw runs inside it."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


def _run_configs(collection: Collection) -> dict[str, RunConfig]:
    runs = collection.runs
    return {rid: RunConfig.from_dict(cfg) for rid, cfg in zip(runs["run_id"], runs["config"], strict=True)
            if cfg is not None}


def _panels(fig_spec, frame: pd.DataFrame, configs: dict[Any, RunConfig | None], order: list) -> list[tuple[str, pd.Series]]:
    """[(title, row mask of `frame`)] for the figure's panels: one per value of ``panel``, one per
    hand-picked ``panels`` entry, or a single panel. `configs` maps frame index to each row's config."""
    if fig_spec.panels:
        out = []
        for panel in fig_spec.panels:
            mask = pd.Series([cfg is not None and any(matches(sel, cfg) for sel in panel.runs)
                              for cfg in (configs.get(i) for i in frame.index)], index=frame.index, dtype=bool)
            out.append((panel.title, mask))
        return out
    if fig_spec.panel and fig_spec.panel in frame.columns:
        values = [v for v in dict.fromkeys(order) if v is not None and v == v]
        return [(display_value(fig_spec.panel, v), frame[fig_spec.panel] == v) for v in values]
    return [("", pd.Series(True, index=frame.index))]


def grid(n_panels: int, panel_size: tuple[float, float], spare: bool = False, sharey: bool = False,
         columns: int = MAX_COLUMNS):
    """A figure of `n_panels` panels of `panel_size` inches in rows of at most `columns`, laid out by
    matplotlib's constrained layout. Returns (figure,
    the panels' axes, the spare cell's axes or None): with `spare` a grid that leaves a cell empty
    keeps it, blank, for the shared legend."""
    width, height = panel_size
    columns = max(1, min(n_panels, columns))
    rows = math.ceil(n_panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                             layout="constrained", sharey=sharey)
    flat = list(axes.flat)
    empty = flat[n_panels:]
    keep = empty[0] if spare and empty else None
    for ax in empty:
        if ax is keep:
            ax.axis("off")
        else:
            fig.delaxes(ax)
    return fig, flat[:n_panels], keep


def shared_legend(fig, handles: list, spare=None, columns: int = 2) -> None:
    """One legend for every panel, outside their data: in the grid's spare cell, else under the panels."""
    if not handles:
        return
    if spare is not None:
        spare.legend(handles=handles, loc="center", frameon=False)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(columns, len(handles)), frameon=False)


def legends(fig) -> list:
    """Every legend of `fig`, the figure's and its axes'."""
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def _title(fig, spec_fig, table: SpecTable) -> None:
    """The figure's title, and under it the table's caveat wrapped to the figure's width."""
    width_chars = max(40, int(fig.get_figwidth() * 72 / (0.55 * STYLE["figure.titlesize"])))
    lines = [spec_fig.title or table.title, *textwrap.wrap(table.caveat, width_chars)]
    fig.suptitle("\n".join(filter(None, lines)))


def _no_runs_note(ax, n: int) -> None:
    if n == 0:
        ax.text(0.5, 0.5, "no finished runs yet", transform=ax.transAxes, ha="center", va="center",
                color="0.4", fontsize=11)


def _run_cells(table: SpecTable) -> pd.DataFrame:
    """The table's cells of networks the spec trains (not other papers' reference rows)."""
    cells = table.cells
    return cells[cells["method"].fillna("") == ""] if len(cells) else cells


def _rotate_long_labels(ax, labels: list[str]) -> None:
    """Slant the category labels when they would collide, anchored at their tick."""
    if max((len(line) for label in labels for line in label.split("\n")), default=0) > 8:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")


def plain_number(value: float, _position=None) -> str:
    """A tick label in plain digits: 0.05, 2, 500, 16000 (never 5×10⁻²)."""
    return f"{value:g}" if value >= 1e-4 else f"{value:.1e}"


def plain_log_axis(axis, low: float, high: float) -> None:
    """Tick a log-scaled `axis` over [low, high] in plain numbers: at 1-2-5 steps per decade when the
    data span a decade or more, else at evenly spaced round numbers (within a decade a log axis is
    nearly linear, and matplotlib would otherwise label only the minor ticks, as 2.3×10⁰)."""
    decades = math.log10(high / low) if low > 0 and high > low else 0.0
    if decades >= 1:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 1.0))
    else:
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_formatter(NullFormatter())


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write `fig` as <stem>.png and <stem>.pdf atomically; close it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [atomic_write(out_dir / f"{stem}.{fmt}",
                            lambda handle, fmt=fmt: fig.savefig(handle, format=fmt, dpi=DPI, bbox_inches="tight"),
                            binary=True)
               for fmt in FORMATS]
    plt.close(fig)
    return written


def paper_band(cell: pd.Series) -> float:
    """Half the 95 % band of the paper's value from its own seed noise: 1.96 σ times the standard
    deviation of a median of the paper's runs (0 where the table has no σ, e.g. for a time)."""
    sigma = cell.get("sigma")
    if sigma is None or not np.isfinite(float(sigma)):
        return 0.0
    runs = cell.get("paper_runs")
    runs = int(runs) if runs is not None and np.isfinite(float(runs)) else 1
    return float(norm.isf(0.025) * float(sigma) * np.sqrt(stats.median_variance_factor(runs)))


# ---------------------------------------------------------------------------------------- pointplot
@styled
def pointplot(spec_fig, table: SpecTable, collection: Collection):
    """Test error (the figure's metric) by factor: seeds as dots (a marker per hue value), our median,
    the paper's value."""
    metric = spec_fig.metric or table.metric
    x = spec_fig.x or "label"
    cells = _run_cells(table)
    finished = collection.finished
    configs = _run_configs(collection)
    cell_configs = dict(zip(cells.index, cells["config"], strict=True)) if len(cells) else {}
    panel_order = list(cells[spec_fig.panel]) if spec_fig.panel and spec_fig.panel in cells else []
    cell_panels = _panels(spec_fig, cells, cell_configs, panel_order)
    run_panels = dict(_panels(spec_fig, finished, {i: configs.get(r) for i, r in zip(finished.index, finished["run_id"], strict=True)},
                              panel_order))
    hue_labels = [] if not spec_fig.hue or not len(finished) else list(dict.fromkeys(
        f"{display_name(spec_fig.hue)} {display_value(spec_fig.hue, v) or 'none'}" for v in finished[spec_fig.hue]))
    hue_style = {name: (f"C{i}", MARKERS[i % len(MARKERS)]) for i, name in enumerate(hue_labels)}
    categories = max((len(set(cells.loc[mask, x])) for _, mask in cell_panels if x in cells), default=1)
    fig, axes, spare = grid(len(cell_panels), (min(6.5, max(4.2, 0.7 * categories + 1.6)), 4.2), spare=True)
    for ax, (title, cell_mask) in zip(axes, cell_panels, strict=True):
        panel_cells = cells[cell_mask]
        order = [display_value(x, v) for v in dict.fromkeys(panel_cells[x])] if x in panel_cells else []
        runs = finished[run_panels.get(title, pd.Series(True, index=finished.index))] if len(finished) else finished
        data = pd.DataFrame({"x": [display_value(x, v) for v in runs[x]], "y": runs[metric].astype(float)}) \
            if len(runs) else pd.DataFrame({"x": [], "y": []})
        if spec_fig.hue and len(runs):
            data["hue"] = [f"{display_name(spec_fig.hue)} {display_value(spec_fig.hue, v) or 'none'}" for v in runs[spec_fig.hue]]
        if len(data):
            for name, part in data.groupby("hue", sort=False) if "hue" in data else [("", data)]:
                color, marker = hue_style.get(name, ("C0", "o"))
                sns.stripplot(data=part, x="x", y="y", order=order, ax=ax, jitter=0.15, size=5, alpha=0.8,
                              color=color, marker=marker, legend=False)
            sns.pointplot(data=data, x="x", y="y", order=order, estimator=np.median, errorbar=None, ax=ax,
                          linestyle="none", markers="_", markersize=22, color="black")
        positions = {name: i for i, name in enumerate(order)}
        for _, cell in panel_cells.iterrows():
            if np.isfinite(cell["paper"]):
                ax.errorbar(positions[display_value(x, cell[x])], cell["paper"], yerr=paper_band(cell), marker="X",
                            markersize=10, color=PAPER_COLOR, linestyle="none", capsize=4, zorder=5)
        if not order:
            ax.set_xticks([])
        ax.set_xlim(-0.5, max(len(order) - 0.5, 0.5))
        ax.set_title(title)
        ax.set_xlabel(display_name(x))
        ax.set_ylabel(display_name(metric))
        _rotate_long_labels(ax, order)
        _no_runs_note(ax, len(runs))
    handles = [Line2D([], [], marker=marker, color=color, linestyle="none", label=f"our runs, {name}")
               for name, (color, marker) in hue_style.items()] or \
        [Line2D([], [], marker="o", color="C0", linestyle="none", label="our runs (one dot per seed)")]
    handles.append(Line2D([], [], marker="_", markersize=14, color="black", linestyle="none", label="our median"))
    if table.has_paper:
        handles.append(Line2D([], [], marker="X", color=PAPER_COLOR, linestyle="none",
                              label="paper, ±95 % of its seed noise"))
    shared_legend(fig, handles, spare, columns=len(handles))
    _title(fig, spec_fig, table)
    return fig


# ------------------------------------------------------------------------------------------- curves
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
    configs = _run_configs(collection)
    hue = spec_fig.hue or "label"
    epoch_configs = {i: configs.get(r) for i, r in zip(epochs.index, epochs["run_id"], strict=True)} if len(epochs) else {}
    cells = _run_cells(table)
    panel_order = list(cells[spec_fig.panel]) if spec_fig.panel and spec_fig.panel in cells else []
    panels = _panels(spec_fig, epochs, epoch_configs, panel_order)
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
        _no_runs_note(ax, len(data))
    handles = [Line2D([], [], color=palette[name], marker=markers[name], label=_final_error_text(name, finals_of))
               for name, finals_of in drawn.items()]
    if handles:
        handles += [Line2D([], [], color="0.3", linestyle="-", label="test error (right axis)"),
                    Line2D([], [], color="0.3", linestyle="--", label="training loss (left axis)"),
                    *log_handles.values(), *drop_handles]
    shared_legend(fig, handles, spare, columns=1 if any(len(h.get_label()) > 60 for h in handles) else 2)
    _title(fig, spec_fig, table)
    return fig


# -------------------------------------------------------------------------------------- timing_bars
OURS, PAPER_TITAN_X = "ours (median)", "paper (Titan X)"
TIMING_STYLE = {OURS: dict(facecolor="C0"), PAPER_TITAN_X: dict(facecolor="0.78", hatch="//", edgecolor="0.4")}


def _bars(ax, values: dict[str, list[float]], order: list[str], fmt) -> None:
    """Grouped bars, one group per network, one bar per source, each labelled with its value."""
    width = 0.8 / max(1, len(values))
    for j, (source, heights) in enumerate(values.items()):
        xs = np.arange(len(order)) + (j - (len(values) - 1) / 2) * width
        bars = ax.bar(xs, heights, width=width, label=source, **TIMING_STYLE[source])
        ax.bar_label(bars, labels=["" if not np.isfinite(h) else fmt(h) for h in heights], fontsize=8, padding=2)


@styled
def timing_bars(spec_fig, table: SpecTable, collection: Collection, error_labels: dict[str, float] | None = None):
    """Figure 4: time per minibatch (ms) per network, ours next to the paper's on a log scale, and
    each time as a ratio to the first network's (the comparison that holds across devices); under each
    network's name its CIFAR-10 test error (from the run store, when known)."""
    metric = spec_fig.metric or table.metric
    cells = _run_cells(table)
    order = list(dict.fromkeys(cells["label"])) if len(cells) else []
    first = {label: cells[cells["label"] == label].iloc[0] for label in order}
    times = {OURS: [float(first[n]["median"]) for n in order]}
    if table.has_paper and any(np.isfinite(first[n]["paper"]) for n in order):
        times[PAPER_TITAN_X] = [float(first[n]["paper"]) for n in order]
    base = next((i for i, n in enumerate(order) if all(np.isfinite(v[i]) for v in times.values())), None)
    ratios = {source: [v / values[base] for v in values] if base is not None else [math.nan] * len(order)
              for source, values in times.items()}
    labels = {n: e for n, e in (error_labels or {}).items() if np.isfinite(e)}  # no finished training run: no label
    ticks = [f"{n}\n{labels[n]:.2f}% error" if n in labels else n for n in order]
    fig, (time_ax, ratio_ax), _ = grid(2, (max(6.0, 1.5 * len(order) + 1.2), 3.6), columns=1)
    _bars(time_ax, times, order, lambda v: plain_number(float(f"{v:.3g}")))  # 813 ms, not 813.075
    finite = [v for values in times.values() for v in values if np.isfinite(v) and v > 0]
    if finite:
        time_ax.set_yscale("log")
        time_ax.set_ylim(min(finite) / 2, max(finite) * 3)  # room for the labels on top
        plain_log_axis(time_ax.yaxis, min(finite) / 2, max(finite) * 3)
    time_ax.set_ylabel("ms (log scale)" if finite else "ms")
    time_ax.set_title(table.metric_label if metric == table.metric else display_name(metric))
    _bars(ratio_ax, ratios, order, lambda v: f"{v:.2f}×")
    ratio_ax.set_ylabel("time ratio")
    ratio_ax.set_title(f"time ÷ {order[base]}'s: the comparison that holds across devices" if base is not None
                       else "time ratio")
    top = max((v for values in ratios.values() for v in values if np.isfinite(v)), default=1.0)
    ratio_ax.set_ylim(0, top * 1.15)
    for ax in (time_ax, ratio_ax):
        ax.set_xticks(range(len(order)), ticks)
        ax.set_xlim(-0.5, max(len(order), 1) - 0.5)
        ax.set_xlabel("network (depth-k)")
        _no_runs_note(ax, int(cells["n"].sum()) if len(cells) else 0)
    notes = []
    if len(cells) and any("not compared" in str(n) for n in cells["notes"]):
        notes.append(f"ours: {table.metric_label}; the paper's bars, of another minibatch, are not drawn")
    if labels:
        notes.append("under each network: our CIFAR-10 test error (median of finished runs)")
    handles = [Patch(label=source, **TIMING_STYLE[source]) for source in times]
    handles += [Line2D([], [], linestyle="none", label=note) for note in notes]
    shared_legend(fig, handles, columns=len(times))
    _title(fig, spec_fig, table)
    return fig


# ---------------------------------------------------------------------------------- error_vs_params
# Where a point's name may go: offsets in points and the alignment that keeps the name clear of the
# point, nearest first (`label_points`).
LABEL_PLACES = tuple((sx * r, sy * r, {1: "left", 0: "center", -1: "right"}[sx], {1: "bottom", 0: "center", -1: "top"}[sy])
                     for r in (5, 11, 18) for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)))


def label_points(fig, panels: list[tuple[Any, list[tuple[float, float, str, Any]]]]) -> None:
    """Per (axes, points) of `panels`, name each (x, y, text, colour) beside its point, where the name
    stays inside the panel and overlaps no other name or point: the first such place of
    `LABEL_PLACES`, else the place that overlaps least. The names stay out of the layout, so placing
    them does not move the panels."""
    if not any(points for _, points in panels):
        return
    fig.canvas.draw()  # the final layout: names are placed where they will be drawn
    renderer = fig.canvas.get_renderer()
    for ax, points in panels:
        _label_panel(ax, points, renderer)


def _label_panel(ax, points: list[tuple[float, float, str, Any]], renderer, fontsize: float = 8) -> None:
    fig = ax.figure
    frame = ax.get_window_extent(renderer)
    radius = 5 * fig.dpi / 72
    taken = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
             for px, py in ax.transData.transform([(x, y) for x, y, _, _ in points])]

    def overlap(box) -> float:
        outside = box.width * box.height - _area(Bbox.intersection(box, frame))
        return outside + sum(_area(Bbox.intersection(box, t)) for t in taken)

    for x, y, text, color in points:
        best = None
        for dx, dy, ha, va in LABEL_PLACES:
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                               fontsize=fontsize, color=color)
            note.set_in_layout(False)
            box = note.get_window_extent(renderer)
            cost = overlap(box)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box)
            else:
                note.remove()
            if cost == 0:
                break
        taken.append(best[2])


def _area(box) -> float:
    return 0.0 if box is None else box.width * box.height


@styled
def error_vs_params(spec_fig, table: SpecTable, collection: Collection):
    """Test error against parameter count: our medians filled, the paper's hollow, joined by a thin
    line, each named; the hue (depth) by colour and marker."""
    metric = spec_fig.metric or table.metric
    cells = _run_cells(table).copy()
    cell_configs = dict(zip(cells.index, cells["config"], strict=True)) if len(cells) else {}
    panel_order = list(cells[spec_fig.panel]) if spec_fig.panel and spec_fig.panel in cells else []
    panels = _panels(spec_fig, cells, cell_configs, panel_order)
    hue = spec_fig.hue
    hue_values = list(dict.fromkeys(cells[hue])) if hue and hue in cells else [None]
    palette = dict(zip(hue_values, sns.color_palette("viridis", max(1, len(hue_values))), strict=False))
    marker_of = {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(hue_values)}
    fig, axes, spare = grid(len(panels), (5.4, 4.4), spare=True)
    to_label = []
    for ax, (title, mask) in zip(axes, panels, strict=True):
        panel = cells[mask]
        names = []
        xs = []
        for _, cell in panel.iterrows():
            key = cell[hue] if hue else None
            color, marker = palette.get(key, "C0"), marker_of.get(key, "o")
            params = cell["params"] if "params" in cell and np.isfinite(cell["params"]) else np.nan
            paper_params = cell.get("paper_params", np.nan)
            ours = np.isfinite(cell["median"]) and np.isfinite(params)
            paper = np.isfinite(cell["paper"]) and np.isfinite(paper_params)
            if ours:
                ax.scatter(params / 1e6, cell["median"], color=color, marker=marker, s=42, zorder=3)
                names.append((params / 1e6, cell["median"], cell["label"], "0.1"))
                xs.append(params / 1e6)
            if paper:
                ax.scatter(paper_params / 1e6, cell["paper"], facecolors="none", edgecolors=color, marker=marker,
                           s=42, zorder=3)
                xs.append(paper_params / 1e6)
                if not ours:
                    names.append((paper_params / 1e6, cell["paper"], cell["label"], "0.45"))
            if ours and paper:
                ax.plot([paper_params / 1e6, params / 1e6], [cell["paper"], cell["median"]], color=color,
                        linewidth=0.7, alpha=0.6, zorder=2)
        if xs:
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
            plain_log_axis(ax.xaxis, min(xs) / 1.6, max(xs) * 1.6)
            ax.margins(y=0.12)
        ax.set_xlabel("parameters (millions, log scale)")
        ax.set_ylabel(display_name(metric))
        ax.set_title(title)
        _no_runs_note(ax, int(panel["n"].sum()) if len(panel) else 0)
        to_label.append((ax, names))
    handles = [Line2D([], [], marker="o", color="0.3", linestyle="none", label="ours (median)")]
    if table.has_paper:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none", color="0.3", linestyle="none",
                              label="paper (a line joins it to ours)"))
    if hue:
        handles += [Line2D([], [], marker=marker_of[v], color=palette[v], linestyle="none",
                           label=f"{display_name(hue)} {display_value(hue, v)}") for v in hue_values]
    shared_legend(fig, handles, spare, columns=len(handles))
    _title(fig, spec_fig, table)
    label_points(fig, to_label)
    return fig


# ------------------------------------------------------------------------------------------ differences
VERDICT_STYLES = {stats.HIGHER: ("#d62728", "^"), stats.LOWER: ("#1f77b4", "v"), stats.SUPPORTED: ("#2ca02c", "^"),
                  stats.CONTRADICTED: ("#d62728", "v")}
UNRESOLVED_STYLE = ("0.45", "o")


@styled
def differences(spec_fig, table: SpecTable, collection: Collection):
    """Each comparison with the baseline: the difference and its 95 % interval, red up-triangles or
    blue down-triangles where the seeds resolve it (grey dots where not), over a grey band of ± the
    smallest difference they resolve with 80 % power. Rows are named as the table names them (the
    deviation, or the network)."""
    comps = table.comparisons
    column = table.column_field
    panels = list(dict.fromkeys(comps[column])) if column and len(comps) else [None]
    rows = max(1, len(comps) // max(1, len(panels)))
    fig, axes, _ = grid(len(panels), (4.6, 0.36 * rows + 1.4), sharey=True)
    for ax, panel in zip(axes, panels):
        part = comps if panel is None else comps[comps[column] == panel]
        names = [] if part.empty else list(part["deviation"] if "deviation" in part else part["label"])
        y = np.arange(len(part))[::-1]
        for yi, (_, row) in zip(y, part.iterrows()):
            color, marker = VERDICT_STYLES.get(row["verdict"], UNRESOLVED_STYLE)
            if np.isfinite(row["ci_low"]):
                ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color=color, linewidth=2)
            ax.plot([row["diff"]], [yi], marker=marker, markersize=7, color=color, linestyle="none")
            if np.isfinite(row["detectable"]):
                ax.fill_betweenx([yi - 0.4, yi + 0.4], -row["detectable"], row["detectable"], color="0.92", zorder=0)
        ax.axvline(0.0, color="0.3", linewidth=0.8)
        ax.set_yticks(y, names)
        ax.set_xlabel(f"Δ {display_name(table.metric)} vs the baseline")
        ax.set_title(display_value(column, panel) if panel is not None else "")
        _no_runs_note(ax, len(part))
    handles = [Line2D([], [], marker=VERDICT_STYLES[v][1], color=VERDICT_STYLES[v][0], label=f"{v}: resolved by the seeds")
               for v in (stats.HIGHER, stats.LOWER)]
    handles.append(Line2D([], [], marker=UNRESOLVED_STYLE[1], color=UNRESOLVED_STYLE[0],
                          label="not resolved (grey band: ± what the seeds resolve)"))
    shared_legend(fig, handles, columns=3)
    _title(fig, spec_fig, table)
    return fig


DRAWERS = {"pointplot": pointplot, "curves": curves, "timing_bars": timing_bars,
           "error_vs_params": error_vs_params, "differences": differences}


def figure_stem(spec_name: str, index: int, spec_fig, all_figs) -> str:
    """<spec>_<kind>, with the figure's position appended when a spec has two of one kind."""
    same_kind = [f for f in all_figs if f.kind == spec_fig.kind]
    return f"{spec_name}_{spec_fig.kind}" + (f"_{index}" if len(same_kind) > 1 else "")


def write_figures(spec, table: SpecTable, collection: Collection, out_dir: Path, suffix: str = "",
                  error_labels: dict[str, float] | None = None) -> list[Path]:
    """Draw and save every figure of `spec`, each stamped with what its runs are, as
    <spec>_<kind><suffix> (`suffix`: the profile's, `experiments.profiles.Profile.suffix`); returns the
    files written."""
    written = []
    for index, spec_fig in enumerate(spec.figures):
        draw = DRAWERS[spec_fig.kind]
        fig = draw(spec_fig, table, collection, error_labels) if spec_fig.kind == "timing_bars" \
            else draw(spec_fig, table, collection)
        stamp(fig, table.description)
        written += save(fig, out_dir, figure_stem(spec.name, index, spec_fig, spec.figures) + suffix)
    return written


def stamp(fig, text: str) -> None:
    """What the figure's runs are (profile, data, device, precision), in small grey print under
    everything the figure draws, so it never covers a title, a legend or a tick label; saving with a
    tight bounding box keeps it in the file."""
    fig.canvas.draw()  # runs the layout: the stamp goes under where everything ends up
    fig.set_layout_engine("none")  # and freezes it: a tight save would lay out again in a taller figure
    renderer = fig.canvas.get_renderer()
    for legend in fig.legends:  # pinned where they are: they anchor to the figure's box, which a tight save grows
        legend.set_bbox_to_anchor(legend.get_window_extent(renderer).transformed(fig.transFigure.inverted()),
                                  transform=fig.transFigure)
        legend.set_loc("center")
    drawn = fig.get_tightbbox(renderer)  # inches
    gap = 0.08
    fig.text(drawn.x0 / fig.get_figwidth(), (drawn.y0 - gap) / fig.get_figheight(), text,
             fontsize=STAMP_FONTSIZE, color="0.35", ha="left", va="top", wrap=True, gid="stamp")
