"""The fully resolved description of one training run.

`RunConfig` is flat and frozen on purpose: it is what the run store hashes into a run id, what the
dry run prints, what every result records and what the analysis pivots on. Every deviation from the
paper's recipe is a named field here, so a result never hides how it was produced.

Fields whose paper default depends on the dataset (learning rate, schedule, epochs, augmentation,
preprocessing, dropout rate) or on the state of the official code a table was produced with
(augmentation draws, initialisation) are left as ``None`` by callers and filled by `resolve`, the only
place those defaults live: first the field itself, then the run's `recipe` preset (`RECIPE_PRESETS`:
what the official code did at one point of its history; docs/recipes.md), then the dataset's recipe
(`RECIPES`: paper §3 "Implementation details", the official `scripts/train_cifar.sh` and
`scripts/train_svhn.sh`; docs/paper.md, "Recipe"). `resolve` is also the one validator of a config:
its rules are the table `FIELD_RULES` (what each field may hold on its own) and the functions of
`CROSS_RULES` (what fields may hold together).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from wrn.blocks import BASIC_BLOCK, DEPTH_CONVENTIONS, blocks_per_group, format_block, parse_block
from wrn.errors import ConfigError, suggest

DATASETS = ("cifar10", "cifar100", "svhn", "imagenet")
ARCHS = ("wrn", "preact_resnet", "wrn50_2_bottleneck")
PREPROCESSING = ("meanstd", "zca", "div255", "pixelmean")
NORM_STATS = ("official", "dataset")
PAD_MODES = ("reflect", "zeros")
BN_INITS = ("uniform", "ones")
CONV_INITS = ("fan_in", "fan_out")
PRECISIONS = ("fp32", "bf16", "auto")
CROP_DRAWS = ("per_image", "per_batch")
FLIP_DRAWS = ("per_image", "half_batch")
CHANNELS_LAST = ("auto", "on", "off")
LR_SCALINGS = ("none", "linear")
DATA_ORDERS = ("per_seed", "shared")
INPUT_PIPELINES = ("auto", "pil", "tensor")

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 1000}
# (train, test) images of the real datasets; SVHN trains on train+extra (73,257 + 531,131), the
# paper's "about 600,000 digit images"; ImageNet is ILSVRC-2012 train and val.
DATASET_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "svhn": (604_388, 26_032),
                 "imagenet": (1_281_167, 50_000)}

# The paper's recipe per dataset family. CIFAR: scripts/train_cifar.sh; SVHN: scripts/train_svhn.sh;
# ImageNet: fb.resnet.torch's defaults (the paper says it used that code without giving its settings;
# docs/paper.md, "Discrepancies").
RECIPES: dict[str, dict[str, Any]] = {
    "cifar": dict(
        lr=0.1, lr_milestones=(60, 120, 160), lr_decay=0.2, epochs=200, weight_decay=5e-4,
        batch_size=128, crop_padding=4, hflip=True, preprocessing="zca", paper_dropout=0.3,
        image_size=32, color_augment=False,
    ),
    "svhn": dict(
        lr=0.01, lr_milestones=(80, 120), lr_decay=0.1, epochs=160, weight_decay=5e-4,
        batch_size=128, crop_padding=0, hflip=False, preprocessing="div255", paper_dropout=0.4,
        image_size=32, color_augment=False,
    ),
    "imagenet": dict(
        lr=0.1, lr_milestones=(31, 61), lr_decay=0.1, epochs=90, weight_decay=1e-4,
        batch_size=256, crop_padding=0, hflip=True, preprocessing="meanstd", paper_dropout=0.0,
        image_size=224, color_augment=True,
    ),
}
RECIPE_FAMILY = {"cifar10": "cifar", "cifar100": "cifar", "svhn": "svhn", "imagenet": "imagenet"}

# What the code behind a table did where the paper is silent, by the state of the code (docs/recipes.md
# gives each value's file and commit, or paper section). A preset fills the fields a config leaves
# None, before the dataset's recipe does.
#   v1-2016-05        szagoruyko/wide-residual-networks at 0a4c364 (2016-05-24), the code of the arXiv
#                     v1 links, the shipped logs and the ZCA tables (2-4): augmentation.lua draws one
#                     crop offset per minibatch and flips exactly half of it (BatchFlip before
#                     RandomCrop); models/utils.lua inits convs by fan_out; BN keeps torch/nn's U(0,1);
#                     train.lua draws every epoch's order from an unseeded generator (per seed).
#   official-current  the same repository's train.lua of v2 (5e7ed6c, 2016-11-29, unchanged to its last
#                     commit): per-image crop and flip (torchnet transforms), fan_in init (since ea02518),
#                     and an epoch's order seeded by the epoch alone, the same for every run (shared);
#                     the code of the mean/std tables (5, 6, 9; v2 of the paper, 2016-11).
#   he-2016           He et al.'s own runs of the pre-activation ResNets that Table 5 quotes, as their
#                     papers state the recipe (arXiv:1512.03385 §4.2, arXiv:1603.05027 appendix; in
#                     Caffe): batch 128 on 2 GPUs (64 each: world_size 2, batch norm per GPU), SGD with
#                     momentum 0.9 without Nesterov, weight decay 1e-4, lr 0.1 for 400 iterations at 0.01
#                     first, /10 at 32k and 48k iterations, 64k in all (epochs 83 and 124 of 391
#                     iterations, 164 epochs), per-pixel mean subtraction, 4-pixel zero padding with a
#                     random crop and flip, He init ("as in [13]": fan_in, Caffe's msra default), BN
#                     scale 1.
#   fb-resnet-torch   facebook/fb.resnet.torch, which the paper names for its ImageNet runs (Table 8):
#                     train.lua keeps optim's state (momentum) across drops and uses Nesterov,
#                     dataloader.lua keeps the last partial batch, models/resnet.lua inits convs by
#                     fan_out and BN scale 1, opts.lua trains on 1 GPU unless told (-nGPU).
RECIPE_PRESETS: dict[str, dict[str, Any]] = {
    "v1-2016-05": dict(crop_draw="per_batch", flip_draw="half_batch", conv_init="fan_out", bn_init="uniform",
                       pad_mode="reflect", reset_momentum_on_decay=True, drop_last=True, nesterov=True,
                       data_order="per_seed", world_size=1, warmup_steps=0),
    "official-current": dict(crop_draw="per_image", flip_draw="per_image", conv_init="fan_in", bn_init="uniform",
                             pad_mode="reflect", reset_momentum_on_decay=True, drop_last=True, nesterov=True,
                             data_order="shared", world_size=1, warmup_steps=0),
    "he-2016": dict(crop_draw="per_image", flip_draw="per_image", conv_init="fan_in", bn_init="ones",
                    pad_mode="zeros", reset_momentum_on_decay=False, drop_last=False, nesterov=False,
                    data_order="per_seed", world_size=2, warmup_steps=400, warmup_lr=0.01,
                    preprocessing="pixelmean", lr=0.1, lr_milestones=(83, 124), lr_decay=0.1, epochs=164,
                    weight_decay=1e-4, batch_size=128),
    "fb-resnet-torch": dict(crop_draw="per_image", flip_draw="per_image", conv_init="fan_out", bn_init="ones",
                            pad_mode="zeros", reset_momentum_on_decay=False, drop_last=False, nesterov=True,
                            data_order="per_seed", world_size=1, warmup_steps=0),
}
RECIPE_NAMES = tuple(RECIPE_PRESETS)
# The datasets each preset's code trained (the WRN code had no ImageNet training; He et al.'s recipe
# and fb.resnet.torch's ImageNet one are each for their own data), and the preset a config without
# one gets.
RECIPE_DATASETS = {"v1-2016-05": ("cifar10", "cifar100", "svhn"), "official-current": ("cifar10", "cifar100", "svhn"),
                   "he-2016": ("cifar10", "cifar100"), "fb-resnet-torch": ("imagenet",)}
DEFAULT_RECIPES = {"cifar10": "official-current", "cifar100": "official-current", "svhn": "official-current",
                   "imagenet": "fb-resnet-torch"}
RECIPE_FIELDS = ("preprocessing", "crop_padding", "hflip", "image_size", "color_augment", "epochs", "batch_size",
                 "lr", "lr_milestones", "lr_decay", "weight_decay")
PRESET_FIELDS = tuple(dict.fromkeys(f for preset in RECIPE_PRESETS.values() for f in preset))


def recipe_family(dataset: str) -> str:
    return RECIPE_FAMILY[dataset]


def paper_dropout(dataset: str) -> float:
    """The dropout rate the paper used on `dataset` ("0.3 on CIFAR and 0.4 on SVHN", §3)."""
    return RECIPES[recipe_family(dataset)]["paper_dropout"]


@dataclass(frozen=True)
class RunConfig:
    # The state of the official code whose choices fill the fields below that are left None
    # (`RECIPE_PRESETS`); a field set explicitly is a named deviation from it. None: the dataset's
    # (`DEFAULT_RECIPES`).
    recipe: str | None = None
    # --- data -------------------------------------------------------------------------------
    dataset: str = "cifar10"
    # What the run trains on (`DATA_SOURCES`): "real", "subset:<train>:<test>" (a prepared part of
    # the real data, vouched for by its manifest) or "synthetic:<train>:<test>" (data generated by
    # wrn.data.fake, as the smoke profile's). Part of the run's identity, so a run on a subset or on
    # generated data never poses as a real one.
    data_source: str = "real"
    preprocessing: str | None = None  # meanstd | zca | div255 | pixelmean; None = the paper's default
    norm_stats: str = "official"  # mean/std source: the official constants, or the training set's
    crop_padding: int | None = None  # pixels of padding before the random crop; 0 = no crop
    pad_mode: str | None = None  # official Lua: reflect; He et al. and many peers: zeros
    hflip: bool | None = None
    crop_draw: str | None = None  # per_image, or per_batch: one offset for the whole minibatch (v1 era)
    flip_draw: str | None = None  # per_image (p = 0.5), or half_batch: exactly half of each minibatch (v1 era)
    image_size: int | None = None  # training crop size (ImageNet only; CIFAR/SVHN are 32)
    # ImageNet's augmentation as fb.resnet.torch's (RandomSizedCrop, ColorJitter 0.4, PCA lighting 0.1;
    # wrn/data/imagenet_augment.py); None = the recipe's (on for ImageNet, which alone allows it). false: the
    # suite's earlier torchvision pipeline (RandomResizedCrop, bilinear), kept pixel for pixel so that runs
    # stored before this field existed keep their data under their ids
    color_augment: bool | None = None
    # How ImageNet JPEGs become batches: pil (PIL in DataLoader workers, the portable path), tensor
    # (torchvision.io decoding, on the GPU with nvJPEG under CUDA, then batched crops on the device),
    # auto (tensor on CUDA, pil elsewhere); the path that ran is recorded in the result's runtime
    input_pipeline: str = "auto"
    # Whether an epoch's order, crops and flips follow the run's seed (per_seed: the v1 code drew them
    # from an unseeded generator) or the epoch alone, the same for every seed (shared: train.lua of v2
    # reseeds its data threads with the epoch), so that a table's runs differ in their init alone
    data_order: str | None = None
    # --- model ------------------------------------------------------------------------------
    arch: str = "wrn"
    depth: int = 28
    k: int = 10
    block: str = BASIC_BLOCK
    depth_convention: str = "nominal"  # nominal: N=(d-4)/6 (Table 2); true: N=(d-4)/(3l) (Table 3)
    blocks_per_group: int | None = None  # derived from depth and convention
    dropout: float | bool = 0.0  # True = the paper's rate for the dataset (0.3 CIFAR, 0.4 SVHN)
    bn_init: str | None = None  # uniform: torch/nn's BN weight ~ U(0,1), kept by the official code; ones: gamma = 1
    conv_init: str | None = None  # fan_in: official Lua since ea02518; fan_out: the v1-era code, He et al.
    # --- optimisation -----------------------------------------------------------------------
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_milestones: tuple[int, ...] | None = None  # 1-indexed epochs from which each drop is in effect
    lr_decay: float | None = None
    momentum: float = 0.9
    nesterov: bool | None = None  # the official scripts' Nesterov momentum; He et al.'s Caffe SGD has none
    dampening: float = 0.0
    weight_decay: float | None = None
    reset_momentum_on_decay: bool | None = None  # official Lua rebuilds the optimizer state at a drop
    drop_last: bool | None = None  # official Lua: 'skip-last'; fb.resnet.torch keeps the last batch
    seed: int = 0
    # --- data parallelism (Goyal et al. 2017, arXiv:1706.02677) -----------------------------
    # Processes (one per GPU) that share each step's `batch_size` images, batch_size / world_size
    # each: fb.resnet.torch's ImageNet recipe is 256 = 8 GPUs x 32. Part of the run's identity, since
    # batch norm sees each process's share of the batch unless `sync_bn`.
    world_size: int | None = None
    sync_bn: bool = False  # batch-norm statistics over the whole step's batch (SyncBatchNorm)
    # linear: the learning rate is `lr` x batch_size / the recipe's batch size (Goyal et al. §2.1),
    # the named deviation for global batches larger than the recipe's
    lr_scaling: str = "none"
    warmup_epochs: int = 0  # with linear scaling: ramp per step from `lr` to the scaled rate (§2.2)
    # He et al.'s warm-up (arXiv:1603.05027, appendix): the first `warmup_steps` steps at `warmup_lr`,
    # then the schedule; 0 steps: none
    warmup_steps: int | None = None
    warmup_lr: float | None = None
    # --- systems (recorded; they may change the numerics) -----------------------------------
    precision: str = "fp32"  # as the paper's runs; bf16 autocast, or auto: bf16 on CUDA, fp32 on CPU
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
        return parse_block(self.block)

    @property
    def peak_lr(self) -> float:
        """The rate the schedule starts from after any warm-up: `lr`, or under linear scaling `lr` x
        batch_size / the recipe's batch size (Goyal et al. 2017, §2.1)."""
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / RECIPES[recipe_family(self.dataset)]["batch_size"]
        return self.lr

    def lr_at(self, epoch: int, progress: float = 0.0) -> float:
        """Learning rate of 1-indexed `epoch`, `progress` (the fraction of the epoch's steps done) into
        it. Each milestone m means the drop is in effect from epoch m on, so CIFAR runs epochs 1-59 at
        0.1 and 60-119 at 0.02 as the official code does. Within the `warmup_epochs` the rate climbs
        linearly, step by step, from `lr` to `peak_lr` (Goyal et al. 2017, §2.2, gradual warm-up)."""
        drops = sum(1 for m in self.lr_milestones if epoch >= m)
        peak = self.peak_lr * self.lr_decay**drops
        done = (epoch - 1 + progress) / self.warmup_epochs if self.warmup_epochs else 1.0
        return peak if done >= 1.0 else self.lr + (peak - self.lr) * done

    def lr_at_step(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """The rate of 0-based `step` of 1-indexed `epoch`: `warmup_lr` for the run's first
        `warmup_steps` steps (He et al.'s warm-up), else `lr_at`."""
        if (epoch - 1) * steps_per_epoch + step < self.warmup_steps:
            return self.warmup_lr
        return self.lr_at(epoch, step / steps_per_epoch)

    def warming_in(self, epoch: int, steps_per_epoch: int) -> bool:
        """Whether some step of `epoch` has a rate of its own (a warm-up), so that the engine sets the
        rate step by step rather than once for the epoch."""
        return epoch <= self.warmup_epochs or (epoch - 1) * steps_per_epoch < self.warmup_steps

    @property
    def data_seed(self) -> int:
        """The seed of the data order, crops and flips: the run's, or under a shared data order the
        same for every run (0)."""
        return 0 if self.data_order == "shared" else self.seed


# data_source kinds with a size, "<kind>:<train images>:<test images>": what each one is.
DATA_SOURCES = {
    "subset": "a prepared subset of the real data, checked by its wrn-manifest.json",
    "synthetic": "data generated by wrn.fake_data, as the smoke profile's",
}
_DATA_SOURCE_ALLOWED = ("allowed: real, " + ", or ".join(
    f"{kind}:<train images>:<test images> ({what})" for kind, what in DATA_SOURCES.items())
    + " (e.g. subset:5000:1000)")


def parse_data_source(data_source: str) -> tuple[str, tuple[int, int] | None]:
    """("real", None), or (kind, (train, test)) of a "subset:N:M" or "synthetic:N:M" data source."""
    if data_source == "real":
        return "real", None
    parts = data_source.split(":") if isinstance(data_source, str) else []
    if len(parts) == 3 and parts[0] in DATA_SOURCES and all(p.isdigit() and int(p) > 0 for p in parts[1:]):
        return parts[0], (int(parts[1]), int(parts[2]))
    raise ConfigError("data_source", data_source, _DATA_SOURCE_ALLOWED)


def synthetic_sizes(data_source: str) -> tuple[int, int] | None:
    """(train, test) images of generated data ("synthetic:N:M"); None for the real data or a subset."""
    kind, sizes = parse_data_source(data_source)
    return sizes if kind == "synthetic" else None


def expected_sizes(cfg: RunConfig) -> tuple[int, int]:
    """(train, test) images a run of `cfg` must find: the real dataset's, the subset's or the
    generated data's."""
    return parse_data_source(cfg.data_source)[1] or DATASET_SIZES[cfg.dataset]


def resolved_precision(cfg: RunConfig, device_type: str) -> str:
    """The precision `cfg` trains in on a device of `device_type`: "auto" is bf16 on CUDA, fp32 elsewhere.
    Here rather than in `wrn.runtime`, so that a dry run can show it without importing torch."""
    if cfg.precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return cfg.precision


def resolved_input_pipeline(cfg: RunConfig, device_type: str) -> str:
    """The path a run of `cfg` takes on a `device_type` device: "auto" is tensor on CUDA (nvJPEG), pil
    elsewhere (where decoding competes with training for the same cores anyway)."""
    if cfg.input_pipeline == "auto":
        return "tensor" if device_type == "cuda" else "pil"
    return cfg.input_pipeline


# ------------------------------------------------------------------------------------------------
# The rules of `resolve`


BOOL, INT, NUMBER, MILESTONES = (bool,), (int,), (int, float), (tuple,)
_EXPECTED = {BOOL: "expected true or false", INT: "expected an integer", NUMBER: "expected a number"}


@dataclass(frozen=True)
class FieldRule:
    """What one field may hold on its own: one of `choices`, or a value of `types` (never a bool
    unless bool is one of them) for which `ok` holds; otherwise a `ConfigError` saying `allowed`."""

    field: str
    types: tuple[type, ...] = ()
    ok: Callable[[Any], bool] | None = None
    allowed: str = ""
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> None:
        shown = list(value) if isinstance(value, tuple) else value
        if self.choices:
            if value not in self.choices:
                raise ConfigError(self.field, value, f"allowed: {', '.join(self.choices)}"
                                                     f"{suggest(str(value), self.choices)}")
            return
        if (isinstance(value, bool) and bool not in self.types) or not isinstance(value, self.types):
            raise ConfigError(self.field, shown, _EXPECTED.get(self.types, self.allowed))
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(self.field, value, "expected a finite number")
        if self.ok is not None and not self.ok(value):
            raise ConfigError(self.field, shown, self.allowed)


def _choice(field: str, choices: tuple[str, ...]) -> FieldRule:
    return FieldRule(field, choices=choices)


def _at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: value >= low


def _increasing_epochs(milestones: tuple) -> bool:
    return (all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones)
            and list(milestones) == sorted(set(milestones)))


