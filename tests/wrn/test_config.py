"""`wrn.config.resolve`, the one validator of a run config: every default it fills from the paper's
recipe and every rule it enforces, each refusal one line naming the field, the value and what is
allowed."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest

from wrn import config as config_module
from wrn.config import DATASET_SIZES, FIELD_RULES, RunConfig, expected_sizes, is_resolved, resolve
from wrn.data.sources import parse_data_source, synthetic_sizes
from wrn.errors import ConfigError
from wrn.recipes import RECIPE_DATASETS, RECIPE_FIELDS, RECIPE_PRESETS, RECIPES, recipe_family

CIFAR = dict(dataset="cifar10", depth=16, k=2)
IMAGENET = dict(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, k=2)


def refused(**fields) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        resolve(RunConfig(**fields))
    assert "\n" not in str(info.value)
    return info.value


# --------------------------------------------------------------------------------------------------
# Defaults from the paper's recipe


@pytest.mark.parametrize("dataset, depth, k, arch", [("cifar10", 28, 10, "wrn"), ("cifar100", 28, 10, "wrn"),
                                                      ("svhn", 16, 4, "wrn"), ("imagenet", 50, 2, "wrn50_2_bottleneck")])
def test_every_recipe_field_is_filled_from_the_datasets_recipe(dataset, depth, k, arch):
    cfg = resolve(RunConfig(dataset=dataset, depth=depth, k=k, arch=arch))
    recipe = RECIPES[recipe_family(dataset)]
    for name in RECIPE_FIELDS:
        expected = recipe[name]
        assert getattr(cfg, name) == expected, name


def test_the_cifar_and_svhn_recipes_are_the_official_scripts():
    """scripts/train_cifar.sh and scripts/train_svhn.sh of the official repository."""
    cifar = resolve(RunConfig(**CIFAR))
    assert (cifar.lr, cifar.lr_milestones, cifar.lr_decay, cifar.epochs) == (0.1, (60, 120, 160), 0.2, 200)
    assert (cifar.batch_size, cifar.weight_decay, cifar.momentum, cifar.nesterov, cifar.dampening) == (
        128, 5e-4, 0.9, True, 0.0)
    assert (cifar.crop_padding, cifar.pad_mode, cifar.hflip, cifar.preprocessing) == (4, "reflect", True, "zca")
    assert (cifar.reset_momentum_on_decay, cifar.drop_last) == (True, True)
    svhn = resolve(RunConfig(dataset="svhn", depth=16, k=4))
    assert (svhn.lr, svhn.lr_milestones, svhn.lr_decay, svhn.epochs) == (0.01, (80, 120), 0.1, 160)
    assert (svhn.crop_padding, svhn.hflip, svhn.preprocessing) == (0, False, "div255")


@pytest.mark.parametrize("recipe", sorted(RECIPE_PRESETS))
def test_a_recipe_preset_fills_what_the_paper_does_not_say(recipe):
    """Each preset sets every field it names (docs/recipes.md), over the dataset's recipe."""
    fields = CIFAR if "cifar10" in RECIPE_DATASETS[recipe] else IMAGENET
    cfg = resolve(RunConfig(**fields, recipe=recipe))
    for name, value in RECIPE_PRESETS[recipe].items():
        assert getattr(cfg, name) == value, name


def test_the_presets_are_the_official_code_of_their_time():
    v1 = resolve(RunConfig(**CIFAR, recipe="v1-2016-05"))
    assert (v1.crop_draw, v1.flip_draw, v1.conv_init, v1.bn_init, v1.pad_mode) == (
        "per_batch", "half_batch", "fan_out", "uniform", "reflect")
    assert (v1.nesterov, v1.data_order, v1.world_size, v1.warmup_steps) == (True, "per_seed", 1, 0)
    current = resolve(RunConfig(**CIFAR))
    assert current.recipe == "official-current"
    assert (current.crop_draw, current.flip_draw, current.conv_init, current.bn_init) == (
        "per_image", "per_image", "fan_in", "uniform")
    assert (current.nesterov, current.data_order, current.world_size, current.warmup_steps) == (True, "shared", 1, 0)


