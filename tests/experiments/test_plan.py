"""Planning: every shipped spec expands to the paper's networks under the paper profile and to every
network once, small, under the smoke profile; run ids are stable; overrides and seeds reach the
configs; malformed overrides fail with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.plan import PlannedRun, collapsed_rows, expand, parse_overrides
from experiments.schema import SpecError
from experiments.spec import SPECS_DIR, load_spec
from experiments import store
from experiments.store import run_id
from wrn.config import RunConfig, resolve

SPEC_NAMES = sorted(p.stem for p in SPECS_DIR.glob("*.toml"))

# What each paper table/figure trains: its networks (labels) and the seeds per network.
EXPECTED = {
    "table_block_type": (5, ["WRN-40-2-B(1,3,1)", "WRN-40-2-B(3,1)", "WRN-40-2-B(1,3)", "WRN-40-2-B(3,1,1)",
                             "WRN-28-2", "WRN-22-2-B(3,1,3)"]),
    "table_deepening": (5, ["WRN-40-2-B(3)-true", "WRN-40-2-B(3,3)-true", "WRN-40-2-B(3,3,3)-true",
                            "WRN-40-2-B(3,3,3,3)-true"]),
    "table_width": (1, [f"WRN-{d}-{k}/{ds}" for d, k in [(40, 1), (40, 2), (40, 4), (40, 8), (28, 10), (28, 12),
                                                         (22, 8), (22, 10), (16, 8), (16, 10)]
                        for ds in ("cifar10", "cifar100") if (d, k, ds) != (40, 8, "cifar100")]),
    "table_comparison": (5, [f"{net}/{ds}" for net in ("preact-ResNet-164", "preact-ResNet-1001") for ds in ("cifar10", "cifar100")]
                         + ["preact-ResNet-164/cifar10"]  # the counterpart of the official log (v1 recipe, ZCA)
                         + [f"{net}/{ds}" for net in ("WRN-40-4", "WRN-16-8", "WRN-28-10") for ds in ("cifar10", "cifar100")]),
    "table_dropout": (5, [f"WRN-{net}{drop}/{ds}" for net in ("16-4", "28-10", "52-1")
                          for ds in ("cifar10", "cifar100", "svhn") for drop in ("", "-dropout")
                          if not (net == "28-10" and ds == "svhn")]),
    "table_best": (1, ["WRN-40-10-dropout/cifar10", "WRN-40-10-dropout/cifar100", "WRN-16-8-dropout/svhn"]),
    "figure_curves": (1, [f"{net}/{ds}" for net in ("preact-ResNet-164", "WRN-28-10") for ds in ("cifar10", "cifar100")]),
    "figure_svhn": (1, ["WRN-52-1", "WRN-16-4", "WRN-16-4-dropout"]),
    "figure_timing": (1, ["preact-ResNet-164", "preact-ResNet-1001", "WRN-40-4", "WRN-16-10", "WRN-28-10"]),
    "imagenet_bottleneck": (1, ["WRN-50-2-bottleneck"]),
    "deviations": (5, ["WRN-16-4", "WRN-28-10"] * 17),
}

# The preprocessing each table used (docs/paper.md, "Tables and figures"): ZCA for Tables 2-4, mean/std for 5, 6, 9 and
# Figure 2 (Table 5's pre-act rows: He et al.'s per-pixel mean; its official-log row: ZCA); SVHN is only divided by 255.
PREPROCESSING = {"table_block_type": "zca", "table_deepening": "zca", "table_width": "zca",
                 "table_dropout": "meanstd", "table_best": "meanstd", "figure_curves": "meanstd"}


# The recipe preset each table was produced with (docs/recipes.md): the official code of May 2016 for the
# ZCA tables and Table 6's SVHN column, the v2 code for the mean/std tables, He et al.'s recipe for Table 5's
# pre-activation ResNets, fb.resnet.torch for ImageNet.
RECIPES = {"table_block_type": {"v1-2016-05"}, "table_deepening": {"v1-2016-05"}, "table_width": {"v1-2016-05"},
           "table_comparison": {"he-2016", "official-current", "v1-2016-05"}, "table_dropout": {"official-current", "v1-2016-05"},
           "figure_svhn": {"v1-2016-05"}, "imagenet_bottleneck": {"fb-resnet-torch"},
           "deviations": {"v1-2016-05", "official-current"}}


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_each_table_trains_with_the_recipe_of_its_era(name: str):
    runs = expand(load_spec(name), "paper", seeds=1)
    assert {r.config.recipe for r in runs} == RECIPES.get(name, {"official-current"})
    if name == "table_comparison":
        for r in runs:
            era = ("he-2016", "pixelmean") if r.config.arch == "preact_resnet" else ("official-current", "meanstd")
            assert (r.config.recipe, r.config.preprocessing) in (era, ("v1-2016-05", "zca"))
        assert [r.config.dataset for r in runs if r.config.recipe == "v1-2016-05"] == ["cifar10"]
    if name == "table_dropout":
        assert all((r.config.recipe == "v1-2016-05") == (r.config.dataset == "svhn") for r in runs)
    if RECIPES.get(name) == {"v1-2016-05"}:
        # the B(M) tables: BN gamma = 1, as the only code with the generic block (models/wide-resnet.lua@8606dab)
        gamma = "ones" if name in ("table_block_type", "table_deepening") else "uniform"
        assert {(r.config.crop_draw, r.config.flip_draw, r.config.conv_init, r.config.bn_init) for r in runs} == {
            ("per_batch", "half_batch", "fan_out", gamma)}


def _key(run: PlannedRun, with_dataset: bool) -> str:
    return f"{run.label}/{run.config.dataset}" if with_dataset else run.label


def test_every_expected_spec_is_shipped():
    assert sorted(EXPECTED) == SPEC_NAMES


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_paper_profile_plans_the_papers_networks(name: str):
    spec = load_spec(name)
    seeds, networks = EXPECTED[name]
    assert len(spec.seeds) == seeds
    runs = expand(spec, "paper")
    with_dataset = "/" in networks[0]
    assert len(runs) == len(networks) * seeds
    assert len({r.run_id for r in runs}) == len(runs)
    for seed in range(seeds):  # seeds are the outer loop: each seed is one complete table
        block = runs[seed * len(networks):(seed + 1) * len(networks)]
        assert [_key(r, with_dataset) for r in block] == networks
        assert {r.config.seed for r in block} == {seed}
    for run in runs:
        assert run.config == resolve(run.config)
        assert run.run_id == run_id(run.config, run.timing)
        assert run.spec == name
        assert (run.timing is not None) == (spec.kind == "timing")
        if name in PREPROCESSING and run.config.dataset != "svhn":
            assert run.config.preprocessing == PREPROCESSING[name]
        if run.config.dataset == "svhn":
            assert (run.config.preprocessing, run.config.crop_padding, run.config.hflip) == ("div255", 0, False)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_smoke_profile_trains_every_network_once_small(name: str):
    spec = load_spec(name)
    paper = expand(spec, "paper", seeds=1)
    smoke = expand(spec, "smoke")
    assert [r.label for r in smoke] == [r.label for r in paper]
    assert [r.config.dataset for r in smoke] == [r.config.dataset for r in paper]
    for run in smoke:
        cfg = run.config
        assert (cfg.seed, cfg.epochs, cfg.lr_milestones, cfg.eval_batch_size) == (0, 2, (2,), 64)
        assert cfg.batch_size == (4 if cfg.dataset == "imagenet" else 16)
        if cfg.dataset == "imagenet":
            assert cfg.image_size == 64
    assert {r.config.preprocessing for r in smoke} == {r.config.preprocessing for r in paper}
    assert not {r.run_id for r in smoke} & {r.run_id for r in paper}


def test_table_block_type_is_the_six_networks_of_table_2():
    runs = expand(load_spec("table_block_type"), "paper")
    assert len(runs) == 6 * 5
    assert {r.config.seed for r in runs} == set(range(5))
    assert {(r.config.depth, r.config.block, r.config.blocks_per_group) for r in runs} == {
        (40, "B(1,3,1)", 6), (40, "B(3,1)", 6), (40, "B(1,3)", 6), (40, "B(3,1,1)", 6), (28, "B(3,3)", 4),
        (22, "B(3,1,3)", 3)}
    assert {(r.config.k, r.config.dataset, r.config.dropout, r.config.depth_convention) for r in runs} == {
        (2, "cifar10", 0.0, "nominal")}


def test_table_deepening_keeps_40_true_convolutions():
    runs = expand(load_spec("table_deepening"), "paper", seeds=1)
    assert [(len(r.config.kernel_sizes), r.config.blocks_per_group) for r in runs] == [(1, 12), (2, 6), (3, 4), (4, 3)]
    assert all(r.config.depth_convention == "true" for r in runs)


def test_timing_spec_measures_batches_of_32():
    spec = load_spec("figure_timing")
    runs = expand(spec, "paper")
    assert spec.kind == "timing"
    assert {r.config.batch_size for r in runs} == {32}
    assert {tuple(sorted(r.timing.items())) for r in runs} == {(("batch_size", 32), ("repeats", 50), ("warmup", 10))}


# ------------------------------------------------------------------------------------------------
# Run ids

GOLDEN_CONFIG = RunConfig(recipe="v1-2016-05", dataset="cifar10", arch="wrn", depth=28, k=2, block="B(3,3)",
                          preprocessing="zca", dropout=False, depth_convention="nominal", seed=0)
GOLDEN_RUN_ID = "eb0c79069bce"


# Runs whose configs have not changed since they were first stored: their ids must not either, or the
# run store would train them again (a field added later stays out of the hash: store.LATER_FIELDS).
GOLDEN_PLANNED = [("table_width", "WRN-40-1", "cifar10", "4408011d645c"),
                  ("deviations", "WRN-16-4", "cifar10", "72d418b78f26")]


def test_golden_run_id():
    assert run_id(GOLDEN_CONFIG) == GOLDEN_RUN_ID


@pytest.mark.parametrize("spec, label, dataset, rid", GOLDEN_PLANNED, ids=[g[0] for g in GOLDEN_PLANNED])
def test_a_run_keeps_its_id_while_its_config_is_unchanged(spec, label, dataset, rid):
    planned = [r for r in expand(load_spec(spec), "paper")
               if r.label == label and r.config.dataset == dataset and r.config.seed == 0]
    assert planned[0].run_id == rid


USER_SPEC = """
name = "{name}"
title = "a user spec"
paper_ref = "none"
description = "the golden network in another place of a grid"
kind = "train"
seeds = 1
metrics = ["test_error"]