FIELD_RULES: tuple[FieldRule, ...] = (
    _choice("preprocessing", PREPROCESSING),
    _choice("norm_stats", NORM_STATS),
    _choice("pad_mode", PAD_MODES),
    _choice("depth_convention", DEPTH_CONVENTIONS),
    _choice("bn_init", BN_INITS),
    _choice("conv_init", CONV_INITS),
    _choice("precision", PRECISIONS),
    _choice("recipe", RECIPE_NAMES),
    _choice("crop_draw", CROP_DRAWS),
    _choice("flip_draw", FLIP_DRAWS),
    _choice("channels_last", CHANNELS_LAST),
    _choice("lr_scaling", LR_SCALINGS),
    _choice("input_pipeline", INPUT_PIPELINES),
    _choice("data_order", DATA_ORDERS),
    *(FieldRule(name, BOOL) for name in ("hflip", "nesterov", "reset_momentum_on_decay", "drop_last",
                                         "compile", "tf32", "sync_bn", "color_augment")),
    FieldRule("depth", INT),
    FieldRule("k", INT, _at_least(1), "the widening factor must be an integer >= 1"),
    FieldRule("epochs", INT, _at_least(1), "expected an integer >= 1"),
    FieldRule("batch_size", INT, _at_least(1), "expected an integer >= 1"),
    FieldRule("eval_batch_size", INT, _at_least(1), "expected an integer >= 1"),
    FieldRule("seed", INT),
    FieldRule("world_size", INT, _at_least(1), "expected an integer >= 1 (processes, one per GPU)"),
    FieldRule("warmup_epochs", INT, _at_least(0), "expected an integer >= 0"),
    FieldRule("warmup_steps", INT, _at_least(0), "expected an integer >= 0"),
    FieldRule("crop_padding", INT, _at_least(0), "expected an integer >= 0"),
    FieldRule("image_size", INT),
    FieldRule("lr", NUMBER, lambda v: v > 0, "expected a number > 0"),
    FieldRule("lr_decay", NUMBER, lambda v: 0 < v <= 1, "expected a factor in (0, 1]"),
    FieldRule("momentum", NUMBER, lambda v: 0 <= v < 1, "expected a number in [0, 1)"),
    FieldRule("dampening", NUMBER),
    FieldRule("weight_decay", NUMBER, _at_least(0), "expected a number >= 0"),
    FieldRule("dropout", NUMBER, lambda v: 0 <= v < 1, "allowed: a probability in [0, 1), or true/false"),
    FieldRule("lr_milestones", MILESTONES, _increasing_epochs,
              "expected increasing 1-indexed epochs, e.g. [60, 120, 160]"),
)


