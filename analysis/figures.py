"""The spec's figures, drawn with seaborn from the collected runs and the table's cells.

Five kinds (a spec's ``[[figures]]``):

- ``pointplot``: the table's metric by one factor (``x``), every finished seed a dot, our median a bar
  marker and the paper's value a red cross; one panel per value of ``panel``.
- ``curves``: Figures 2 and 3 as the paper draws them: per panel, test error solid on the right axis
  and training loss dashed on the left, one line per network (median over its finished seeds per
  epoch), the legend naming the network and its final error.
- ``timing_bars``: Figure 4: time per minibatch (ms), our bar next to the paper's, the time on top of
  each bar and, where the run store has them, each network's CIFAR-10 test error beside it.
- ``error_vs_params``: Table 4's test error against parameter count, ours filled, the paper's hollow.
- ``differences``: an ablation's comparisons (`analysis.tables.compare_to_baseline`): each row's
  difference from its baseline with its 95 % interval, coloured by verdict, over the band of
  differences its seeds could not have resolved; one panel per table column.

Every figure is written as PNG and PDF; the draw functions return the matplotlib Figure so tests can
check its artists. Only finished runs are drawn (the tables list the others).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window: before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from scipy.stats import norm  # noqa: E402

from analysis import stats  # noqa: E402
from analysis.collect import FINISHED, Collection  # noqa: E402
from analysis.tables import SpecTable, display_name, display_value  # noqa: E402
from experiments.spec import matches  # noqa: E402
from wrn.config import RunConfig  # noqa: E402
from wrn.files import atomic_write  # noqa: E402

PAPER_COLOR = "#d62728"
FORMATS = ("png", "pdf")


# ------------------------------------------------------------------------------------------ helpers
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
                              for cfg in (configs.get(i) for i in frame.index)], index=frame.index)
            out.append((panel.title, mask))
        return out
    if fig_spec.panel and fig_spec.panel in frame.columns:
        values = [v for v in dict.fromkeys(order) if v is not None and v == v]
        return [(display_value(fig_spec.panel, v), frame[fig_spec.panel] == v) for v in values]
    return [("", pd.Series(True, index=frame.index))]


def _title(fig, spec_fig, table: SpecTable) -> None:
    fig.suptitle("\n".join(filter(None, [spec_fig.title or table.title, table.caveat])))


def _no_runs_note(ax, n: int) -> None:
    if n == 0:
        ax.text(0.5, 0.5, "no finished runs yet", transform=ax.transAxes, ha="center", va="center",
                color="0.4", fontsize=11)


def _run_cells(table: SpecTable) -> pd.DataFrame:
    """The table's cells of networks the spec trains (not other papers' reference rows)."""
    cells = table.cells
    return cells[cells["method"].fillna("") == ""] if len(cells) else cells


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write `fig` as <stem>.png and <stem>.pdf atomically; close it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [atomic_write(out_dir / f"{stem}.{fmt}",
                            lambda handle, fmt=fmt: fig.savefig(handle, format=fmt, dpi=150, bbox_inches="tight"),
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
def pointplot(spec_fig, table: SpecTable, collection: Collection):
    """Test error (the figure's metric) by factor: seeds as dots, our median, the paper's value."""
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
    hue_palette = {name: f"C{i}" for i, name in enumerate(hue_labels)}
    fig, axes = plt.subplots(1, len(cell_panels), figsize=(max(4.5, 1.1 * len(cells) / max(1, len(cell_panels)) + 2.5) * len(cell_panels), 4.2),
                             squeeze=False, sharey=False)
    for ax, (title, cell_mask) in zip(axes[0], cell_panels, strict=True):
        panel_cells = cells[cell_mask]
        order = [display_value(x, v) for v in dict.fromkeys(panel_cells[x])] if x in panel_cells else []
        runs = finished[run_panels.get(title, pd.Series(True, index=finished.index))] if len(finished) else finished
        data = pd.DataFrame({"x": [display_value(x, v) for v in runs[x]], "y": runs[metric].astype(float)}) \
            if len(runs) else pd.DataFrame({"x": [], "y": []})
        if spec_fig.hue and len(runs):
            data["hue"] = [f"{display_name(spec_fig.hue)} {display_value(spec_fig.hue, v) or 'none'}" for v in runs[spec_fig.hue]]
        if len(data):
            hue_args = dict(hue="hue", hue_order=hue_labels, palette=hue_palette) if "hue" in data else dict(color="C0")
            sns.stripplot(data=data, x="x", y="y", order=order, ax=ax, jitter=0.15, size=5, alpha=0.8,
                          legend=False, **hue_args)
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
        ax.tick_params(axis="x", rotation=30 if max((len(o) for o in order), default=0) > 8 else 0)
        _no_runs_note(ax, len(runs))
    handles = [Line2D([], [], marker="o", color=color, linestyle="none", label=f"our runs, {name}")
               for name, color in hue_palette.items()] or \
        [Line2D([], [], marker="o", color="C0", linestyle="none", label="our runs (one dot per seed)")]
    handles += [
               Line2D([], [], marker="_", markersize=14, color="black", linestyle="none", label="our median")]
    if table.has_paper:
        handles.append(Line2D([], [], marker="X", color=PAPER_COLOR, linestyle="none",
                              label="paper, ±95 % of its seed noise"))
    axes[0][-1].legend(handles=handles, loc="best", fontsize=8)
    _title(fig, spec_fig, table)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- curves
def curves(spec_fig, table: SpecTable, collection: Collection):
    """Figures 2 and 3: per panel, test error (solid, right axis) and training loss (dashed, left
    axis) per epoch, one line of each per network (median over its finished seeds)."""
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
    finals = {(c["label"], c.get(spec_fig.panel) if spec_fig.panel else None): (c["median"], c["paper"])
              for _, c in cells.iterrows()}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, mask) in zip(axes[0], panels, strict=True):
        error_ax = ax.twinx()
        data = epochs[mask] if len(epochs) else epochs
        handles = []
        for name in [n for n in names if len(data) and n in set(data[hue])]:
            per_epoch = data[data[hue] == name].groupby("epoch")[["train_loss", "test_error"]].median()
            color = palette[name]
            ax.plot(per_epoch.index, per_epoch["train_loss"], linestyle="--", color=color, label=f"{name} training loss")
            error_ax.plot(per_epoch.index, per_epoch["test_error"], linestyle="-", color=color, label=f"{name} test error")
            panel_value = data[spec_fig.panel].iat[0] if spec_fig.panel else None
            ours, paper = finals.get((name, panel_value), (np.nan, np.nan))
            text = f"{name} (error {ours:.2f}%" if np.isfinite(ours) else f"{name} ("
            text += (f"; paper {paper:.2f}%)" if np.isfinite(ours) else f"paper {paper:.2f}%)") if np.isfinite(paper) \
                else (")" if np.isfinite(ours) else "no final error)")
            handles.append(Line2D([], [], color=color, label=text))
        if len(data) and (data.get("dataset") == "svhn").all() and (data["train_loss"] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("training loss (dashed)")
        error_ax.set_ylabel("test error (%) (solid)")
        ax.set_title(title)
        _no_runs_note(ax, len(data))
        if handles:
            handles += [Line2D([], [], color="0.3", linestyle="-", label="test error (right)"),
                        Line2D([], [], color="0.3", linestyle="--", label="training loss (left)")]
            error_ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.85)
    _title(fig, spec_fig, table)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------------- timing_bars
def timing_bars(spec_fig, table: SpecTable, collection: Collection, error_labels: dict[str, float] | None = None):
    """Figure 4: time per minibatch (ms) per network, ours next to the paper's, times on top of the
    bars and the network's CIFAR-10 test error (from the run store, when known) beside them."""
    metric = spec_fig.metric or table.metric
    cells = _run_cells(table)
    order = list(dict.fromkeys(cells["label"])) if len(cells) else []
    rows = []
    for _, cell in cells.iterrows():
        rows.append({"network": cell["label"], "source": "ours (median)", "ms": cell["median"]})
        if table.has_paper:
            rows.append({"network": cell["label"], "source": "paper (Titan X)", "ms": cell["paper"]})
    data = pd.DataFrame(rows, columns=["network", "source", "ms"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(order) + 2), 4.4))
    if len(data):
        sns.barplot(data=data, x="network", y="ms", hue="source", order=order, ax=ax,
                    palette={"ours (median)": "C0", "paper (Titan X)": "0.75"})
        for container in ax.containers:
            ax.bar_label(container, fmt="%.0f", fontsize=8, padding=2)
    labels = error_labels or {}
    for i, name in enumerate(order):
        if name in labels:
            ax.text(i - 0.2, 0, f" {labels[name]:.2f}%", rotation=90, ha="center", va="bottom", fontsize=8,
                    bbox=dict(facecolor="white", alpha=0.7, linewidth=0))  # on our bar (hues dodge to ±0.2)
    ax.set_xlabel("network (depth-k)")
    ax.set_ylabel(table.metric_label if metric == table.metric else display_name(metric))
    ax.tick_params(axis="x", rotation=20)
    _no_runs_note(ax, int(cells["n"].sum()) if len(cells) else 0)
    hidden = [n for n in cells["notes"] if "not compared" in str(n)] if len(cells) else []
    if hidden:
        ax.text(0.0, 1.02, f"ours: {table.metric_label}; the paper's bars, of another minibatch, are not drawn",
                transform=ax.transAxes, fontsize=8, color="0.3")
    if labels:
        ax.text(0.0, -0.45, "numbers inside bars: our CIFAR-10 test error (median of finished runs)",
                transform=ax.transAxes, fontsize=8, color="0.3")
    _title(fig, spec_fig, table)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- error_vs_params
