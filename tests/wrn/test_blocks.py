"""The B(M) block notation and how a depth becomes blocks per group (wrn.blocks)."""

import pytest

from wrn.blocks import blocks_per_group, format_block, parse_block
from wrn.errors import ConfigError


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