def _nesterov_needs_momentum(c: RunConfig) -> None:
    if c.nesterov and (c.momentum == 0 or c.dampening != 0):
        raise ConfigError("nesterov", c.nesterov, "Nesterov needs momentum > 0 and dampening 0")


def _imagenet_pairs_with_its_network(c: RunConfig) -> None:
    if c.dataset == "imagenet":
        if c.arch != "wrn50_2_bottleneck":
            raise ConfigError("arch", c.arch, "imagenet is trained only with arch wrn50_2_bottleneck")
        if c.preprocessing != "meanstd":
            raise ConfigError("preprocessing", c.preprocessing, "imagenet allows only meanstd")
        if c.norm_stats != "official":
            raise ConfigError("norm_stats", c.norm_stats, "imagenet uses the standard ImageNet statistics: official")
    elif c.arch == "wrn50_2_bottleneck":
        raise ConfigError("arch", c.arch, "wrn50_2_bottleneck is an ImageNet network (dataset imagenet)")


def _image_size_fits_the_dataset(c: RunConfig) -> None:
    if c.dataset != "imagenet" and c.image_size != 32:
        raise ConfigError("image_size", c.image_size, f"{c.dataset} images are 32x32")
    if c.crop_padding >= c.image_size:
        raise ConfigError("crop_padding", c.crop_padding, f"expected fewer pixels than the image size {c.image_size}")


