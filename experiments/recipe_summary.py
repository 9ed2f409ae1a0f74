"""The training recipe behind a launch's runs, in words, as a dry run prints it.

A run's `recipe` names the code it follows (`wrn.recipes.RECIPE_PRESETS`; docs/recipes.md), and the
dataset fills the rest; what that resolves to (the schedule, the optimizer, the batch and its split,
the augmentation, the init and the data order) is what a reader checks before spending GPU-hours, so
the dry run says it, one line per distinct recipe.
"""

from __future__ import annotations

from wrn.config import RunConfig

BN_SCALES = {"uniform": "U(0,1)", "ones": "1"}  # `RunConfig.bn_init` as the recipe's words


def describe_training(c: RunConfig) -> str:
    """A resolved config's training recipe: schedule; batch; optimizer; data; init."""
    lr = f"lr {c.lr:g}"
    if c.warmup_steps:
        lr += f" after {c.warmup_steps} steps at {c.warmup_lr:g}"
    if c.lr_scaling == "linear":
        lr += f", linearly scaled to {c.peak_lr:g}" + (f" over {c.warmup_epochs} epochs" if c.warmup_epochs else "")
    drops = ", ".join(map(str, c.lr_milestones))
    schedule = f"{lr}, x{c.lr_decay:g} from epoch{'s' if len(c.lr_milestones) > 1 else ''} {drops} of {c.epochs}"
    batch = f"batch {c.batch_size}"
    if c.world_size > 1:
        bn = "batch norm over the whole batch" if c.sync_bn else "batch norm per process"
        batch += f" over {c.world_size} processes ({bn})"
    batch += ", the last partial batch " + ("dropped" if c.drop_last else "kept")
    optimizer = (f"SGD momentum {c.momentum:g} {'with' if c.nesterov else 'without'} Nesterov, weight decay "
                 f"{c.weight_decay:g}, momentum {'reset' if c.reset_momentum_on_decay else 'kept'} at a drop")
    crop = (f"{c.crop_padding}-pixel {c.pad_mode} padding and crops drawn {c.crop_draw.replace('_', ' ')}"
            if c.crop_padding else "no crops")
    flip = f"flips {c.flip_draw.replace('_', ' ')}" if c.hflip else "no flips"
    data = f"{c.preprocessing}, {crop}, {flip}, data order {c.data_order.replace('_', ' ')}"
    init = f"convolutions {c.conv_init.replace('_', '-')} init, batch-norm scale {BN_SCALES[c.bn_init]}"
    return "; ".join([schedule, batch, optimizer, data, init])


def recipe_lines(configs: list[RunConfig]) -> list[str]:
    """One line per distinct training recipe of `configs` (resolved), naming its recipe and datasets."""
    by_text: dict[str, tuple[str, list[str]]] = {}
    for c in configs:
        text = describe_training(c)
        recipe, datasets = by_text.setdefault(text, (c.recipe, []))
        if c.dataset not in datasets:
            datasets.append(c.dataset)
    return [f"  {recipe} ({', '.join(datasets)}): {text}" for text, (recipe, datasets) in by_text.items()]