[base]
{base}

[grid]
{grid}

[table]
rows = ["label"]
metric = "test_error"
"""


def test_run_id_ignores_key_order_and_grid_position(tmp_path: Path):
    a = tmp_path / "a.toml"
    a.write_text(USER_SPEC.format(name="user_a", base='preprocessing = "zca"\narch = "wrn"\ndataset = "cifar10"\nk = 2\nrecipe = "v1-2016-05"',
                                  grid='depth = [16, 28]\nblock = ["B(3,3)", "B(3,1,3)"]'))
    b = tmp_path / "b.toml"
    b.write_text(USER_SPEC.format(name="user_b", base='recipe = "v1-2016-05"\nk = 2\ndataset = "cifar10"\narch = "wrn"\ndropout = false',
                                  grid='block = ["B(1,3)", "B(3,3)"]\npreprocessing = ["meanstd", "zca"]\ndepth = [28]'))
    ids_a = {r.label: r.run_id for r in expand(load_spec(a), "paper") if r.config.preprocessing == "zca"}
    ids_b = {r.label: r.run_id for r in expand(load_spec(b), "paper") if r.config.preprocessing == "zca"}
    assert ids_a["WRN-28-2"] == ids_b["WRN-28-2"] == GOLDEN_RUN_ID
    assert len(set(ids_a.values())) == len(ids_a) == 4


# ------------------------------------------------------------------------------------------------
# Overrides


def test_overrides_reach_every_run_config():
    spec = load_spec("table_width")
    overrides = parse_overrides(["epochs=3", "lr_milestones=[1, 2]", "pad_mode=zeros", "lr=0.05", "nesterov=false",
                                 "preprocessing=meanstd"])
    assert overrides == {"epochs": 3, "lr_milestones": [1, 2], "pad_mode": "zeros", "lr": 0.05, "nesterov": False,
                         "preprocessing": "meanstd"}
    plain = expand(spec, "paper")
    runs = expand(spec, "paper", overrides)
    assert [r.label for r in runs] == [r.label for r in plain]
    for run in runs:
        cfg = run.config
        assert (cfg.epochs, cfg.lr_milestones, cfg.pad_mode, cfg.lr, cfg.nesterov, cfg.preprocessing) == (
            3, (1, 2), "zeros", 0.05, False, "meanstd")
    assert not {r.run_id for r in runs} & {r.run_id for r in plain}


def test_overrides_parse_toml_literals_and_bare_words():
    assert parse_overrides(["block=B(1,3,1)", "dataset=cifar100", "dropout=true"]) == {
        "block": "B(1,3,1)", "dataset": "cifar100", "dropout": True}
    assert parse_overrides(["dropout = 0.3", 'precision="bf16"']) == {"dropout": 0.3, "precision": "bf16"}
    assert parse_overrides([]) == {}


def test_seeds_argument_replaces_the_specs_seeds():
    runs = expand(load_spec("table_deepening"), "paper", seeds=2)
    assert sorted({r.config.seed for r in runs}) == [0, 1] and len(runs) == 8


def test_override_that_merges_runs_is_an_error():
    with pytest.raises(SpecError, match=r"table_dropout.toml: .* become the same run WRN-16-4 "):
        expand(load_spec("table_dropout"), "paper", {"dropout": 0.0})
    with pytest.raises(SpecError, match=r"become the same run"):  # even under a profile that merges others
        expand(load_spec("table_dropout"), "fast", {"dropout": 0.0})


def test_rows_a_profile_merges_drop_out_and_are_named():
    """Under the fast profile (bf16 and TF32 everywhere) the deviations spec's "precision = bf16" and
    "tf32 = true" rows are its base row's runs: planned once, and said so."""
    spec = load_spec("deviations")
    fast, paper = expand(spec, "fast"), expand(spec, "paper")
    assert len(paper) - len(fast) == 2 * 2 * len(spec.seeds)  # two rows of two networks, every seed
    assert len({r.run_id for r in fast}) == len(fast)
    notes = collapsed_rows(spec, "fast")
    assert len(notes) == 4 and all(n.startswith("under profile fast, rows[") for n in notes)
    assert any("(precision = bf16) is the run of rows[0]" in n for n in notes)
    assert collapsed_rows(spec, "paper") == []