def _cifar_only_preprocessing(c: RunConfig) -> None:
    if c.preprocessing in ("zca", "pixelmean") and c.dataset not in ("cifar10", "cifar100"):
        raise ConfigError("preprocessing", c.preprocessing, f"{c.preprocessing} is defined for CIFAR only")


def _data_source_is_known(c: RunConfig) -> None:
    """A subset is part of the real dataset: one of its whole size would be the real data under
    another run id."""
    kind, sizes = parse_data_source(c.data_source)
    if kind == "subset":
        full = DATASET_SIZES[c.dataset]
        if sizes == full or sizes[0] > full[0] or sizes[1] > full[1]:
            raise ConfigError("data_source", c.data_source,
                              f"a {c.dataset} subset has at most {full[0]} train and {full[1]} test images "
                              "and is not the whole dataset (that is data_source=real)")


def _imagenet_draws_per_image(c: RunConfig) -> None:
    """ImageNet's DataLoader pipeline transforms image by image: it has no minibatch-wide draws."""
    for name in ("crop_draw", "flip_draw"):
        if c.dataset == "imagenet" and getattr(c, name) != "per_image":
            raise ConfigError(name, getattr(c, name), "imagenet draws its crops and flips per image: per_image")


def _recipe_fits_the_dataset(c: RunConfig) -> None:
    fits = RECIPE_DATASETS[c.recipe]
    if c.dataset not in fits:
        others = [name for name, datasets in RECIPE_DATASETS.items() if c.dataset in datasets]
        raise ConfigError("recipe", c.recipe, f"is a recipe for {', '.join(fits)}; for {c.dataset}: {', '.join(others)}")


