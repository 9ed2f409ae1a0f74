"""The paper's network names, parsed into config fields and rendered back.

Labels are what specs, results and tables show, so there is exactly one grammar, and
``parse_label(render_label(cfg))`` gives back the network fields of any resolved config:

    WRN-<depth>-<k>[-B(<kernel>,...)][-true][-dropout[=<p>]]
    preact-ResNet-<depth>
    WRN-50-2-bottleneck

- ``WRN-28-10`` is the paper's plain WRN-n-k with the basic block B(3,3) (wrn-paper.md §1).
- ``-B(1,3,1)`` appends the block type as the paper does ("WRN-40-2-B(3, 3)"); spaces inside the
  brackets are accepted, the rendered form has none.
- ``-true`` selects the Table 3 depth convention, N = (d-4)/(3l) blocks per group, where the depth is the
  true number of convolutions. Without it the depth is nominal, N = (d-4)/6 whatever the block length,
  which is what Table 2 and the official code use (wrn-paper.md §1, §6.5). A ``-true`` label always
  names its block, so Table 3 reads "WRN-40-2-B(3,3)-true", ..., "WRN-40-2-B(3,3,3,3)-true".
- ``-dropout`` is the paper's rate for the dataset (0.3 CIFAR, 0.4 SVHN), as the official README names
  "WRN-28-10-dropout"; it parses to ``dropout=True``, which `wrn.config.resolve` turns into that rate.
  Any other rate is spelled out: ``-dropout=0.2``.
- ``preact-ResNet-164`` / ``-1001`` are the thin pre-activation bottleneck baselines of Table 5, and
  ``WRN-50-2-bottleneck`` is the ImageNet network of Tables 8-9; both take no block, qualifier or
  dropout.
"""

from __future__ import annotations

import math
import re
from typing import Any

from wrn.config import RECIPES, ConfigError, RunConfig, recipe_family

BASIC_BLOCK = "B(3,3)"

_BLOCK_FORMS = "expected B(k1,k2,...) with odd kernel sizes >= 1, e.g. B(3,3) or B(1,3,1)"
_LABEL_FORMS = ("expected WRN-<depth>-<k>[-B(k1,...)][-true][-dropout[=p]], preact-ResNet-<depth> "
                "or WRN-50-2-bottleneck, e.g. WRN-28-10, WRN-40-2-B(1,3,1), WRN-16-4-dropout")
_BLOCK_RE = re.compile(r"B\(\s*(\d+(?:\s*,\s*\d+)*)\s*\)")
_WRN_RE = re.compile(
    r"WRN-(?P<depth>\d+)-(?P<k>\d+)"
    r"(?:-(?P<block>B\([^)]*\)))?"
    r"(?P<true>-true)?"
    r"(?P<dropout>-dropout(?:=(?P<rate>.+))?)?"
)
_PREACT_RE = re.compile(r"preact-ResNet-(?P<depth>\d+)")
_WRN50_LABEL = "WRN-50-2-bottleneck"


def parse_block(text: str) -> tuple[int, ...]:
    """Kernel sizes of the paper's B(M) notation: "B(3, 1,3)" -> (3, 1, 3).

    Kernels must be odd so that padding k//2 keeps the spatial size, as every conv in the paper does."""
    match = _BLOCK_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError("block", text, _BLOCK_FORMS)
    kernels = tuple(int(part) for part in match.group(1).split(","))
    if any(size < 1 or size % 2 == 0 for size in kernels):
        raise ConfigError("block", text, _BLOCK_FORMS)
    return kernels


def format_block(kernel_sizes: tuple[int, ...]) -> str:
    """The canonical spelling of a block: (3, 1, 3) -> "B(3,1,3)" (no spaces)."""
    return "B(" + ",".join(str(size) for size in kernel_sizes) + ")"