def error_vs_params(spec_fig, table: SpecTable, collection: Collection):
    """Test error against parameter count: our medians filled, the paper's hollow, each named."""
    metric = spec_fig.metric or table.metric
    cells = _run_cells(table).copy()
    cell_configs = dict(zip(cells.index, cells["config"], strict=True)) if len(cells) else {}
    panel_order = list(cells[spec_fig.panel]) if spec_fig.panel and spec_fig.panel in cells else []
    panels = _panels(spec_fig, cells, cell_configs, panel_order)
    hue = spec_fig.hue
    hue_values = list(dict.fromkeys(cells[hue])) if hue and hue in cells else [None]
    palette = dict(zip(hue_values, sns.color_palette("viridis", max(1, len(hue_values))), strict=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (title, mask) in zip(axes[0], panels, strict=True):
        panel = cells[mask]
        for _, cell in panel.iterrows():
            color = palette.get(cell[hue] if hue else None, "C0")
            params = cell["params"] if "params" in cell and np.isfinite(cell["params"]) else np.nan
            paper_params = cell.get("paper_params", np.nan)
            if np.isfinite(cell["median"]) and np.isfinite(params):
                ax.scatter(params / 1e6, cell["median"], color=color, s=40, zorder=3)
                ax.annotate(cell["label"], (params / 1e6, cell["median"]), textcoords="offset points",
                            xytext=(4, 3), fontsize=7)
            if np.isfinite(cell["paper"]) and np.isfinite(paper_params):
                ax.scatter(paper_params / 1e6, cell["paper"], facecolors="none", edgecolors=color, s=40, zorder=3)
                if not np.isfinite(cell["median"]):
                    ax.annotate(cell["label"], (paper_params / 1e6, cell["paper"]), textcoords="offset points",
                                xytext=(4, 3), fontsize=7, color="0.4")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (millions, log scale)")
        ax.set_ylabel(display_name(metric))
        ax.set_title(title)
        _no_runs_note(ax, int(panel["n"].sum()) if len(panel) else 0)
    handles = [Line2D([], [], marker="o", color="0.3", linestyle="none", label="ours (median)")]
    if table.has_paper:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none", color="0.3", linestyle="none", label="paper"))
    if hue:
        handles += [Line2D([], [], marker="o", color=palette[v], linestyle="none",
                           label=f"{display_name(hue)} {display_value(hue, v)}") for v in hue_values]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="best")
    _title(fig, spec_fig, table)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ differences
VERDICT_COLORS = {stats.HIGHER: "#d62728", stats.LOWER: "#1f77b4", stats.SUPPORTED: "#2ca02c",
                  stats.CONTRADICTED: "#d62728"}


def differences(spec_fig, table: SpecTable, collection: Collection):
    """Each comparison with the baseline: the difference and its 95 % interval, red or blue where the
    seeds resolve it (grey where not), over a grey band of ± the smallest difference they resolve with
    80 % power. Rows are named as the table names them (the deviation, or the network)."""
    comps = table.comparisons
    column = table.column_field
    panels = list(dict.fromkeys(comps[column])) if column and len(comps) else [None]
    rows = max(1, len(comps) // max(1, len(panels)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 2.5, 0.42 * rows + 1.6), sharey=True,
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        part = comps if panel is None else comps[comps[column] == panel]
        names = list(part["deviation"] if "deviation" in part else part["label"])
        y = np.arange(len(part))[::-1]
        for yi, (_, row) in zip(y, part.iterrows()):
            color = VERDICT_COLORS.get(row["verdict"], "0.45")
            if np.isfinite(row["ci_low"]):
                ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color=color, linewidth=2)
            ax.plot([row["diff"]], [yi], marker="o", color=color)
            if np.isfinite(row["detectable"]):
                ax.fill_betweenx([yi - 0.4, yi + 0.4], -row["detectable"], row["detectable"], color="0.92", zorder=0)
        ax.axvline(0.0, color="0.3", linewidth=0.8)
        ax.set_yticks(y, names)
        ax.set_xlabel(f"Δ {display_name(table.metric)} vs the baseline")
        ax.set_title(display_value(column, panel) if panel is not None else "")
        _no_runs_note(ax, len(part))
    handles = [Line2D([], [], marker="o", color=c, label=f"{v}: resolved by the seeds")
               for v, c in ((stats.HIGHER, VERDICT_COLORS[stats.HIGHER]), (stats.LOWER, VERDICT_COLORS[stats.LOWER]))]
    handles.append(Line2D([], [], marker="o", color="0.45", label="not resolved (grey band: ± what the seeds resolve)"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    _title(fig, spec_fig, table)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
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
    """What the figure's runs are, in small grey print under it."""
    fig.text(0.01, -0.02, text, fontsize=7, color="0.35", ha="left", va="top", wrap=True)