def _batch_splits_over_the_processes(c: RunConfig) -> None:
    if c.batch_size % c.world_size:
        raise ConfigError("world_size", c.world_size, f"must divide batch_size {c.batch_size}: every process "
                          "trains an equal share of each step's batch")
    rest = expected_sizes(c)[0] % c.batch_size
    if not c.drop_last and 0 < rest < c.world_size:
        raise ConfigError("world_size", c.world_size, f"leaves a process no image of the last batch ({rest} images, "
                          "kept since drop_last is false): drop it, or use fewer processes")
    if c.sync_bn and c.world_size == 1:
        raise ConfigError("sync_bn", c.sync_bn, "synchronises batch norm across processes: needs world_size > 1")


def _warmup_goes_with_linear_scaling(c: RunConfig) -> None:
    if c.warmup_epochs and c.lr_scaling != "linear":
        raise ConfigError("warmup_epochs", c.warmup_epochs, "the gradual warm-up climbs to a linearly scaled "
                          "rate: set lr_scaling = linear, or warmup_epochs = 0")
    if c.warmup_steps and c.warmup_epochs:
        raise ConfigError("warmup_steps", c.warmup_steps, "one warm-up at a time: warmup_steps = 0 with warmup_epochs")
    if c.warmup_steps and not (isinstance(c.warmup_lr, (int, float)) and not isinstance(c.warmup_lr, bool)
                               and math.isfinite(c.warmup_lr) and c.warmup_lr > 0):
        raise ConfigError("warmup_lr", c.warmup_lr, "the rate of the warm-up steps: expected a number > 0")
    if not c.warmup_steps and c.warmup_lr is not None:
        raise ConfigError("warmup_lr", c.warmup_lr, "has no steps to apply to: set warmup_steps > 0, or leave it unset")


