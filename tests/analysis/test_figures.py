import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
import pytest  # noqa: E402
from fabricate import write_run  # noqa: E402

from analysis import figures, stats  # noqa: E402
from analysis.collect import collect_spec  # noqa: E402
from analysis.figures import (curves, differences, error_vs_params, pointplot, timing_bars,  # noqa: E402
                              write_figures)
from analysis.figures import files as figure_files  # noqa: E402
from analysis.tables import build_table  # noqa: E402
from experiments.plan import expand  # noqa: E402
from experiments.spec import FIGURE_KINDS, load_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _figure(spec, kind):
    return next(f for f in spec.figures if f.kind == kind)


def _setup(tmp_path, name, runs):
    spec = load_spec(name)
    for cfg, kwargs in runs:
        write_run(tmp_path, name, cfg, **kwargs)
    collection = collect_spec(spec, tmp_path)
    return spec, build_table(spec, collection), collection


def test_curves_have_one_solid_and_one_dashed_line_per_network_per_panel(tmp_path):
    runs = [(dict(dataset=d, preprocessing="meanstd", **net), dict(test_error=e, epochs=5))
            for d in ("cifar10", "cifar100")
            for net, e in ((dict(arch="preact_resnet", depth=164, k=1), 5.5), (dict(depth=28, k=10), 4.1))]
    runs.append((dict(dataset="cifar10", preprocessing="meanstd", depth=28, k=10, seed=1), dict(state="diverged")))
    spec, table, collection = _setup(tmp_path, "figure_curves", runs)
    fig = curves(spec.figures[0], table, collection)
    loss_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("training loss")]
    error_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("test error (%)")]
    assert len(loss_axes) == len(error_axes) == 2
    assert [ax.get_title() for ax in loss_axes] == ["CIFAR-10", "CIFAR-100"]
    for loss_ax, error_ax in zip(loss_axes, error_axes, strict=True):
        assert loss_ax.get_xlabel() == "epoch"
        assert sorted(line.get_linestyle() for line in loss_ax.get_lines()) == ["--", "--"]
        assert sorted(line.get_linestyle() for line in error_ax.get_lines()) == ["-", "-"]
        assert {line.get_label() for line in error_ax.get_lines()} == {
            "preact-ResNet-164 test error", "WRN-28-10 test error"}
    (legend,) = figures.legends(fig)  # one legend for both panels, each network's final error per panel
    assert "WRN-28-10 (CIFAR-10: ours 4.10%, paper 4.00%; CIFAR-100: ours 4.10%, paper 19.25%)" in [
        t.get_text() for t in legend.get_texts()]
    # the diverged seed is not drawn: the finished run's 5 epochs and its final error
    line = next(line for line in error_axes[0].get_lines() if line.get_label() == "WRN-28-10 test error")
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5] and line.get_ydata()[-1] == 4.1


def test_curves_panels_can_be_hand_picked(tmp_path):
    svhn = dict(dataset="svhn", recipe="v1-2016-05")  # the SVHN column's era
    runs = [(dict(svhn, depth=16, k=4), {}), (dict(svhn, depth=16, k=4, dropout=True), {}), (dict(svhn, depth=52, k=1), {})]
    spec, table, collection = _setup(tmp_path, "figure_svhn", runs)
    fig = curves(spec.figures[0], table, collection)
    error_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("test error")]
    assert [len(ax.get_lines()) for ax in error_axes] == [2, 2]
    assert {line.get_label() for line in error_axes[1].get_lines()} == {
        "WRN-16-4 test error", "WRN-16-4-dropout test error"}