def test_imagenet_follows_fb_resnet_torch():
    """The code the paper names for ImageNet: train.lua keeps the momentum across drops (Nesterov on),
    dataloader.lua the last partial batch, models/resnet.lua inits convs by fan_out and BN scale 1."""
    cfg = resolve(RunConfig(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, k=2))
    assert cfg.recipe == "fb-resnet-torch"
    assert (cfg.reset_momentum_on_decay, cfg.nesterov, cfg.drop_last, cfg.conv_init, cfg.bn_init) == (
        False, True, False, "fan_out", "ones")
    assert (cfg.lr, cfg.lr_milestones, cfg.lr_decay, cfg.epochs, cfg.weight_decay, cfg.batch_size) == (
        0.1, (31, 61), 0.1, 90, 1e-4, 256)


def test_he_et_als_recipe_is_the_one_their_papers_state():
    """arXiv:1512.03385 §4.2 and arXiv:1603.05027's appendix: batch 128 on 2 GPUs, SGD with momentum
    0.9 (Caffe's, no Nesterov), weight decay 1e-4, 0.1 after 400 iterations at 0.01, /10 at 32k and
    48k iterations, 64k in all, per-pixel mean, 4-pixel zero padding, He init, BN scale 1."""
    he = resolve(RunConfig(dataset="cifar10", arch="preact_resnet", depth=164, k=1, recipe="he-2016"))
    assert (he.lr, he.lr_decay, he.weight_decay, he.batch_size, he.world_size, he.momentum, he.nesterov) == (
        0.1, 0.1, 1e-4, 128, 2, 0.9, False)
    assert (he.warmup_steps, he.warmup_lr, he.preprocessing, he.pad_mode, he.crop_padding) == (
        400, 0.01, "pixelmean", "zeros", 4)
    assert (he.conv_init, he.bn_init, he.reset_momentum_on_decay, he.drop_last, he.data_order) == (
        "fan_in", "ones", False, False, "per_seed")
    steps = math.ceil(50_000 / he.batch_size)  # 391: the last partial batch is kept
    # an iteration count becomes the first whole epoch at or after it
    assert he.lr_milestones == tuple(math.ceil(i / steps) + 1 for i in (32_000, 48_000)) == (83, 124)
    assert he.epochs == round(64_000 / steps) == 164
    assert [he.lr_at(e) for e in (82, 83, 123, 124, 164)] == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])


def test_the_warm_up_steps_run_at_their_own_rate_then_the_schedule():
    he = resolve(RunConfig(dataset="cifar10", arch="preact_resnet", depth=164, k=1, recipe="he-2016"))
    steps = 391
    assert [he.lr_at_step(1, s, steps) for s in (0, 390)] == [0.01, 0.01]
    assert [he.lr_at_step(2, s, steps) for s in (8, 9, 390)] == [0.01, 0.1, 0.1]  # the 400th step is at 0.1
    assert [he.warming_in(e, steps) for e in (1, 2, 3)] == [True, True, False]
    plain = resolve(RunConfig(**CIFAR))
    assert plain.lr_at_step(1, 0, steps) == 0.1 and not plain.warming_in(1, steps)


def test_a_field_given_is_a_deviation_from_its_preset():
    cfg = resolve(RunConfig(**CIFAR, recipe="v1-2016-05", conv_init="fan_in", lr=0.05))
    assert (cfg.recipe, cfg.conv_init, cfg.crop_draw, cfg.lr) == ("v1-2016-05", "fan_in", "per_batch", 0.05)


def test_the_numerics_are_the_papers_fp32_without_tf32_by_default():
    cfg = resolve(RunConfig(**CIFAR))
    assert (cfg.precision, cfg.tf32) == ("fp32", False)