def _imagenet_only_options(c: RunConfig) -> None:
    if c.dataset != "imagenet":
        if c.color_augment:
            raise ConfigError("color_augment", c.color_augment, "fb.resnet.torch's colour augmentation is "
                              "ImageNet's: false")
        if c.input_pipeline != "auto":
            raise ConfigError("input_pipeline", c.input_pipeline,
                              f"{c.dataset} lives on the device whole: auto (only ImageNet has an input pipeline)")


CROSS_RULES: tuple[Callable[[RunConfig], None], ...] = (
    _nesterov_needs_momentum, _imagenet_pairs_with_its_network, _image_size_fits_the_dataset,
    _recipe_fits_the_dataset, _cifar_only_preprocessing, _data_source_is_known, _imagenet_draws_per_image,
    _batch_splits_over_the_processes, _warmup_goes_with_linear_scaling, _imagenet_only_options,
)


def _wrn_network(c: RunConfig) -> RunConfig:
    block = format_block(parse_block(c.block))  # one spelling, one run id
    return dataclasses.replace(c, block=block, blocks_per_group=blocks_per_group(c.depth, block, c.depth_convention))


def _preact_resnet_network(c: RunConfig) -> RunConfig:
    if c.k != 1:
        raise ConfigError("k", c.k, "preact_resnet is the thin baseline: k must be 1")
    if c.block not in (BASIC_BLOCK, "bottleneck"):
        raise ConfigError("block", c.block, "preact_resnet uses its own bottleneck block: leave block unset")
    if c.dropout:
        raise ConfigError("dropout", c.dropout, "preact_resnet has no dropout (He et al.'s network): 0")
    if (c.depth - 2) % 9 != 0 or c.depth < 11:
        lower = max(11, (c.depth - 2) // 9 * 9 + 2)
        raise ConfigError("depth", c.depth, f"preact_resnet depth must be 9n+2 (nearest: {lower}, {lower + 9})")
    return dataclasses.replace(c, block="bottleneck", blocks_per_group=(c.depth - 2) // 9)


def _wrn50_2_network(c: RunConfig) -> RunConfig:
    if c.dropout:
        raise ConfigError("dropout", c.dropout, "wrn50_2_bottleneck has no dropout: 0")
    if (c.depth, c.k) != (50, 2) or c.block not in (BASIC_BLOCK, "bottleneck"):
        raise ConfigError("arch", c.arch, "wrn50_2_bottleneck is fixed: depth 50, k 2, block unset")
    return dataclasses.replace(c, block="bottleneck", blocks_per_group=None)


# arch -> the function that checks its network fields and derives blocks_per_group
NETWORKS: dict[str, Callable[[RunConfig], RunConfig]] = {
    "wrn": _wrn_network, "preact_resnet": _preact_resnet_network, "wrn50_2_bottleneck": _wrn50_2_network,
}


def resolve(config: RunConfig) -> RunConfig:
    """Fill every dataset-dependent default from the paper's recipe and validate every field.

    The result is what is hashed, run and recorded; `resolve(resolve(c)) == resolve(c)`."""
    _choice("dataset", DATASETS).check(config.dataset)
    _choice("arch", ARCHS).check(config.arch)
    if config.recipe is None:
        config = dataclasses.replace(config, recipe=DEFAULT_RECIPES[config.dataset])
    _choice("recipe", RECIPE_NAMES).check(config.recipe)
    c = _fill_recipe(config)
    for rule in FIELD_RULES:
        rule.check(getattr(c, rule.field))
    for rule in CROSS_RULES:
        rule(c)
    resolved = NETWORKS[c.arch](c)
    if config.blocks_per_group is not None and config.blocks_per_group != resolved.blocks_per_group:
        raise ConfigError("blocks_per_group", config.blocks_per_group,
                          f"depth {c.depth} with {resolved.block} ({c.depth_convention} convention) gives "
                          f"{resolved.blocks_per_group}")
    return dataclasses.replace(resolved, dropout=float(c.dropout))


def _fill_recipe(config: RunConfig) -> RunConfig:
    """`config` with every unset field taken from its recipe preset, then from its dataset's recipe,
    ``dropout=True/False`` turned into the paper's rate / 0, and milestones as a tuple."""
    recipe = RECIPES[recipe_family(config.dataset)]
    defaults = {**{name: recipe[name] for name in RECIPE_FIELDS}, **RECIPE_PRESETS[config.recipe]}
    updates = {name: value for name, value in defaults.items() if getattr(config, name) is None}
    if isinstance(config.dropout, bool):
        updates["dropout"] = recipe["paper_dropout"] if config.dropout else 0.0
    milestones = updates.get("lr_milestones", config.lr_milestones)
    if isinstance(milestones, list):
        updates["lr_milestones"] = tuple(milestones)
    return dataclasses.replace(config, **updates)
