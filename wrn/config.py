"""The fully resolved description of one training run.

`RunConfig` is flat and frozen on purpose: it is what the run store hashes into a run id, what the
dry run prints, what every result records and what the analysis pivots on. Every deviation from the
paper's recipe is a named field here, so a result never hides how it was produced.

Fields whose paper default depends on the dataset (learning rate, schedule, epochs, augmentation,
preprocessing, dropout rate) are left as ``None`` by callers and filled by `resolve`, which is the only
place the recipe's per-dataset defaults live (wrn-paper.md §3; official `scripts/train_cifar.sh` and
`scripts/train_svhn.sh`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

DATASETS = ("cifar10", "cifar100", "svhn", "imagenet")
ARCHS = ("wrn", "preact_resnet", "wrn50_2_bottleneck")
PREPROCESSING = ("meanstd", "zca", "div255")
NORM_STATS = ("official", "dataset")
PAD_MODES = ("reflect", "zeros")
DEPTH_CONVENTIONS = ("nominal", "true")
BN_INITS = ("uniform", "ones")
CONV_INITS = ("fan_in", "fan_out")
PRECISIONS = ("auto", "fp32", "bf16")
CHANNELS_LAST = ("auto", "on", "off")

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 1000}
# (train, test) images of the real datasets; SVHN trains on train+extra (73,257 + 531,131).
DATASET_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "svhn": (604_388, 26_032),
                 "imagenet": (1_281_167, 50_000)}

# The paper's recipe per dataset family. CIFAR: scripts/train_cifar.sh; SVHN: scripts/train_svhn.sh;
# ImageNet: fb.resnet.torch defaults (the paper says it used that code; its exact settings are
# UNVERIFIED, wrn-paper.md §3).
RECIPES: dict[str, dict[str, Any]] = {
    "cifar": dict(
        lr=0.1, lr_milestones=(60, 120, 160), lr_decay=0.2, epochs=200, weight_decay=5e-4,
        batch_size=128, crop_padding=4, hflip=True, preprocessing="zca", paper_dropout=0.3,
        image_size=32,
    ),
    "svhn": dict(
        lr=0.01, lr_milestones=(80, 120), lr_decay=0.1, epochs=160, weight_decay=5e-4,
        batch_size=128, crop_padding=0, hflip=False, preprocessing="div255", paper_dropout=0.4,
        image_size=32,
    ),
    "imagenet": dict(
        lr=0.1, lr_milestones=(31, 61), lr_decay=0.1, epochs=90, weight_decay=1e-4,
        batch_size=256, crop_padding=0, hflip=True, preprocessing="meanstd", paper_dropout=0.0,
        image_size=224,
    ),
}


def recipe_family(dataset: str) -> str:
    return {"cifar10": "cifar", "cifar100": "cifar", "svhn": "svhn", "imagenet": "imagenet"}[dataset]


class ConfigError(ValueError):
    """A config value that is not allowed. The message is one line naming field, value and what is
    allowed, so command-line front ends can print it as it is."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field_name, self.value, self.allowed = field_name, value, allowed
        super().__init__(f"{field_name}={value!r}: {allowed}")