def test_values_given_are_kept():
    cfg = resolve(RunConfig(**CIFAR, lr=0.05, epochs=3, lr_milestones=(2,), preprocessing="meanstd", hflip=False))
    assert (cfg.lr, cfg.epochs, cfg.lr_milestones, cfg.preprocessing, cfg.hflip) == (0.05, 3, (2,), "meanstd", False)


@pytest.mark.parametrize("dataset, rate", [("cifar10", 0.3), ("cifar100", 0.3), ("svhn", 0.4)])
def test_dropout_true_is_the_papers_rate_for_the_dataset(dataset, rate):
    assert resolve(RunConfig(dataset=dataset, depth=16, k=4, dropout=True)).dropout == rate
    assert resolve(RunConfig(dataset=dataset, depth=16, k=4, dropout=False)).dropout == 0.0
    assert isinstance(resolve(RunConfig(dataset=dataset, depth=16, k=4, dropout=0)).dropout, float)


def test_milestones_given_as_a_list_become_a_tuple():
    assert resolve(RunConfig(**CIFAR, lr_milestones=[2, 5])).lr_milestones == (2, 5)


def test_resolving_twice_changes_nothing():
    for fields in (CIFAR, dict(dataset="svhn", depth=16, k=8, dropout=True),
                   dict(arch="preact_resnet", depth=164, k=1), dict(dataset="imagenet", arch="wrn50_2_bottleneck",
                                                                    depth=50, k=2),
                   dict(depth=40, k=2, block="B(3, 1, 3)", depth_convention="true")):
        once = resolve(RunConfig(**fields))
        assert resolve(once) == once


def test_the_learning_rate_drops_as_the_official_code_drops_it():
    """train.lua drops the rate at the start of the 1-indexed milestone epoch: 59 epochs at 0.1."""
    cfg = resolve(RunConfig(**CIFAR))
    assert [cfg.lr_at(e) for e in (1, 59, 60, 119, 120, 159, 160, 200)] == pytest.approx(
        [0.1, 0.1, 0.02, 0.02, 0.004, 0.004, 0.0008, 0.0008])
    svhn = resolve(RunConfig(dataset="svhn", depth=16, k=4))
    assert [svhn.lr_at(e) for e in (79, 80, 119, 120, 160)] == pytest.approx([0.01, 0.001, 0.001, 1e-4, 1e-4])


def test_linear_scaling_and_warmup_follow_goyal_et_al():
    """lr x batch / the recipe's batch (Goyal et al. 2017, §2.1), reached by a per-step linear climb
    from the unscaled rate over the warm-up epochs (§2.2), then the recipe's drops."""
    cfg = resolve(RunConfig(**{**CIFAR, "batch_size": 512, "world_size": 4, "lr_scaling": "linear",
                               "warmup_epochs": 5}))
    assert cfg.peak_lr == pytest.approx(0.4)
    assert cfg.lr_at(1) == pytest.approx(0.1) and cfg.lr_at(1, 0.5) == pytest.approx(0.13)
    assert cfg.lr_at(3, 0.5) == pytest.approx(0.1 + 0.3 * 2.5 / 5)
    assert [cfg.lr_at(e) for e in (6, 59, 60, 120)] == pytest.approx([0.4, 0.4, 0.08, 0.016])
    plain = resolve(RunConfig(**{**CIFAR, "batch_size": 512, "world_size": 4}))
    assert plain.peak_lr == 0.1 and plain.lr_at(1, 0.5) == 0.1  # the named deviation is off by default


# --------------------------------------------------------------------------------------------------
# Field rules: each field on its own

CHOICES = [(rule.field, rule.choices) for rule in FIELD_RULES if rule.choices]