def test_pointplot_shows_every_seed_our_median_and_the_paper(tmp_path):
    runs = [(dict(dataset="cifar10", depth=40, k=2, block=b, depth_convention="true", preprocessing="zca", recipe="v1-2016-05", bn_init="ones", seed=s),
             dict(test_error=5.0 + s / 10)) for b in ("B(3)", "B(3,3)") for s in range(3)]
    spec, table, collection = _setup(tmp_path, "table_deepening", runs)
    fig = pointplot(spec.figures[0], table, collection)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "block type" and ax.get_ylabel() == "test error (%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["B(3)", "B(3,3)", "B(3,3,3)", "B(3,3,3,3)"]
    dots = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    assert dots == 6
    paper = [line for line in ax.get_lines() if line.get_marker() == "X"]
    assert sorted(float(line.get_ydata()[0]) for line in paper) == [5.43, 5.65, 5.93, 6.69]
    # the paper's value carries the band of its own seed noise: a median of 5 runs at the table's σ
    bands = [c for c in ax.collections if isinstance(c, LineCollection)]
    cell = table.cells.iloc[0]
    half = 1.96 * cell["sigma"] * math.sqrt(stats.median_variance_factor(5))
    assert len(bands) == 4 and all(np.diff(seg[:, 1])[0] == pytest.approx(2 * half, rel=1e-3)
                                   for band in bands for seg in band.get_segments())


def test_timing_bars_and_error_vs_params(tmp_path):
    runs = [(dict(dataset="cifar10", depth=40, k=4, batch_size=32), dict(timing={"ms_median": 70.0}))]
    spec, table, collection = _setup(tmp_path, "figure_timing", runs)
    fig = timing_bars(spec.figures[0], table, collection, {"WRN-40-4": 4.6})
    ax, ratio_ax = fig.axes
    assert ax.get_title() == "time per minibatch of 32 (ms)" and ax.get_yscale() == "log"
    heights = sorted(round(bar.get_height()) for container in ax.containers for bar in container
                     if np.isfinite(bar.get_height()) and bar.get_height() > 0)
    assert heights == [68, 70, 85, 164, 312, 512]  # ours (one network timed) and the paper's five
    assert "WRN-40-4\n4.60% error" in [t.get_text() for t in ax.get_xticklabels()]
    # the ratios to the first network both of ours and the paper's have: WRN-40-4's
    ratios = sorted(round(bar.get_height(), 2) for container in ratio_ax.containers for bar in container
                    if np.isfinite(bar.get_height()))
    assert ratios == [1.0, 1.0, 1.25, 2.41, 4.59, 7.53]
    assert ratio_ax.get_title().startswith("time ÷ WRN-40-4's")

    runs = [(dict(dataset=d, depth=40, k=k, preprocessing="zca", recipe="v1-2016-05"), dict(params=p, test_error=e))
            for d in ("cifar10", "cifar100") for k, p, e in ((1, 566_650, 7.0), (4, 8_952_570, 5.0))]
    spec, table, collection = _setup(tmp_path / "w", "table_width", runs)
    fig = error_vs_params(_figure(spec, "error_vs_params"), table, collection)
    assert [ax.get_title() for ax in fig.axes] == ["CIFAR-10", "CIFAR-100"]
    assert fig.axes[0].get_xscale() == "log" and "parameters" in fig.axes[0].get_xlabel()


