"""Specs: every shipped spec loads by name and by path, opens with its command and what it costs, and
malformed spec files fail with one line naming the file, the field and the value."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest

from experiments.estimate import estimate
from experiments.plan import expand
from experiments.rates import RateBook
from experiments.schema import SpecError
from experiments.spec import SPECS_DIR, load_spec

SPEC_FILES = sorted(SPECS_DIR.glob("*.toml"))
SPEC_NAMES = [p.stem for p in SPEC_FILES]
PAPERLESS = {"deviations"}  # measures the suite's options; the paper has no numbers for it


@pytest.mark.parametrize("path", SPEC_FILES, ids=SPEC_NAMES)
def test_spec_loads_by_name_and_path(path: Path):
    by_name, by_path = load_spec(path.stem), load_spec(path)
    assert by_name == by_path
    assert by_name.name == path.stem
    assert by_name.paper_results == (None if path.stem in PAPERLESS else f"results/paper/{path.stem}.csv")


# ------------------------------------------------------------------------------------------------
# Malformed input: one line naming the field and the value

VALID = """\
name = "user_spec"
title = "t"
paper_ref = "r"
description = "d"
kind = "train"
seeds = 2
metrics = ["test_error"]

[base]
dataset = "cifar10"
depth = 16
k = 2

[grid]
dropout = [false, true]

[table]
rows = ["label"]
metric = "test_error"
"""

MALFORMED = [
    # (id, old text, new text, fragments the message must contain)
    ("unknown-top-key", "seeds = 2", "seed = 2", ["seed", "did you mean 'seeds'"]),
    ("unknown-field", "depth = 16", "detph = 16", ["base", "'detph'", "did you mean 'depth'"]),
    ("dropout-range", "dropout = [false, true]", "dropout = [1.5]", ["grid.dropout: 1.5", "[0, 1)"]),
    ("wrong-type", "depth = 16", 'depth = "16"', ["base.depth", "'16'", "integer"]),
    ("depth-not-6n+4", "depth = 16", "depth = 17", ["base.depth", "17", "nearest: 16, 22"]),
    ("bad-block", "k = 2", 'k = 2\nblock = "B(2,2)"', ["base.block", "'B(2,2)'", "odd kernel"]),
    ("unknown-dataset", 'dataset = "cifar10"', 'dataset = "cifar1000"', ["base.dataset", "cifar1000", "cifar100"]),
    ("kind", 'kind = "train"', 'kind = "trian"', ["kind", "'trian'", "train, timing"]),
    ("seeds-zero", "seeds = 2", "seeds = 0", ["seeds", "0", "n >= 1"]),
    ("seeds-repeated", "seeds = 2", "seeds = [1, 1]", ["seeds", "[1, 1]", "distinct"]),
    ("metric-name", 'metrics = ["test_error"]', 'metrics = ["test_eror"]', ["metrics[0]", "test_eror", "test_error"]),
    ("table-metric-not-reported", 'metric = "test_error"', 'metric = "params"', ["table.metric", "'params'"]),
    ("table-row-field", 'rows = ["label"]', 'rows = ["detph"]', ["table.rows[0]", "'detph'", "did you mean 'depth'"]),
    ("seed-in-base", "k = 2", "k = 2\nseed = 3", ["base", "'seed'", "seeds"]),
    ("milestones-not-list", "k = 2", "k = 2\nlr_milestones = 60", ["base.lr_milestones", "60", "list of integers"]),
    ("milestones-decreasing", "k = 2", "k = 2\nlr_milestones = [120, 60]", ["base.lr_milestones", "[120, 60]", "increasing"]),
    ("exclude-matches-nothing", "", "[[exclude]]\ndepth = 28\n", ["exclude[0]", "'depth': 28", "matches no run"]),
    ("duplicate-runs", "dropout = [false, true]", "dropout = [false, 0.0]", ["rows", "same run"]),
    ("figure-kind", "", '[[figures]]\nkind = "scatter"\n', ["figures[0].kind", "'scatter'", "pointplot"]),
    ("figure-key", "", '[[figures]]\nkind = "curves"\npannel = "dataset"\n', ["figures[0].pannel", "did you mean 'panel'"]),
    ("timing-in-train-spec", "", "[timing]\nbatch_size = 32\nwarmup = 1\nrepeats = 2\n", ["timing", 'kind "timing"']),
    ("timing-without-table", 'kind = "train"', 'kind = "timing"', ["timing", "batch_size, warmup, repeats"]),
    ("baseline-matches-nothing", 'metric = "test_error"', 'metric = "test_error"\nbaseline = { k = 4 }',
     ["table.baseline", "'k': 4", "matches no run"]),
    ("by-dataset-unknown", "", "[base_by_dataset.mnist]\ndepth = 16\n", ["base_by_dataset", "'mnist'", "svhn"]),
    ("zca-on-svhn", 'dataset = "cifar10"', 'dataset = "svhn"\npreprocessing = "zca"', ["base.preprocessing", "'zca'", "CIFAR only"]),
    ("shipped-name", 'name = "user_spec"', 'name = "table_width"', ["name", "'table_width'", "shipped"]),
    ("paper-results-missing", "kind = ", 'paper_results = "results/paper/nope.csv"\nkind = ',
     ["paper_results", "nope.csv", "no such file"]),
    ("invalid-toml", "seeds = 2", "seeds = ", ["invalid TOML"]),
    ("missing-key", 'title = "t"\n', "", ["title", "missing"]),
]


def test_valid_template_is_valid(tmp_path: Path):
    path = tmp_path / "user_spec.toml"
    path.write_text(VALID)
    assert len(expand(load_spec(path), "paper")) == 4


@pytest.mark.parametrize("old,new,fragments", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_spec_fails_with_one_line(tmp_path: Path, old: str, new: str, fragments: list[str]):
    assert old in VALID
    text = VALID + new if old == "" else VALID.replace(old, new, 1)
    path = tmp_path / "user_spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_spec_name_lists_the_shipped_specs():
    with pytest.raises(SpecError) as info:
        load_spec("table_widht")
    message = str(info.value)
    assert "did you mean 'table_width'" in message and "\n" not in message
    for name in SPEC_NAMES:
        assert name in message


def test_spec_is_frozen():
    spec = load_spec("table_block_type")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# Specs open with their command

COST_LINE = re.compile(r"#\s+(\d+) runs?, about ([\d.]+) GPU-hours on an? (\S+) at the rates assumed for it")


@pytest.mark.parametrize("path", SPEC_FILES, ids=SPEC_NAMES)
def test_spec_opens_with_its_command_and_what_to_expect(path: Path):
    """A reader of a spec file sees first how to run it, what it costs and what it is compared with;
    the stated cost is the dry run's, so it cannot drift from the spec."""
    header = list(itertools.takewhile(lambda line: line.startswith("#"), path.read_text().splitlines()))
    text = "\n".join(header)
    assert f"python -m experiments.run {path.stem}\n" in text + "\n"
    assert f"python -m experiments.run {path.stem} --profile smoke" in text
    assert (f"results/paper/{path.stem}.csv" in text) != (path.stem in PAPERLESS)
    spec = load_spec(path)
    runs = expand(spec, "paper")
    if spec.kind == "timing":
        assert f"{len(runs)} measurements" in text
        return
    match = COST_LINE.search(text)
    assert match, "the header states the runs and GPU-hours"
    rows = estimate(runs, RateBook("cuda", match.group(3), []))
    assert int(match.group(1)) == len(runs)
    assert float(match.group(2)) == pytest.approx(sum(r.est_seconds for r in rows) / 3600, abs=0.05)
