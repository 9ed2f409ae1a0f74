"""`analysis.deviations`: a cell is named by what really differs from its baseline, whichever layer
set it, with a changed recipe's implied settings left out; and the deviations spec's table names
every row so, re-reports the baseline by its best epoch, and compares each row with the baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fabricate import write_run

from analysis import deviations, stats
from analysis.collect import collect_spec
from analysis.tables import build_table, to_markdown
from experiments.plan import expand
from experiments.spec import load_spec
from wrn.config import RunConfig, resolve

ERA = dict(dataset="cifar10", depth=16, k=4, preprocessing="zca", recipe="v1-2016-05")


def era(**fields) -> RunConfig:
    return resolve(RunConfig(**{**ERA, **fields}))


@pytest.mark.parametrize("fields, named", [
    ({}, deviations.BASELINE),
    (dict(precision="bf16"), "precision = bf16"),
    (dict(reset_momentum_on_decay=False), "reset_momentum_on_decay = false"),
    (dict(lr_milestones=(61, 121, 161)), "lr_milestones = [61, 121, 161]"),
    (dict(recipe="official-current"), "recipe = official-current"),  # its crops, flips and init implied
    (dict(recipe="official-current", conv_init="fan_out"), "recipe = official-current, conv_init = fan_out"),
    (dict(seed=3), deviations.BASELINE),  # the seed is no setting
])
def test_a_deviation_names_what_differs_from_the_baseline(fields, named):
    assert deviations.describe(era(**fields), era()) == named


def test_blocks_per_group_follows_the_depth_and_is_not_named():
    assert deviations.describe(era(depth=22), era()) == "depth = 22"


@pytest.fixture
def table(tmp_path):
    """The deviations spec with 3 seeds of every WRN-16-4 row: the baseline at 5 % (best epoch 0.4
    below), bf16 at +1 pp, the rest as the baseline; a seed effect of 0.1 pp and run noise of 0.1 pp."""
    spec = load_spec("deviations")
    noise = np.random.default_rng(0)
    for planned in expand(spec, "paper", seeds=3):
        cfg = planned.config
        if cfg.depth != 16:
            continue
        shift = 1.0 if cfg.precision == "bf16" else 0.0
        write_run(tmp_path, spec.name, cfg, test_error=5.0 + shift + 0.1 * cfg.seed + float(noise.normal(0, 0.1)),
                  dip=0.4, precision=cfg.precision)
    return build_table(spec, collect_spec(spec, tmp_path))


def test_the_deviations_table_names_each_row_by_what_it_changes(table):
    names = list(dict.fromkeys(table.cells["deviation"]))
    assert names[0] == deviations.BASELINE and names[-1] == deviations.BEST_EPOCH
    assert names[1:-1] == ["precision = bf16", "tf32 = true", "crop_draw = per_image", "flip_draw = per_image",
                           "conv_init = fan_in", "bn_init = ones", "pad_mode = zeros",
                           "reset_momentum_on_decay = false", "drop_last = false", "nesterov = false",
                           "preprocessing = meanstd", "recipe = official-current", "data_order = shared", "world_size = 2",
                           "world_size = 2, sync_bn = true", "batch_size = 512, lr_scaling = linear, warmup_epochs = 5"]
    markdown = to_markdown(table)
    assert "| deviation | WRN-16-4 ours |" in markdown  # WRN-28-10 not run, and no paper row to show
    assert "### Against the baseline" in markdown and "paper" not in markdown.split("### Against")[1].lower()


def test_each_deviation_is_compared_with_the_baseline_paired_by_seed(table):
    comps = table.comparisons.set_index("deviation")
    bf16 = comps.loc["precision = bf16"]
    assert bf16["paired"] and bf16["n"] == 3 and bf16["diff"] == pytest.approx(1.0, abs=0.3)
    assert bf16["verdict"] == stats.HIGHER  # a 1 pp shift on a 0.01 pp seed spread
    same = comps.loc["pad_mode = zeros"]
    assert abs(same["diff"]) < same["detectable"] and same["verdict"] == stats.UNRESOLVED
    assert same["seeds_needed"] > 3  # more seeds than were run would be needed for a difference that small
    best = comps.loc[deviations.BEST_EPOCH]
    assert best["diff"] == pytest.approx(-0.4) and best["verdict"] == stats.LOWER and best["n"] == 3
    cells = table.cells.set_index("deviation")
    assert cells.at[deviations.BEST_EPOCH, "median"] == pytest.approx(cells.at[deviations.BASELINE, "median"] - 0.4)
    assert cells.at[deviations.BEST_EPOCH, "reported"] == "best epoch"


def test_sentences_name_the_network_and_the_deviation(table):
    assert any(s.startswith("WRN-16-4: precision = bf16 vs the baseline: higher, +") for s in table.sentences)
    assert any(s.startswith("WRN-16-4: pad_mode = zeros vs the baseline: unresolved")
               and "3 seeds detect ≥" in s and "at α = 0.05" in s for s in table.sentences)


@pytest.mark.parametrize("row, why", [
    ("crop_draw = per_image", "crop_draw"), ("flip_draw = per_image", "flip_draw"),
    ("drop_last = false", "drop_last"), ("data_order = shared", "data_order"), ("world_size = 2", "world_size"),
    ("batch_size = 512, lr_scaling = linear, warmup_epochs = 5", "batch_size"),
])
def test_rows_that_change_what_a_seed_draws_are_compared_unpaired(table, row, why):
    """A row whose runs of a seed draw other data, crops or flips than the baseline's shares no seed
    effect with it: compared unpaired, and the table says which field breaks the pairing."""
    comps = table.comparisons.set_index("deviation")
    assert not comps.at[row, "paired"] and comps.at[row, "unpaired_because"] == why
    assert comps.loc["pad_mode = zeros", "paired"] and comps.loc["precision = bf16", "paired"]
    markdown = to_markdown(table)
    assert f"3/3 ({why})" in markdown


def test_a_table_of_a_spec_with_a_baseline_and_no_deviation_rows_names_networks(tmp_path):
    """Other ablations keep their network names; the best-epoch row is available to any of them."""
    spec = load_spec("table_block_type")
    for planned in expand(spec, "paper", seeds=2)[:12]:
        write_run(tmp_path, spec.name, planned.config, test_error=6.0 + planned.config.seed)
    table = build_table(spec, collect_spec(spec, tmp_path))
    assert "deviation" not in table.cells and set(table.cells["reported"]) == {"final epoch"}
    assert isinstance(table.comparisons, pd.DataFrame) and "WRN-28-2" in set(table.comparisons["baseline"])
