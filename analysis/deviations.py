"""What a table cell changes relative to its baseline, in words: the "deviation" row key of an
ablation whose rows differ in one setting each (the `deviations` spec; any spec may lay its rows out
by it with ``[table] rows = ["deviation"]``).

A deviation is read off the resolved configs, so it names what really differs, whichever layer set
it: "precision = bf16", "recipe = official-current". Fields a recipe preset implies are left out
when the recipe itself is what changed (`wrn.recipes.RECIPE_PRESETS`), and fields that follow from
others (blocks per group from depth) never count.
"""

from __future__ import annotations

from wrn.config import RunConfig
from wrn.recipes import RECIPE_PRESETS

BASELINE = "none (the baseline)"
BEST_EPOCH = "best test epoch reported, not the final one"
DERIVED_FIELDS = ("seed", "blocks_per_group")  # set by others, never a deviation of their own


def describe(config: RunConfig, baseline: RunConfig) -> str:
    """The settings in which `config` departs from `baseline`, e.g. "conv_init = fan_in". When the
    recipe is what changed, the settings it implies are left out and those that depart from it are
    named, even where they equal the baseline's ("recipe = official-current, conv_init = fan_out")."""
    mine, theirs = config.to_dict(), baseline.to_dict()
    changed = {f: v for f, v in mine.items() if v != theirs[f] and f not in DERIVED_FIELDS}
    if "recipe" in changed:
        preset = RECIPE_PRESETS[config.recipe]
        changed = {f: v for f, v in mine.items() if f == "recipe"
                   or (f in preset and preset[f] != _comparable(v))
                   or (f in changed and f not in preset)}
    if not changed:
        return BASELINE
    return ", ".join(f"{f} = {_shown(v)}" for f, v in changed.items())


def _comparable(value):
    return tuple(value) if isinstance(value, list) else value


def _shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
