"""Planning: a spec under a profile, with the command line's overrides and seeds, becomes the list of
runs to execute, each named by the hash of its resolved config (and, for a timing measurement, of
its timing block).

The layers of a run, merged in order (the later wins): recipe defaults ← spec base ←
base_by_dataset ← grid ← row ← profile data source ← profile config ← profile
config_by_dataset[dataset] ← --set overrides; then the seed. Excludes apply to the spec's own
configs (before the profile), since they describe the paper's table. Seeds are the outer loop, so a
partly finished sweep already holds one complete table.

Two rows that become one run are never silently merged. When a `--set` override does it, it erased
the factor the table studies: an error. When a profile does it (the `fast` profile's bf16 makes the
`deviations` spec's "precision = bf16" row its base row), the later row is that run already: it drops
out of the plan, and `collapsed_rows` says which, for the dry run, the launch and the report to note.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from experiments.profiles import PAPER, Profile, load_profile
from experiments.schema import (SETTABLE_FIELDS, SpecError, check_field_name, check_value, display_path, fail,
                                parse_seeds)
from experiments.spec import Spec, matches, merge_layers, resolve_merged
from experiments.store import run_id
from wrn.config import RunConfig
from wrn.names import render_label


@dataclass(frozen=True)
class PlannedRun:
    """One run to execute: its id (hash of the resolved config), the spec's name, the network's paper
    label and the resolved config. `timing` is None for training runs and {batch_size, warmup,
    repeats} for a timing spec's measurements."""

    run_id: str
    spec: str
    label: str
    config: RunConfig
    timing: dict[str, int] | None = None


def expand(spec: Spec, profile: Profile | str = "paper", overrides: dict[str, Any] | None = None,
           seeds: int | None = None) -> list[PlannedRun]:
    """The runs of `spec` under `profile` (a `Profile` or a profile name), in run order.

    `overrides` are `parse_overrides` output (the CLI's --set), applied last. `seeds` (n: seeds
    0..n-1) replaces the profile's and the spec's seeds. A row the profile makes another row's run
    drops out (`collapsed_rows`)."""
    return _plan(spec, profile, overrides, seeds)[0]


def collapsed_rows(spec: Spec, profile: Profile | str = "paper", overrides: dict[str, Any] | None = None) -> list[str]:
    """One sentence per row of `spec` that `profile` makes the same run as an earlier row, dropped from
    its plan: "under profile fast, rows[1] (precision = bf16) is the run of rows[0] (WRN-16-4): not
    planned apart"."""
    return list(_plan(spec, profile, overrides, None)[1].values())


def _plan(spec: Spec, profile: Profile | str, overrides: dict[str, Any] | None,
          seeds: int | None) -> tuple[list[PlannedRun], dict[str, str]]:
    """(the runs, {position: sentence} of the rows the profile collapsed) of `expand`."""
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    overrides = dict(overrides or {})
    for field, value in overrides.items():
        check_field_name("--set", "key", field, SETTABLE_FIELDS)
        check_value("--set", field, field, value)
    seed_list = _seeds(spec, profile, seeds)
    timing = {**spec.timing, **profile.timing} if spec.kind == "timing" else None
    profile_file = display_path(profile.path)
    layered = []
    for net in spec.networks:
        merged, sources = merge_layers([
            (profile_file, f"{profile.name}.data", _data_source(profile)),
            (profile_file, f"{profile.name}.config", profile.config),
            (profile_file, f"{profile.name}.config_by_dataset.{net.dataset}",
             profile.config_by_dataset.get(net.dataset, {})),
            ("--set", "", overrides),
        ])
        layered.append(({**net.fields, **merged}, {**net.sources, **sources}, net.position))
    own_fields = {net.position: net.fields for net in spec.networks}
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    collapsed: dict[str, str] = {}
    for seed in seed_list:
        for fields_, sources, position in layered:
            if position in collapsed:
                continue
            config = resolve_merged({**fields_, "seed": seed}, sources, spec.where)
            measured = None if timing is None else {**timing, "batch_size": config.batch_size}
            if measured is not None and config.world_size > 1:
                raise SpecError(f"{spec.where}: world_size={config.world_size} ({position}): a timing measurement "
                                "is one process's step: allowed: world_size = 1 (benchmarks/ddp_step.py times "
                                "a data-parallel step)")
            rid = run_id(config, measured)
            label = render_label(config)
            if rid in seen:
                if profile.name != PAPER and (not overrides or position in _plan(spec, profile, None, [seed])[1]):
                    changed = ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
                                        for k, v in own_fields[position].items() if own_fields[seen[rid]].get(k) != v)
                    collapsed[position] = (f"under profile {profile.name}, {position} ({changed}) is the run of "
                                           f"{seen[rid]} ({label}): not planned apart")
                    continue
                raise SpecError(f"{spec.where}: {seen[rid]} and {position} become the same run {label} (seed "
                                f"{seed}, run id {rid}) under profile {profile.name!r} and --set {overrides}: "
                                "allowed: overrides that keep the spec's runs distinct")
            seen[rid] = position
            runs.append(PlannedRun(run_id=rid, spec=spec.name, label=label, config=config, timing=measured))
    return runs, collapsed


def _seeds(spec: Spec, profile: Profile, seeds: int | None) -> tuple[int, ...]:
    """--seeds over the profile's seeds over the spec's."""
    if seeds is not None:
        return parse_seeds("--seeds", "seeds", seeds)
    if profile.seeds is not None:
        return tuple(range(profile.seeds))
    return spec.seeds


def _data_source(profile: Profile) -> dict[str, Any]:
    """A profile's `data` table as the run-config field that makes it part of each run's identity."""
    data = profile.data or {}
    if not data.get("synthetic"):
        return {}
    return {"data_source": f"synthetic:{data['train_images']}:{data['test_images']}"}


def parse_overrides(items: Iterable[str], flag: str = "--set", known: tuple[str, ...] = SETTABLE_FIELDS
                    ) -> dict[str, Any]:
    """The CLI's ``--set key=value`` list as a partial config (or, with `flag` "--only" and `known`
    SELECT_FIELDS, a selection of runs, which may also name a network by its label).

    Values are TOML literals (2, 0.3, true, [60, 120]); anything that is not one is a string, so
    ``block=B(1,3,1)`` and ``dataset=cifar100`` need no quotes. Ranges are checked when the runs are
    resolved, where the message names the override."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise fail(flag, "item", item, "expected key=value, e.g. epochs=2 or lr_milestones=[60,120]")
        key, text = (part.strip() for part in item.split("=", 1))
        check_field_name(flag, "key", key, known)
        if key in out:
            raise fail(flag, key, text, "given twice; give each field once")
        value = _toml_literal(text)
        check_value(flag, key, key, value)
        out[key] = value
    return out


def select(runs: list[PlannedRun], selection: dict[str, Any], spec: Spec) -> list[PlannedRun]:
    """The runs of `runs` that match the partial config `selection` (`experiments.spec.matches`): the
    part of a spec that `--only` trains. Selecting none is an error naming the selection."""
    chosen = [r for r in runs if matches(selection, r.config)]
    if not chosen:
        shown = ", ".join(f"{k}={v}" for k, v in selection.items())
        raise SpecError(f"--only: {shown}: selects none of the {len(runs)} runs of {spec.name}")
    return chosen


def _toml_literal(text: str) -> Any:
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["value"] if list(parsed) == ["value"] else text