@pytest.mark.parametrize("field, choices", [("dataset", ("cifar10",)), ("arch", ("wrn",)), *CHOICES],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_a_choice_outside_its_list_is_refused_with_a_suggestion(field, choices):
    bad = choices[0] + "x"
    error = refused(**{**CIFAR, field: bad})
    assert error.field_name == field and error.value == bad
    assert str(error).startswith(f"{field}={bad!r}: allowed: ") and f"did you mean {choices[0]!r}" in str(error)


@pytest.mark.parametrize("field", ["hflip", "nesterov", "reset_momentum_on_decay", "drop_last", "compile", "tf32",
                                   "sync_bn", "color_augment"])
def test_a_boolean_field_takes_only_true_or_false(field):
    error = refused(**{**CIFAR, field: 1})
    assert error.field_name == field and "expected true or false" in str(error)


@pytest.mark.parametrize("field", ["depth", "k", "epochs", "batch_size", "seed", "crop_padding", "image_size",
                                   "eval_batch_size", "world_size", "warmup_epochs"])
@pytest.mark.parametrize("value", [2.0, True])
def test_an_integer_field_refuses_floats_and_booleans(field, value):
    error = refused(**{**CIFAR, field: value})
    assert error.field_name == field and "expected an integer" in str(error)


@pytest.mark.parametrize("field", ["lr", "lr_decay", "momentum", "dampening", "weight_decay", "dropout"])
@pytest.mark.parametrize("value, message", [("0.1", "expected a number"), (math.nan, "expected a finite number"),
                                            (math.inf, "expected a finite number")])
def test_a_number_field_refuses_text_and_non_finite_values(field, value, message):
    error = refused(**{**CIFAR, field: value})
    assert error.field_name == field and message in str(error)


@pytest.mark.parametrize("field, value, allowed", [
    ("k", 0, "the widening factor must be an integer >= 1"),
    ("epochs", 0, "expected an integer >= 1"),
    ("batch_size", 0, "expected an integer >= 1"),
    ("eval_batch_size", 0, "expected an integer >= 1"),
    ("crop_padding", -1, "expected an integer >= 0"),
    ("world_size", 0, "expected an integer >= 1 (processes, one per GPU)"),
    ("warmup_epochs", -1, "expected an integer >= 0"),
    ("lr", 0.0, "expected a number > 0"),
    ("lr_decay", 0.0, "expected a factor in (0, 1]"),
    ("lr_decay", 1.5, "expected a factor in (0, 1]"),
    ("momentum", 1.0, "expected a number in [0, 1)"),
    ("weight_decay", -1e-4, "expected a number >= 0"),
    ("dropout", 1.0, "allowed: a probability in [0, 1), or true/false"),
    ("dropout", -0.1, "allowed: a probability in [0, 1), or true/false"),
])
def test_a_value_out_of_its_range_is_refused(field, value, allowed):
    error = refused(**{**CIFAR, "nesterov": False, field: value})
    assert str(error) == f"{field}={value!r}: {allowed}"


@pytest.mark.parametrize("milestones", [(120, 60), (60, 60), (0, 60), (60.0,), (True,), 60])
def test_milestones_must_be_increasing_one_indexed_epochs(milestones):
    error = refused(**CIFAR, lr_milestones=milestones)
    assert error.field_name == "lr_milestones" and "expected increasing 1-indexed epochs" in str(error)


# --------------------------------------------------------------------------------------------------
# Cross-field rules

@pytest.mark.parametrize("fields, field, fragment", [
    (dict(momentum=0.0), "nesterov", "Nesterov needs momentum > 0 and dampening 0"),
    (dict(dampening=0.1), "nesterov", "Nesterov needs momentum > 0 and dampening 0"),
    (dict(dataset="imagenet"), "arch", "imagenet is trained only with arch wrn50_2_bottleneck"),
    (dict(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, preprocessing="zca"), "preprocessing",
     "imagenet allows only meanstd"),
    (dict(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, norm_stats="dataset"), "norm_stats",
     "imagenet uses the standard ImageNet statistics"),
    (dict(arch="wrn50_2_bottleneck", depth=50), "arch", "is an ImageNet network"),
    (dict(image_size=64), "image_size", "cifar10 images are 32x32"),
    (dict(crop_padding=32), "crop_padding", "expected fewer pixels than the image size 32"),
    (dict(dataset="svhn", preprocessing="zca"), "preprocessing", "zca is defined for CIFAR only"),
    (dict(data_source="synthetic:64"), "data_source", "synthetic:<train images>:<test images>"),
    (dict(data_source="fake"), "data_source", "allowed: real"),
    (dict(dataset="svhn", recipe="he-2016"), "recipe", "is a recipe for cifar10, cifar100; for svhn: v1-2016-05, official-current"),
    (dict(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, recipe="official-current"), "recipe",
     "is a recipe for cifar10, cifar100, svhn; for imagenet: fb-resnet-torch"),
    (dict(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, crop_draw="per_batch"), "crop_draw",
     "imagenet draws its crops and flips per image"),
    (dict(world_size=3), "world_size", "must divide batch_size 128"),
    (dict(sync_bn=True), "sync_bn", "needs world_size > 1"),
    (dict(recipe="he-2016", data_source="synthetic:129:10", world_size=2), "world_size",
     "leaves a process no image of the last batch (1 images"),
    (dict(warmup_epochs=5), "warmup_epochs", "set lr_scaling = linear"),
    (dict(warmup_steps=400), "warmup_lr", "the rate of the warm-up steps"),
    (dict(warmup_steps=400, warmup_lr=0.0), "warmup_lr", "expected a number > 0"),
    (dict(warmup_lr=0.01), "warmup_lr", "has no steps to apply to"),
    (dict(warmup_steps=400, warmup_lr=0.01, warmup_epochs=5, lr_scaling="linear"), "warmup_steps", "one warm-up at a time"),
    (dict(dataset="svhn", preprocessing="pixelmean"), "preprocessing", "pixelmean is defined for CIFAR only"),
    (dict(color_augment=True), "color_augment", "ImageNet's"),
    (dict(input_pipeline="tensor"), "input_pipeline", "only ImageNet has an input pipeline"),
])
def test_fields_that_do_not_fit_together_are_refused(fields, field, fragment):
    error = refused(**{**CIFAR, **fields})
    assert error.field_name == field and fragment in str(error)


# --------------------------------------------------------------------------------------------------
# The network fields of each architecture

def test_a_wrn_block_gets_its_canonical_spelling_and_blocks_per_group():
    cfg = resolve(RunConfig(dataset="cifar10", depth=40, k=2, block="B( 1, 3 ,1)"))
    assert (cfg.block, cfg.blocks_per_group) == ("B(1,3,1)", 6)
    true = resolve(RunConfig(dataset="cifar10", depth=40, k=2, block="B(3,3,3)", depth_convention="true"))
    assert true.blocks_per_group == 4


def test_a_wrn_depth_that_does_not_fit_its_block_names_the_nearest():
    error = refused(**{**CIFAR, "depth": 17})
    assert error.field_name == "depth" and "nearest: 16, 22" in str(error)


@pytest.mark.parametrize("fields, field, fragment", [
    (dict(k=2), "k", "k must be 1"),
    (dict(block="B(3,1)"), "block", "leave block unset"),
    (dict(dropout=0.3), "dropout", "has no dropout"),
    (dict(depth=100), "depth", "9n+2 (nearest: 92, 101)"),
])
def test_the_thin_preact_resnet_is_fixed_but_for_its_depth(fields, field, fragment):
    error = refused(**{"dataset": "cifar10", "arch": "preact_resnet", "depth": 164, "k": 1, **fields})
    assert error.field_name == field and fragment in str(error)


def test_the_thin_preact_resnet_has_9n_plus_2_layers():
    cfg = resolve(RunConfig(arch="preact_resnet", depth=164, k=1))
    assert (cfg.block, cfg.blocks_per_group) == ("bottleneck", 18)


@pytest.mark.parametrize("fields, field", [(dict(dropout=0.3), "dropout"), (dict(depth=101), "arch"),
                                           (dict(k=4), "arch")])
def test_wrn50_2_bottleneck_is_fixed(fields, field):
    error = refused(**{"dataset": "imagenet", "arch": "wrn50_2_bottleneck", "depth": 50, "k": 2, **fields})
    assert error.field_name == field


def test_a_given_blocks_per_group_must_agree_with_the_depth():
    assert resolve(RunConfig(**CIFAR, blocks_per_group=2)).blocks_per_group == 2
    error = refused(**CIFAR, blocks_per_group=3)
    assert error.field_name == "blocks_per_group" and "gives 2" in str(error)


# --------------------------------------------------------------------------------------------------
# The config as data

def test_to_dict_and_from_dict_round_trip():
    cfg = resolve(RunConfig(**CIFAR, dropout=True))
    data = cfg.to_dict()
    assert data["lr_milestones"] == [60, 120, 160]  # JSON has no tuples
    assert RunConfig.from_dict(data) == cfg


def test_from_dict_refuses_an_unknown_key_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key \(did you mean 'epochs'\?\)"):
        RunConfig.from_dict({"epoch": 3})


def test_data_sizes_of_real_and_generated_data():
    assert synthetic_sizes("real") is None and synthetic_sizes("synthetic:64:32") == (64, 32)
    assert expected_sizes(resolve(RunConfig(**CIFAR))) == DATASET_SIZES["cifar10"] == (50_000, 10_000)
    assert expected_sizes(resolve(RunConfig(**CIFAR, data_source="synthetic:64:32"))) == (64, 32)
    assert DATASET_SIZES["svhn"] == (73_257 + 531_131, 26_032)


def test_a_prepared_subset_is_named_apart_from_generated_data():
    assert parse_data_source("subset:5000:1000") == ("subset", (5000, 1000))
    assert parse_data_source("synthetic:64:32") == ("synthetic", (64, 32))  # the old spelling still reads
    assert synthetic_sizes("subset:5000:1000") is None  # a subset is real data, never generated
    assert expected_sizes(resolve(RunConfig(**CIFAR, data_source="subset:5000:1000"))) == (5000, 1000)
    for whole_or_more in ("subset:50000:10000", "subset:60000:100"):
        with pytest.raises(ConfigError, match="is not the whole dataset .that is data_source=real."):
            resolve(RunConfig(**CIFAR, data_source=whole_or_more))


def test_resolved_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolve(RunConfig(**CIFAR)).lr = 1.0  # type: ignore[misc]


def test_a_resolved_config_carries_its_proof_and_is_resolved_once(monkeypatch):
    """The planner, the store and the engine each ask for a resolved config: the rules run once."""
    resolved = resolve(RunConfig(dataset="cifar100", depth=28, k=10, seed=3))
    assert is_resolved(resolved) and resolve(resolved) is resolved
    assert is_resolved(pickle.loads(pickle.dumps(resolved)))  # as a worker or a SLURM job receives it
    for unproven in (dataclasses.replace(resolved, seed=4), RunConfig.from_dict(resolved.to_dict())):
        assert not is_resolved(unproven) and resolve(unproven) is not unproven
        assert resolve(unproven) == dataclasses.replace(resolved, seed=unproven.seed)
    calls = []
    monkeypatch.setattr(config_module, "_fill_recipe", lambda c: calls.append(c) or c)
    resolve(resolved)
    assert calls == []


def test_a_network_is_its_config_without_the_seed():
    runs = [resolve(RunConfig(depth=16, k=4, seed=seed)) for seed in range(3)]
    assert {run.network for run in runs} == {dataclasses.replace(runs[0], seed=0)}
    assert runs[1].network is runs[1].network and is_resolved(runs[1].network)
    assert runs[0].network != resolve(RunConfig(depth=16, k=8)).network
