"""The named training recipes: what the paper and the code behind each table did, as tables of field
values that `wrn.config.resolve` fills a run's unset fields from.

Two kinds, applied in this order after the fields a config sets itself: the run's `recipe` preset
(`RECIPE_PRESETS`: what the official code did at one point of its history; docs/recipes.md), then
its dataset's recipe (`RECIPES`: paper §3 "Implementation details", the official
`scripts/train_cifar.sh` and `scripts/train_svhn.sh`; docs/paper.md, "Recipe"). They are data, kept
apart from `RunConfig` and its rules (wrn.config) so that the sources of every default can be read,
and extended, in one place.
"""

from __future__ import annotations

from typing import Any

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