def test_write_figures_writes_png_and_pdf(tmp_path):
    runs = [(dict(dataset="cifar10", depth=40, k=2, block="B(3,3)", depth_convention="true", preprocessing="zca", recipe="v1-2016-05", bn_init="ones"), {})]
    spec, table, collection = _setup(tmp_path, "table_deepening", runs)
    written = write_figures(spec, table, collection, tmp_path / "figures")
    assert [p.name for p in written] == ["table_deepening_pointplot.png", "table_deepening_pointplot.pdf"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_timing_bars_at_another_minibatch_say_so_and_draw_no_paper_bars(tmp_path):
    spec = load_spec("figure_timing")
    for planned in expand(spec, "smoke"):
        write_run(tmp_path, spec.name, planned.config, timing={"ms_median": 30.0}, profile="smoke")
    collection = collect_spec(spec, tmp_path, "smoke")
    table = build_table(spec, collection)
    fig = timing_bars(spec.figures[0], table, collection)
    ax = fig.axes[0]
    assert ax.get_title() == "time per minibatch of 16 (ms)"
    heights = [round(bar.get_height()) for container in ax.containers for bar in container
               if np.isfinite(bar.get_height()) and bar.get_height() > 0]
    assert heights == [30] * 5  # ours only
    assert "minibatches of 16, not the paper's 32" in " ".join(fig._suptitle.get_text().split())


def test_a_spec_without_paper_numbers_has_no_paper_in_its_legend(tmp_path):
    spec_path = tmp_path / "mine.toml"
    spec_path.write_text((REPO / "experiments" / "specs" / "table_deepening.toml").read_text()
                         .replace('name = "table_deepening"', 'name = "mine"')
                         .replace('paper_results = "results/paper/table_deepening.csv"\n', ""))
    spec = load_spec(spec_path)
    assert spec.paper_results is None
    runs = [dict(dataset="cifar10", depth=40, k=2, block=b, depth_convention="true", preprocessing="zca", recipe="v1-2016-05", bn_init="ones")
            for b in ("B(3)", "B(3,3)")]
    for cfg in runs:
        write_run(tmp_path, spec.name, cfg)
    collection = collect_spec(spec, tmp_path)
    table = build_table(spec, collection)
    fig = pointplot(spec.figures[0], table, collection)
    legend = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else \
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend and not [t for t in legend if "paper" in t]
    assert not [line for line in fig.axes[0].get_lines() if line.get_marker() == "X"]


def test_every_figure_is_stamped_with_what_its_runs_are(tmp_path, monkeypatch):
    spec = load_spec("table_block_type")
    for planned in expand(spec, "smoke"):
        write_run(tmp_path, spec.name, planned.config, profile="smoke")
    collection = collect_spec(spec, tmp_path, "smoke")
    saved = []
    monkeypatch.setattr(figure_files, "save", lambda fig, out_dir, stem: saved.append((stem, fig)) or [])
    figures.write_figures(spec, build_table(spec, collection), collection, tmp_path / "figures", ".smoke")
    (stem, fig), = saved
    assert stem == "table_block_type_pointplot.smoke"
    assert "profile smoke (generated data, 64 training and 32 test images), on cpu: cpu, fp32, recipe v1-2016-05" in [
        t.get_text() for t in fig.texts]


def test_differences_draw_each_comparison_with_its_interval_by_verdict(tmp_path):
    """The deviations spec's figure: a row per deviation (and the best-epoch row), the difference and
    its interval, red where the seeds resolve a rise, grey where they resolve nothing."""
    spec = load_spec("deviations")
    noise = np.random.default_rng(1)
    for planned in expand(spec, "paper", seeds=3):
        cfg = planned.config
        if cfg.depth == 16:
            shift = 1.0 if cfg.precision == "bf16" else 0.0
            write_run(tmp_path, spec.name, cfg, test_error=5.0 + shift + float(noise.normal(0, 0.1)), dip=0.4)
    collection = collect_spec(spec, tmp_path)
    table = build_table(spec, collection)
    fig = differences(spec.figures[0], table, collection)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "precision = bf16" and labels[-1] == "best test epoch reported, not the final one"
    assert len(labels) == 17 and ax.get_title() == "WRN-16-4"
    points = {line.get_color(): line for line in ax.get_lines() if line.get_marker() in ("o", "^", "v")}
    assert points["#d62728"].get_marker() == "^"  # a resolved rise: red and pointing up
    assert points["#d62728"].get_xdata()[0] == pytest.approx(table.comparisons.set_index("deviation").at[
        "precision = bf16", "diff"])


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """name -> (spec, table, collection) of a shipped spec whose every network ran once under the smoke
    profile, fabricated once per module."""
    made = {}

    def runs(name):
        if name not in made:
            results = tmp_path_factory.mktemp(name)
            spec = load_spec(name)
            for planned in expand(spec, "smoke"):
                timing = {"ms_median": 30.0 + planned.config.depth} if spec.kind == "timing" else None
                write_run(results, spec.name, planned.config, profile="smoke", timing=timing,
                          test_error=90.0 - planned.config.k)
            collection = collect_spec(spec, results, "smoke")
            made[name] = (spec, build_table(spec, collection), collection)
        return made[name]
    return runs


def _extent(artist, renderer):
    return artist.get_window_extent(renderer)


def test_multi_panel_figures_wrap_with_one_legend_outside_the_data(smoke_runs):
    """Table 6's three panels (dropout by dataset) wrap into two columns, not a 6:1 strip, and share
    one legend, which lies in no panel."""
    spec, table, collection = smoke_runs("table_dropout")
    fig = pointplot(spec.figures[0], table, collection)
    width, height = fig.get_size_inches()
    assert width <= 13.5 and width / height <= 2.0
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["CIFAR-10", "CIFAR-100", "SVHN"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    columns = {round(_extent(ax, renderer).x0) for ax in panels}
    assert len(columns) == 2  # two columns, two rows
    (legend,) = figures.legends(fig)
    assert not any(_extent(legend, renderer).overlaps(_extent(ax, renderer)) for ax in panels)
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 9
    assert min(label.get_fontsize() for ax in panels for label in ax.get_xticklabels()) >= 10


def _set_losses(tmp_path, losses):
    """Give every fabricated run's epochs the training losses `losses` (one per epoch)."""
    for metrics in Path(tmp_path).glob("runs/*/metrics.jsonl"):
        lines = [json.loads(line) for line in metrics.read_text().splitlines()]
        for line, loss in zip(lines, losses, strict=False):
            line["train_loss"] = loss
        metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _tick_texts(axis):
    return [t.get_text() for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("losses", [[2.2975, 2.291, 2.285, 2.2776], [1.2, 0.3, 0.02, 0.003]],
                         ids=["within-a-decade", "three-decades"])
def test_log_axes_have_plain_tick_labels(tmp_path, losses):
    """Figure 3's log loss axis reads 2.28, 2.29 (not 2.28×10⁰) and 0.01, 0.1, 1 (not 10⁻²)."""
    runs = [(dict(dataset="svhn", recipe="v1-2016-05", depth=d, k=k), dict(epochs=4)) for d, k in ((16, 4), (52, 1))]
    spec, table, collection = _setup(tmp_path, "figure_svhn", runs)
    _set_losses(tmp_path, losses)
    collection = collect_spec(spec, tmp_path)
    fig = curves(spec.figures[0], table, collection)
    fig.canvas.draw()
    loss_ax = next(ax for ax in fig.axes if ax.get_ylabel().startswith("training loss"))
    assert loss_ax.get_yscale() == "log"
    labels = _tick_texts(loss_ax.yaxis)
    assert len(labels) >= 3
    assert all(float(label) > 0 for label in labels)  # plain numbers: no ×10, no mathtext
    assert not [label for label in labels if "×" in label or "$" in label or "10^" in label]


def test_timing_and_parameter_axes_are_log_scaled_with_plain_labels(tmp_path):
    """Figure 4's CPU seconds and the paper's Titan X milliseconds on one log axis, labelled in plain
    milliseconds; Table 4's parameter axis in plain millions."""
    runs = [(dict(dataset="cifar10", arch="preact_resnet", depth=1001, k=1, batch_size=32), dict(timing={"ms_median": 40_000.0}))]
    spec, table, collection = _setup(tmp_path, "figure_timing", runs)
    fig = timing_bars(spec.figures[0], table, collection)
    fig.canvas.draw()
    labels = _tick_texts(fig.axes[0].yaxis)
    assert fig.axes[0].get_yscale() == "log" and {"100", "1000", "10000"} <= set(labels)
    assert all(float(label) > 0 for label in labels)

    runs = [(dict(dataset="cifar10", depth=40, k=k, preprocessing="zca", recipe="v1-2016-05"), dict(params=p))
            for k, p in ((1, 566_650), (10, 55_846_842))]
    spec, table, collection = _setup(tmp_path / "w", "table_width", runs)
    fig = error_vs_params(_figure(spec, "error_vs_params"), table, collection)  # drawn once, to place the points' names
    labels = _tick_texts(fig.axes[0].xaxis)
    assert {"1", "10"} <= set(labels) and all(float(label) > 0 for label in labels)


def test_curves_mark_each_learning_rate_drop(tmp_path):
    """The paper schedule's drops (×0.2 from epochs 60, 120 and 160) are dotted lines between the last
    epoch at the old rate and the first at the new, in every panel, and named in the legend."""
    runs = [(dict(dataset=d, preprocessing="meanstd", depth=28, k=10), dict(epochs=200)) for d in ("cifar10", "cifar100")]
    spec, table, collection = _setup(tmp_path, "figure_curves", runs)
    fig = curves(spec.figures[0], table, collection)
    loss_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("training loss")]
    assert len(loss_axes) == 2
    for ax in loss_axes:
        drops = [line for line in ax.get_lines() if line.get_gid() == figures.LR_DROP]
        assert sorted(line.get_xdata()[0] for line in drops) == [59.5, 119.5, 159.5]
        assert all(line.get_linestyle() == ":" for line in drops)
    (legend,) = figures.legends(fig)
    assert "LR ×0.2 from epoch 60, 120, 160" in [t.get_text() for t in legend.get_texts()]


def test_curves_tell_networks_apart_by_marker_as_well_as_colour(tmp_path):
    runs = [(dict(dataset="cifar10", preprocessing="meanstd", **net), dict(epochs=20))
            for net in (dict(arch="preact_resnet", depth=164, k=1), dict(depth=28, k=10))]
    spec, table, collection = _setup(tmp_path, "figure_curves", runs)
    fig = curves(spec.figures[0], table, collection)
    error_ax = next(ax for ax in fig.axes if ax.get_ylabel().startswith("test error"))
    markers = [line.get_marker() for line in error_ax.get_lines()]
    assert len(markers) == 2 and len(set(markers)) == 2 and "None" not in markers


SPEC_OF_KIND = {"pointplot": "table_dropout", "curves": "figure_svhn", "timing_bars": "figure_timing",
                "error_vs_params": "table_width", "differences": "deviations"}


@pytest.mark.parametrize("kind", FIGURE_KINDS)
def test_every_kind_is_stamped_under_everything_it_draws(smoke_runs, tmp_path, monkeypatch, kind):
    """Each figure kind, as written, says its profile, data and device in a stamp that overlaps no
    title, legend, panel or tick label, and keeps a readable aspect."""
    spec, table, collection = smoke_runs(SPEC_OF_KIND[kind])
    kinds = [f.kind for f in spec.figures]
    saved = []
    monkeypatch.setattr(figure_files, "save", lambda fig, out_dir, stem: saved.append(fig) or [])
    figures.write_figures(spec, table, collection, tmp_path / "figures", ".smoke")
    assert len(saved) == len(kinds)
    fig = saved[kinds.index(kind)]
    (stamp,) = [t for t in fig.texts if t.get_gid() == "stamp"]
    assert stamp.get_text() == table.description
    assert "profile smoke (generated data" in stamp.get_text() and "on cpu: cpu, fp32" in stamp.get_text()
    renderer = fig.canvas.get_renderer()  # as the stamp's layout left it
    box = _extent(stamp, renderer)
    others = [fig._suptitle, *figures.legends(fig), *fig.axes,
              *(t for ax in fig.axes for t in (ax.title, ax.xaxis.label, *ax.get_xticklabels()) if t.get_text())]
    assert not [a for a in others if a is not None and box.overlaps(_extent(a, renderer))]
    width, height = fig.get_size_inches()
    assert width <= 14 and 0.5 <= width / height <= 2.6