MALFORMED_OVERRIDES = [
    (["depht=2"], ["key", "'depht'", "did you mean 'depth'"]),
    (["epochs"], ["'epochs'", "key=value"]),
    (["seed=1"], ["'seed'", "seeds"]),
    (["epochs=abc"], ["epochs", "'abc'", "integer"]),
    (["lr_milestones=60"], ["lr_milestones", "60", "list"]),
    (["epochs=2", "epochs=3"], ["epochs", "twice"]),
    (["hflip=maybe"], ["hflip", "'maybe'", "true or false"]),
]


@pytest.mark.parametrize("items,fragments", MALFORMED_OVERRIDES, ids=[" ".join(i) for i, _ in MALFORMED_OVERRIDES])
def test_malformed_override_fails_with_one_line(items: list[str], fragments: list[str]):
    with pytest.raises(SpecError) as info:
        parse_overrides(items)
    assert "\n" not in str(info.value) and str(info.value).startswith("--set: ")
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("items,fragments", [
    (["dropout=1.5"], ["--set: dropout: 1.5", "[0, 1)"]),
    (["depth=41"], ["--set: depth: 41", "nearest: 40, 46"]),
    (["epochs=0"], ["--set: epochs: 0", ">= 1"]),
    # The spec's ZCA does not apply to SVHN: the message names the spec's field, not the override.
    (["dataset=svhn"], ["table_block_type.toml: base.preprocessing: 'zca'", "CIFAR only"]),
])
def test_override_out_of_range_is_named_at_expansion(items: list[str], fragments: list[str]):
    with pytest.raises(SpecError) as info:
        expand(load_spec("table_block_type"), "paper", parse_overrides(items))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message