@dataclass(frozen=True)
class RunConfig:
    # --- data -------------------------------------------------------------------------------
    dataset: str = "cifar10"
    # "real", or "synthetic:<train images>:<test images>": small generated data in the real on-disk
    # format (the smoke profile). Part of the run's identity, so smoke runs never pose as real ones.
    data_source: str = "real"
    preprocessing: str | None = None  # meanstd | zca | div255; None = the paper's default
    norm_stats: str = "official"  # mean/std source: the official constants, or the training set's
    crop_padding: int | None = None  # pixels of padding before the random crop; 0 = no crop
    pad_mode: str = "reflect"  # official Lua: reflection; many peers: zeros
    hflip: bool | None = None
    image_size: int | None = None  # training crop size (ImageNet only; CIFAR/SVHN are 32)
    # --- model ------------------------------------------------------------------------------
    arch: str = "wrn"
    depth: int = 28
    k: int = 10
    block: str = "B(3,3)"
    depth_convention: str = "nominal"  # nominal: N=(d-4)/6 (Table 2); true: N=(d-4)/(3l) (Table 3)
    blocks_per_group: int | None = None  # derived from depth and convention
    dropout: float | bool = 0.0  # True = the paper's rate for the dataset (0.3 CIFAR, 0.4 SVHN)
    bn_init: str = "uniform"  # official Torch BN weight ~ U(0,1); "ones" = modern gamma = 1
    conv_init: str = "fan_in"  # official Lua after commit ea02518; "fan_out" = the v1-era code
    # --- optimisation -----------------------------------------------------------------------
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_milestones: tuple[int, ...] | None = None  # 1-indexed epochs from which each drop is in effect
    lr_decay: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    dampening: float = 0.0
    weight_decay: float | None = None
    reset_momentum_on_decay: bool = True  # the official code rebuilds the optimizer state at a drop
    drop_last: bool = True  # official Lua: 'skip-last'
    seed: int = 0
    # --- systems (recorded; they may change the numerics) -----------------------------------
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: str = "auto"  # auto: on for CPU and for bf16 on CUDA (measured faster), else off
    compile: bool = False
    tf32: bool = False
    eval_batch_size: int = 1000

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["lr_milestones"] is not None:
            out["lr_milestones"] = list(out["lr_milestones"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(key, data[key], f"unknown key{suggest(key, known)}")
        data = dict(data)
        if data.get("lr_milestones") is not None:
            data["lr_milestones"] = tuple(data["lr_milestones"])
        return cls(**data)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        from wrn.names import parse_block

        return parse_block(self.block)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 1-indexed `epoch`: each milestone m means the drop is in effect from epoch
        m on, so CIFAR runs epochs 1-59 at 0.1 and 60-119 at 0.02 as the official code does."""
        drops = sum(1 for m in self.lr_milestones if epoch >= m)
        return self.lr * self.lr_decay**drops


def suggest(key: str, known) -> str:
    """' (did you mean X?)' for the closest of `known`, or ''. Shared by every validator."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, value, f"allowed: {', '.join(choices)}{suggest(str(value), choices)}")


def _check_type(name: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(name, value, f"expected {what}")
    if not isinstance(value, kind):
        raise ConfigError(name, value, f"expected {what}")


def synthetic_sizes(data_source: str) -> tuple[int, int] | None:
    """(train, test) image counts of a "synthetic:N:M" data source; None for the real data."""
    if data_source == "real":
        return None
    parts = data_source.split(":") if isinstance(data_source, str) else []
    if len(parts) == 3 and parts[0] == "synthetic" and all(p.isdigit() and int(p) > 0 for p in parts[1:]):
        return int(parts[1]), int(parts[2])
    raise ConfigError("data_source", data_source,
                      "allowed: real, or synthetic:<train images>:<test images> (e.g. synthetic:64:32)")


def resolve(config: RunConfig) -> RunConfig:
    """Fill every dataset-dependent default from the paper's recipe and validate every field.

    The result is what is hashed, run and recorded; `resolve(resolve(c)) == resolve(c)`."""
    from wrn.names import blocks_per_group, format_block, parse_block

    _check_choice("dataset", config.dataset, DATASETS)
    _check_choice("arch", config.arch, ARCHS)
    recipe = RECIPES[recipe_family(config.dataset)]
    updates: dict[str, Any] = {}
    for name in ("preprocessing", "crop_padding", "hflip", "image_size", "epochs", "batch_size",
                 "lr", "lr_milestones", "lr_decay", "weight_decay"):
        if getattr(config, name) is None:
            updates[name] = recipe[name]
    dropout = config.dropout
    if isinstance(dropout, bool):
        updates["dropout"] = recipe["paper_dropout"] if dropout else 0.0
    c = dataclasses.replace(config, **updates)
    if c.lr_milestones is not None and not isinstance(c.lr_milestones, tuple):
        c = dataclasses.replace(c, lr_milestones=tuple(c.lr_milestones))

    _check_choice("preprocessing", c.preprocessing, PREPROCESSING)
    _check_choice("norm_stats", c.norm_stats, NORM_STATS)
    _check_choice("pad_mode", c.pad_mode, PAD_MODES)
    _check_choice("depth_convention", c.depth_convention, DEPTH_CONVENTIONS)
    _check_choice("bn_init", c.bn_init, BN_INITS)
    _check_choice("conv_init", c.conv_init, CONV_INITS)
    _check_choice("precision", c.precision, PRECISIONS)
    _check_choice("channels_last", c.channels_last, CHANNELS_LAST)
    for name in ("hflip", "nesterov", "reset_momentum_on_decay", "drop_last", "compile", "tf32"):
        _check_type(name, getattr(c, name), bool, "true or false")
    for name in ("depth", "k", "epochs", "batch_size", "seed", "crop_padding", "image_size",
                 "eval_batch_size"):
        _check_type(name, getattr(c, name), int, "an integer")
    for name in ("lr", "lr_decay", "momentum", "dampening", "weight_decay", "dropout"):
        _check_type(name, getattr(c, name), (int, float), "a number")
        if not math.isfinite(getattr(c, name)):
            raise ConfigError(name, getattr(c, name), "expected a finite number")
    if c.k < 1:
        raise ConfigError("k", c.k, "the widening factor must be an integer >= 1")
    if not 0.0 <= c.dropout < 1.0:
        raise ConfigError("dropout", c.dropout, "allowed: a probability in [0, 1), or true/false")
    if c.epochs < 1:
        raise ConfigError("epochs", c.epochs, "expected an integer >= 1")
    if c.batch_size < 1:
        raise ConfigError("batch_size", c.batch_size, "expected an integer >= 1")
    if c.eval_batch_size < 1:
        raise ConfigError("eval_batch_size", c.eval_batch_size, "expected an integer >= 1")
    if c.lr <= 0:
        raise ConfigError("lr", c.lr, "expected a number > 0")
    if not 0 < c.lr_decay <= 1:
        raise ConfigError("lr_decay", c.lr_decay, "expected a factor in (0, 1]")
    if c.weight_decay < 0:
        raise ConfigError("weight_decay", c.weight_decay, "expected a number >= 0")
    if not 0 <= c.momentum < 1:
        raise ConfigError("momentum", c.momentum, "expected a number in [0, 1)")
    if c.nesterov and (c.momentum == 0 or c.dampening != 0):
        raise ConfigError("nesterov", c.nesterov, "Nesterov needs momentum > 0 and dampening 0")
    if c.crop_padding < 0:
        raise ConfigError("crop_padding", c.crop_padding, "expected an integer >= 0")
    if any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in c.lr_milestones) or list(
        c.lr_milestones
    ) != sorted(set(c.lr_milestones)):
        raise ConfigError("lr_milestones", list(c.lr_milestones),
                          "expected increasing 1-indexed epochs, e.g. [60, 120, 160]")
    if c.dataset == "imagenet":
        if c.arch != "wrn50_2_bottleneck":
            raise ConfigError("arch", c.arch, "imagenet is trained only with arch wrn50_2_bottleneck")
        if c.preprocessing != "meanstd":
            raise ConfigError("preprocessing", c.preprocessing, "imagenet allows only meanstd")
    elif c.arch == "wrn50_2_bottleneck":
        raise ConfigError("arch", c.arch, "wrn50_2_bottleneck is an ImageNet network (dataset imagenet)")
    if c.dataset != "imagenet" and c.image_size != 32:
        raise ConfigError("image_size", c.image_size, f"{c.dataset} images are 32x32")
    if c.dataset == "imagenet" and c.norm_stats != "official":
        raise ConfigError("norm_stats", c.norm_stats, "imagenet uses the standard ImageNet statistics: official")
    if c.crop_padding >= c.image_size:
        raise ConfigError("crop_padding", c.crop_padding, f"expected fewer pixels than the image size {c.image_size}")
    if c.preprocessing == "zca" and c.dataset not in ("cifar10", "cifar100"):
        raise ConfigError("preprocessing", c.preprocessing, "zca is defined for CIFAR only")

    synthetic_sizes(c.data_source)  # raises ConfigError unless "real" or "synthetic:N:M"
    if c.arch == "wrn":
        c = dataclasses.replace(c, block=format_block(parse_block(c.block)))  # one spelling, one run id
        n = blocks_per_group(c.depth, c.block, c.depth_convention)
    elif c.arch == "preact_resnet":
        if c.k != 1:
            raise ConfigError("k", c.k, "preact_resnet is the thin baseline: k must be 1")
        if c.block not in (RunConfig.block, "bottleneck"):
            raise ConfigError("block", c.block, "preact_resnet uses its own bottleneck block: leave block unset")
        if c.dropout:
            raise ConfigError("dropout", c.dropout, "preact_resnet has no dropout (He et al.'s network): 0")
        if (c.depth - 2) % 9 != 0 or c.depth < 11:
            lower = max(11, (c.depth - 2) // 9 * 9 + 2)
            raise ConfigError("depth", c.depth,
                              f"preact_resnet depth must be 9n+2 (nearest: {lower}, {lower + 9})")
        n = (c.depth - 2) // 9
        c = dataclasses.replace(c, block="bottleneck")
    else:
        if c.dropout:
            raise ConfigError("dropout", c.dropout, "wrn50_2_bottleneck has no dropout: 0")
        if (c.depth, c.k) != (50, 2) or c.block not in (RunConfig.block, "bottleneck"):
            raise ConfigError("arch", c.arch, "wrn50_2_bottleneck is fixed: depth 50, k 2, block unset")
        n = None
        c = dataclasses.replace(c, block="bottleneck")
    if config.blocks_per_group is not None and config.blocks_per_group != n:
        raise ConfigError("blocks_per_group", config.blocks_per_group,
                          f"depth {c.depth} with {c.block} ({c.depth_convention} convention) gives {n}")
    return dataclasses.replace(c, blocks_per_group=n, dropout=float(c.dropout))
