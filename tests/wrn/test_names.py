"""The paper's network labels (wrn.names): parsed into config fields and rendered back."""

import dataclasses

import pytest

from wrn.config import RunConfig, resolve
from wrn.errors import ConfigError
from wrn.names import parse_label, render_label


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
