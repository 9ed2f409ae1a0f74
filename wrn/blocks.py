"""The paper's block notation B(M) and how a depth becomes blocks per group (paper §2.1, Table 1).

B(M) is the list M of kernel sizes of the convolutions in one residual block: B(3,3) is the basic
block, B(1,3,1) the "straightened" bottleneck. How many blocks each of the three groups holds follows
from the depth under one of two conventions (docs/paper.md, "Depth"):

- "nominal" (Table 2, the official code's ``n = (depth - 4) / 6``): N = (d-4)/6 whatever the block
  length, so WRN-40-2-B(1,3,1) has six 3-conv blocks per group. Only this reproduces Table 2's
  parameter counts.
- "true" (Table 3): d counts the convolutions, N = (d-4)/(3l) for blocks of l convolutions, which
  keeps Table 3's four networks at 40 convolutions and 2.2M parameters.
"""

from __future__ import annotations

import re

from wrn.errors import ConfigError

BASIC_BLOCK = "B(3,3)"
DEPTH_CONVENTIONS = ("nominal", "true")

_BLOCK_FORMS = "expected B(k1,k2,...) with odd kernel sizes >= 1, e.g. B(3,3) or B(1,3,1)"
_BLOCK_RE = re.compile(r"B\(\s*(\d+(?:\s*,\s*\d+)*)\s*\)")


def parse_block(text: str) -> tuple[int, ...]:
    """Kernel sizes of a B(M) block: "B(3, 1,3)" -> (3, 1, 3).

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
    """N, the number of blocks in each of the groups conv2-conv4 (module docstring).

    For B(3,3) the two conventions agree. A depth that fits neither raises naming the nearest valid
    ones."""
    kernels = parse_block(block) if isinstance(block, str) else tuple(block)
    if convention == "nominal":
        step = 6
    elif convention == "true":
        step = 3 * len(kernels)
    else:
        raise ConfigError("depth_convention", convention, f"allowed: {', '.join(DEPTH_CONVENTIONS)}")
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