@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_a_timing_measurement_never_shares_a_run_with_a_training_run(profile):
    """The smoke profile trains at the batch Figure 4 times, so WRN-28-10 of figure_timing and of the
    deviations spec's official-current row have equal configs: the timing block keeps their runs
    apart, and each spec's runs are only its own kind."""
    timing = expand(load_spec("figure_timing"), profile)
    training = [p for spec in SPECS_DIR.glob("*.toml") if load_spec(spec.stem).kind == "train"
                for p in expand(load_spec(spec.stem), profile)]
    assert not {p.run_id for p in timing} & {p.run_id for p in training}
    same_config = [(t, p) for t in timing for p in training if t.config == p.config]
    assert same_config or profile == "paper"  # the case the timing block exists for
    records = [store.RunRecord(path=Path(p.run_id), run_id=p.run_id, state="done", kind="timing" if p.timing else "train",
                               config=p.config) for p in timing + training]
    assert {r.run_id for r in store.runs_of(records, timing)} == {p.run_id for p in timing}
    for t, p in same_config:
        assert t.run_id not in {r.run_id for r in store.runs_of(records, [p])}


def test_a_timing_spec_times_one_process():
    with pytest.raises(SpecError, match="world_size=2 .*a timing measurement is one process's step"):
        expand(load_spec("figure_timing"), "smoke", overrides={"world_size": 2, "batch_size": 16})