def blocks_per_group(depth: int, block: str | tuple[int, ...], convention: str) -> int:
    """N, the number of blocks in each of the three groups conv2-conv4 (wrn-paper.md §1).

    "nominal" (Table 2, official code): N = (d-4)/6 for every block type, so WRN-40-2-B(1,3,1) has six
    3-conv blocks per group. "true" (Table 3): d counts the convolutions, N = (d-4)/(3l) for blocks of l
    convs. For B(3,3) the two agree. A depth that fits neither raises naming the nearest valid ones."""
    kernels = parse_block(block) if isinstance(block, str) else tuple(block)
    if convention == "nominal":
        step = 6
    elif convention == "true":
        step = 3 * len(kernels)
    else:
        raise ConfigError("depth_convention", convention, "allowed: nominal, true")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ConfigError("depth", depth, "expected an integer")
    if depth < 4 + step or (depth - 4) % step != 0:
        below = 4 + step * max(1, (depth - 4) // step)
        nearest = sorted({below, below + step} if depth > below else {below})
        raise ConfigError(
            "depth", depth,
            f"{format_block(kernels)} with the {convention} convention needs depth = {step}N+4 "
            f"(nearest: {', '.join(map(str, nearest))})")
    return (depth - 4) // step


def render_label(cfg: RunConfig) -> str:
    """The paper-style name of a resolved config's network (grammar in the module docstring)."""
    if cfg.arch == "wrn50_2_bottleneck":
        return _WRN50_LABEL
    if cfg.arch == "preact_resnet":
        return f"preact-ResNet-{cfg.depth}"
    label = f"WRN-{cfg.depth}-{cfg.k}"
    true_convention = cfg.depth_convention == "true"
    block = format_block(parse_block(cfg.block))
    if block != BASIC_BLOCK or true_convention:
        label += "-" + block
    if true_convention:
        label += "-true"
    if cfg.dropout:
        paper_rate = RECIPES[recipe_family(cfg.dataset)]["paper_dropout"]
        label += "-dropout" if cfg.dropout is True or cfg.dropout == paper_rate else f"-dropout={cfg.dropout!r}"
    return label


def parse_label(label: str) -> dict[str, Any]:
    """RunConfig fields of a paper-style network name (grammar in the module docstring).

    The dict holds every field the label determines (arch, depth, k, block, dropout, and
    depth_convention for WRNs) so that it can be merged over any config. Parsing is syntactic plus the
    block's canonical spelling: whether depth and k fit is checked by `wrn.config.resolve`, the one
    validator, which also turns the dataset-dependent ``dropout=True`` into the paper's rate."""
    if not isinstance(label, str):
        raise ConfigError("label", label, _LABEL_FORMS)
    if label == _WRN50_LABEL:
        return {"arch": "wrn50_2_bottleneck", "depth": 50, "k": 2, "block": "bottleneck", "dropout": 0.0}
    match = _PREACT_RE.fullmatch(label)
    if match:
        return {"arch": "preact_resnet", "depth": int(match["depth"]), "k": 1, "block": "bottleneck",
                "dropout": 0.0}
    match = _WRN_RE.fullmatch(label)
    if match is None:
        raise ConfigError("label", label, _LABEL_FORMS)
    if match["true"] and not match["block"]:
        raise ConfigError("label", label, "a -true label names its block, e.g. WRN-40-2-B(3,3,3)-true")
    block = format_block(parse_block(match["block"])) if match["block"] else BASIC_BLOCK
    return {"arch": "wrn", "depth": int(match["depth"]), "k": int(match["k"]), "block": block,
            "depth_convention": "true" if match["true"] else "nominal",
            "dropout": _parse_dropout(match["rate"]) if match["dropout"] else 0.0}


def _parse_dropout(rate: str | None) -> float | bool:
    if rate is None:
        return True
    try:
        value = float(rate)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise ConfigError("dropout", rate, "a -dropout=<p> label needs a probability in (0, 1)")
    return value
