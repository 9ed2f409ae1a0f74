"""Spending seeds where they decide something: the runs of each round of a `--until-resolved` launch.

The first round runs the spec's seeds for every cell. After each round the orderings are decided as
the report decides them (`analysis.verdicts.decide_orderings`, replaying the looks of the recorded
`SequentialDesign`); the next round gives more seeds (doubling, up to `--max-seeds`) only to the
variant and baseline cells of orderings that are still unresolved and that `seeds_needed` says can be
resolved within the maximum. A round's runs are a function of the runs already stored, so a launch
that is stopped and started again trains nothing twice and carries on with the round it was in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from analysis.collect import collect_spec
from analysis.tables import build_table
from analysis.verdicts import SequentialDesign, baseline_pairs
from experiments.plan import PlannedRun, expand
from experiments.profiles import Profile
from experiments.spec import Spec
from wrn.config import RunConfig


def network(config: RunConfig) -> RunConfig:
    """A run's cell: its config with the seed set aside."""
    return dataclasses.replace(config, seed=0)


def round_runs(spec: Spec, profile: Profile, overrides: dict, design: SequentialDesign, look: int,
               extend: set[RunConfig]) -> list[PlannedRun]:
    """The runs of round `look` (0-based): the spec's seeds for every cell, and the seeds of this look
    for the cells in `extend`."""
    seeds = design.looks[look]
    return [run for run in expand(spec, profile, overrides, seeds=seeds)
            if run.config.seed < design.start or network(run.config) in extend]


def worst_case_runs(spec: Spec, profile: Profile, overrides: dict, design: SequentialDesign) -> list[PlannedRun]:
    """Every run a sequential launch may train: every cell of an ordering to the maximum seeds."""
    first = expand(spec, profile, overrides, seeds=design.start)
    networks = {i: network(run.config) for i, run in enumerate(first)}
    compared = {networks[k] for pair in baseline_pairs(networks, spec.table.baseline, spec.table.columns)
                for k in pair}
    return round_runs(spec, profile, overrides, design, len(design.looks) - 1, compared)


def cells_to_extend(spec: Spec, results: Path, profile: Profile, overrides: dict,
                    design: SequentialDesign) -> set[RunConfig]:
    """The cells of the orderings that the runs stored so far leave unresolved but resolvable."""
    table = build_table(spec, collect_spec(spec, results, profile, overrides), design)
    return {network(table.cells.at[i, "config"]) for pair, ordering in table.orderings.items() if ordering.active
            for i in pair}
