"""The label grammar and the B(M) / depth rules of wrn.names."""

import dataclasses

import pytest

from wrn.config import ConfigError, RunConfig, resolve
from wrn.names import blocks_per_group, format_block, parse_block, parse_label, render_label


@pytest.mark.parametrize("text, kernels", [
    ("B(3,3)", (3, 3)), ("B(3, 3)", (3, 3)), ("B(3, 1,3)", (3, 1, 3)), ("B(3)", (3,)),
    (" B( 1 , 3 , 1 ) ", (1, 3, 1)), ("B(3,3,3,3)", (3, 3, 3, 3)), ("B(5,1)", (5, 1)),
])
def test_parse_block(text, kernels):
    assert parse_block(text) == kernels
    assert format_block(kernels) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["B(3,2)", "B(0)", "B()", "B(3,,3)", "3,3", "B(3;3)", "b(3,3)", "B(3,3",
                                  "bottleneck", "B(-3)", 33, None])
def test_bad_block_is_one_line_naming_field_and_value(text):
    with pytest.raises(ConfigError) as err:
        parse_block(text)
    message = str(err.value)
    assert err.value.field_name == "block" and message.startswith(f"block={text!r}: ")
    assert "odd kernel sizes" in message and "\n" not in message


@pytest.mark.parametrize("depth, block, convention, n", [
    (28, "B(3,3)", "nominal", 4), (40, "B(1,3,1)", "nominal", 6), (22, "B(3,1,3)", "nominal", 3),
    (40, "B(3)", "true", 12), (40, "B(3,3)", "true", 6), (40, "B(3,3,3)", "true", 4), (40, "B(3,3,3,3)", "true", 3),
    (40, (3, 3, 3), "true", 4), (10, "B(3,3)", "nominal", 1), (1000, "B(3,3)", "nominal", 166),
])
def test_blocks_per_group(depth, block, convention, n):
    assert blocks_per_group(depth, block, convention) == n


@pytest.mark.parametrize("depth, block, convention, nearest", [
    (30, "B(3,3)", "nominal", "nearest: 28, 34"),
    (41, "B(1,3,1)", "nominal", "nearest: 40, 46"),
    (41, "B(3,1,3)", "true", "nearest: 40, 49"),
    (28, "B(3,3,3)", "true", "nearest: 22, 31"),
    (4, "B(3,3)", "nominal", "nearest: 10)"),
    (-2, "B(3,3)", "nominal", "nearest: 10)"),
])
def test_depth_that_does_not_fit_names_the_nearest_valid_depths(depth, block, convention, nearest):
    with pytest.raises(ConfigError) as err:
        blocks_per_group(depth, block, convention)
    assert err.value.field_name == "depth" and str(err.value).startswith(f"depth={depth}: ")
    assert nearest in str(err.value)


def test_unknown_depth_convention():
    with pytest.raises(ConfigError, match="depth_convention='nominl': allowed: nominal, true"):
        blocks_per_group(28, "B(3,3)", "nominl")


@pytest.mark.parametrize("label, fields", [
    ("WRN-28-10", dict(arch="wrn", depth=28, k=10, block="B(3,3)", depth_convention="nominal", dropout=0.0)),
    ("WRN-28-10-B(3,3)", dict(arch="wrn", depth=28, k=10, block="B(3,3)", depth_convention="nominal", dropout=0.0)),
    ("WRN-40-2-B(3, 1, 1)", dict(arch="wrn", depth=40, k=2, block="B(3,1,1)", depth_convention="nominal",
                                 dropout=0.0)),
    ("WRN-40-2-B(3,3,3)-true", dict(arch="wrn", depth=40, k=2, block="B(3,3,3)", depth_convention="true",
                                    dropout=0.0)),
    ("WRN-16-4-dropout", dict(arch="wrn", depth=16, k=4, block="B(3,3)", depth_convention="nominal", dropout=True)),
    ("WRN-28-10-dropout=0.5", dict(arch="wrn", depth=28, k=10, block="B(3,3)", depth_convention="nominal",
                                   dropout=0.5)),
    ("WRN-40-2-B(1,3)-true-dropout=0.1", dict(arch="wrn", depth=40, k=2, block="B(1,3)", depth_convention="true",
                                              dropout=0.1)),
    ("preact-ResNet-164", dict(arch="preact_resnet", depth=164, k=1, block="bottleneck", dropout=0.0)),
    ("preact-ResNet-1001", dict(arch="preact_resnet", depth=1001, k=1, block="bottleneck", dropout=0.0)),
    ("WRN-50-2-bottleneck", dict(arch="wrn50_2_bottleneck", depth=50, k=2, block="bottleneck", dropout=0.0)),
])
def test_parse_label(label, fields):
    assert parse_label(label) == fields


