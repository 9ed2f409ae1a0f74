"""The paper's network names, parsed into config fields and rendered back.

Labels are what specs, results and tables show, so there is exactly one grammar, and
``parse_label(render_label(cfg))`` gives back the network fields of any resolved config:

    WRN-<depth>-<k>[-B(<kernel>,...)][-true][-dropout[=<p>]]
    preact-ResNet-<depth>
    WRN-50-2-bottleneck

- ``WRN-28-10`` is the paper's plain WRN-n-k with the basic block B(3,3) (paper §2.3).
- ``-B(1,3,1)`` appends the block type as the paper does ("WRN-40-2-B(3, 3)"); spaces inside the
  brackets are accepted, the rendered form has none.
- ``-true`` selects the Table 3 depth convention, N = (d-4)/(3l) blocks per group, where the depth is the
  true number of convolutions. Without it the depth is nominal, N = (d-4)/6 whatever the block length,
  which is what Table 2 and the official code use (`wrn.blocks`; docs/paper.md, "Depth"). A ``-true`` label always
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

from wrn.blocks import BASIC_BLOCK, format_block, parse_block
from wrn.config import RunConfig
from wrn.errors import ConfigError
from wrn.recipes import paper_dropout

_LABEL_FORMS = ("expected WRN-<depth>-<k>[-B(k1,...)][-true][-dropout[=p]], preact-ResNet-<depth> "
                "or WRN-50-2-bottleneck, e.g. WRN-28-10, WRN-40-2-B(1,3,1), WRN-16-4-dropout")
_WRN_RE = re.compile(
    r"WRN-(?P<depth>\d+)-(?P<k>\d+)"
    r"(?:-(?P<block>B\([^)]*\)))?"
    r"(?P<true>-true)?"
    r"(?P<dropout>-dropout(?:=(?P<rate>.+))?)?"
)
_PREACT_RE = re.compile(r"preact-ResNet-(?P<depth>\d+)")
_WRN50_LABEL = "WRN-50-2-bottleneck"


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
        paper_rate = paper_dropout(cfg.dataset)
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
