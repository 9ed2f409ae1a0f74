"""The official training logs: the transcription, which networks they match, the stage comparison in
the table and the report, and the curves they add to a figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fabricate import write_run  # noqa: E402

from analysis import figures  # noqa: E402
from analysis.collect import collect_spec  # noqa: E402
from analysis.reference_logs import LOGS_CSV, matching_log, official_logs, stage_comparisons  # noqa: E402
from analysis.tables import build_table, to_markdown  # noqa: E402
from experiments.plan import expand  # noqa: E402
from experiments.spec import load_spec  # noqa: E402
from wrn.config import RunConfig, resolve  # noqa: E402
from wrn.names import render_label  # noqa: E402

WRN_40_4 = dict(dataset="cifar10", depth=40, k=4, preprocessing="zca", recipe="v1-2016-05", dropout=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_the_transcribed_logs_are_whole_200_epoch_runs_with_the_published_finals():
    frame = pd.read_csv(LOGS_CSV)
    assert frame["source"].str.fullmatch(r"szagoruyko/wide-residual-networks:logs/[\w-]+/log\.txt@1e3deaa").all()
    logs = {log.name: log for log in official_logs()}
    assert sorted(logs) == ["preact-resnet-164", "wrn-40-4"]
    for log in logs.values():
        assert list(log.curve["epoch"]) == list(range(1, 201))
        assert log.curve[["test_error", "train_loss", "lr", "epoch_time_s"]].notna().all().all()
        assert log.stage_ends() == [59, 119, 159, 200]
        assert (log.curve["test_error"].between(0, 100)).all() and (log.curve["train_loss"] > 0).all()
    assert logs["wrn-40-4"].final_error == 5.11 and logs["preact-resnet-164"].final_error == 5.75


@pytest.mark.parametrize("log", official_logs(), ids=lambda log: log.name)
def test_the_schedule_of_the_logs_recipe_gives_every_epochs_logged_rate(log):
    label, dataset, preprocessing, recipe = log.keys
    network = dict(depth=40, k=4) if label == "WRN-40-4" else dict(arch="preact_resnet", depth=164, k=1)
    cfg = resolve(RunConfig(dataset=dataset, preprocessing=preprocessing, recipe=recipe, **network))
    assert render_label(cfg) == label and cfg.epochs == log.epochs
    assert [cfg.lr_at(e) for e in log.curve["epoch"]] == pytest.approx(list(log.curve["lr"]), rel=1e-9)


@pytest.mark.parametrize("profile", ["paper", "smoke"])
@pytest.mark.parametrize("spec_name, label", [("table_width", "WRN-40-4"), ("table_comparison", "preact-ResNet-164")])
def test_a_shipped_spec_trains_the_counterpart_of_each_log(spec_name, label, profile):
    """A log no spec matches would never be drawn: each is matched by a network of the spec, under the
    paper profile and the smoke one (whose figure shows it as the reference line)."""
    matched = [r for r in expand(load_spec(spec_name), profile)
               if matching_log(render_label(r.config), r.config.dataset, r.config.preprocessing, r.config.recipe)]
    assert [render_label(r.config) for r in matched] == [label] * len({r.config.seed for r in matched}) != []


def test_a_log_matches_only_the_same_network_data_and_recipe():
    assert matching_log("WRN-40-4", "cifar10", "zca", "v1-2016-05").name == "wrn-40-4"
    assert matching_log("WRN-40-4", "cifar10", "meanstd", "v1-2016-05") is None
    assert matching_log("WRN-40-4", "cifar10", "zca", "official-current") is None
    assert matching_log("WRN-40-4", "cifar100", "zca", "v1-2016-05") is None
    assert matching_log("WRN-40-2", "cifar10", "zca", "v1-2016-05") is None


def _table_width(tmp_path, runs):
    spec = load_spec("table_width")
    for cfg, kwargs in runs:
        write_run(tmp_path, "table_width", cfg, **kwargs)
    collection = collect_spec(spec, tmp_path)
    return spec, build_table(spec, collection), collection


def test_the_table_compares_the_median_of_our_finished_runs_at_each_stage_end(tmp_path):
    runs = [(dict(WRN_40_4, seed=s), dict(test_error=e, epochs=200)) for s, e in ((0, 4.9), (1, 5.3), (2, 5.0))]
    runs += [(dict(WRN_40_4, seed=3), dict(state="diverged", test_error=50.0, epochs=200)),
             (dict(WRN_40_4, seed=0, data_source="synthetic:512:256"), dict(test_error=90.0, epochs=200)),
             (dict(WRN_40_4, seed=0, epochs=10, lr_milestones=(5,)), dict(test_error=70.0, epochs=10))]
    _, table, collection = _table_width(tmp_path, runs)
    (comparison,) = stage_comparisons(collection.epochs)
    assert comparison.runs == 3 and [p[0] for p in comparison.points] == [59, 119, 159, 200]
    log = comparison.log.curve.set_index("epoch")["test_error"]
    ours_at_200 = comparison.points[-1]
    assert ours_at_200 == (200, pytest.approx(5.0), 5.11) and comparison.points[0][2] == log[59]
    (sentence,) = table.official_logs
    assert sentence.startswith("WRN-40-4 (cifar10, zca, recipe v1-2016-05) against the official log "
                               "(szagoruyko/wide-residual-networks:logs/wide-resnet_1121914561/log.txt@1e3deaa")
    assert "median of 3 runs" in sentence and "epoch 200: ours 5.00 vs 5.11 (-0.11)" in sentence
    markdown = to_markdown(table)
    assert "### Against the official training logs" in markdown and f"- {sentence}" in markdown


def test_networks_without_a_log_get_no_comparison(tmp_path):
    _, table, collection = _table_width(tmp_path, [(dict(WRN_40_4, k=2), dict(epochs=200))])
    assert stage_comparisons(collection.epochs) == [] and table.official_logs == []
    assert "official training logs" not in to_markdown(table)


def test_the_curves_figure_draws_the_log_thin_beside_our_network(tmp_path):
    spec, table, collection = _table_width(tmp_path, [(dict(WRN_40_4, seed=s), dict(test_error=5.0, epochs=200))
                                                      for s in (0, 1)])
    fig = figures.curves(spec.figures[0], table, collection)
    ours = [line for ax in fig.axes for line in ax.get_lines() if line.get_gid() is None]
    logs = [line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == figures.OFFICIAL_LOG]
    assert sorted(line.get_label() for line in logs) == ["WRN-40-4 official log test error",
                                                         "WRN-40-4 official log training loss"]
    error = next(line for line in logs if line.get_label().endswith("test error"))
    assert list(error.get_ydata()) == list(matching_log("WRN-40-4", "cifar10", "zca", "v1-2016-05").curve["test_error"])
    assert all(line.get_linewidth() < ours[0].get_linewidth() for line in logs)
    assert {line.get_color() for line in logs} == {ours[0].get_color()}
    (legend,) = figures.legends(fig)
    assert ("thin: WRN-40-4, official log (szagoruyko/wide-residual-networks:logs/wide-resnet_1121914561/"
            "log.txt@1e3deaa, 5.11% at epoch 200)") in [t.get_text() for t in legend.get_texts()]


def test_the_smoke_profile_draws_the_log_as_its_reference_line_and_compares_nothing(tmp_path):
    """Two epochs on generated data beside the log's 200: the line is there, the numbers are not set
    against it."""
    spec = load_spec("table_width")
    for planned in expand(spec, "smoke"):
        write_run(tmp_path / "smoke", spec.name, planned.config, epochs=2, profile="smoke")
    collection = collect_spec(spec, tmp_path / "smoke", "smoke")
    table = build_table(spec, collection)
    fig = figures.curves(spec.figures[0], table, collection)
    logs = [line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == figures.OFFICIAL_LOG]
    assert len(logs) == 2 and max(logs[0].get_xdata()) == 200
    assert table.official_logs == [] and stage_comparisons(collection.epochs) == []