@pytest.mark.parametrize("label", [
    "WRN-28", "wrn-28-10", "WRN-28-10-", "WRN-28-10-B(3,3)-dropout-true", "WRN-28-10-true", "WRN-x-10",
    "ResNet-164", "preact-ResNet-164-dropout", "WRN-50-2-bottleneck-dropout", "WRN-28-10 ", "WRN-28-10-B(3,3", "", None,
])
def test_malformed_label(label):
    with pytest.raises(ConfigError) as err:
        parse_label(label)
    assert str(err.value).startswith(f"label={label!r}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("label, field", [
    ("WRN-28-10-B(3,2)", "block"), ("WRN-28-10-B(3,a)", "block"), ("WRN-28-10-dropout=1.5", "dropout"),
    ("WRN-28-10-dropout=0", "dropout"), ("WRN-28-10-dropout=abc", "dropout"),
])
def test_bad_part_of_a_label_names_its_field(label, field):
    with pytest.raises(ConfigError) as err:
        parse_label(label)
    assert err.value.field_name == field


@pytest.mark.parametrize("label, dataset, field, hint", [
    ("WRN-30-10", "cifar10", "depth", "nearest: 28, 34"),
    ("WRN-28-2-B(3,3,3)-true", "cifar10", "depth", "nearest: 22, 31"),
    ("WRN-28-0", "cifar10", "k", ">= 1"),
    ("preact-ResNet-165", "cifar10", "depth", "9n+2"),
    ("WRN-50-2-bottleneck", "cifar10", "arch", "imagenet"),
])
def test_labels_that_parse_but_do_not_fit_are_refused_by_resolve(label, dataset, field, hint):
    with pytest.raises(ConfigError) as err:
        resolve(RunConfig(dataset=dataset, **parse_label(label)))
    assert err.value.field_name == field and hint in str(err.value)


@pytest.mark.parametrize("config, label", [
    (RunConfig(depth=28, k=10), "WRN-28-10"),
    (RunConfig(depth=28, k=10, block="B(3, 3)"), "WRN-28-10"),
    (RunConfig(depth=40, k=2, block="B(1, 3, 1)"), "WRN-40-2-B(1,3,1)"),
    (RunConfig(depth=40, k=2, depth_convention="true"), "WRN-40-2-B(3,3)-true"),
    (RunConfig(depth=16, k=4, dropout=True), "WRN-16-4-dropout"),
    (RunConfig(dataset="svhn", depth=16, k=8, dropout=0.4), "WRN-16-8-dropout"),
    (RunConfig(dataset="svhn", depth=16, k=8, dropout=0.3), "WRN-16-8-dropout=0.3"),
    (RunConfig(dataset="cifar100", depth=28, k=10, dropout=0.4), "WRN-28-10-dropout=0.4"),
    (RunConfig(depth=40, k=2, block="B(3,1)", depth_convention="true", dropout=0.25), "WRN-40-2-B(3,1)-true-dropout=0.25"),
    (RunConfig(arch="preact_resnet", depth=164, k=1), "preact-ResNet-164"),
    (RunConfig(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, k=2), "WRN-50-2-bottleneck"),
])
def test_render_and_parse_round_trip(config, label):
    cfg = resolve(config)
    assert render_label(cfg) == label
    parsed = parse_label(label)
    assert resolve(dataclasses.replace(cfg, **parsed)) == cfg
