"""The runs of each round of a `--until-resolved` launch (`experiments.sequential.SequentialDesign`).

The first round runs the spec's seeds for every cell; a later round gives the seeds of its look only
to the cells it extends, which the analysis decides from the runs stored so far (`analysis.rounds`:
the variant and baseline cells of orderings still unresolved but resolvable within the maximum). A
round's runs are a function of the runs already stored, so a launch that is stopped and started again
trains nothing twice and carries on with the round it was in.
"""

from __future__ import annotations

from experiments.plan import PlannedRun, expand
from experiments.profiles import Profile
from experiments.sequential import SequentialDesign
from experiments.spec import Spec, baseline_pairs
from wrn.config import RunConfig


def round_runs(spec: Spec, profile: Profile, overrides: dict, design: SequentialDesign, look: int,
               extend: set[RunConfig]) -> list[PlannedRun]:
    """The runs of round `look` (0-based): the spec's seeds for every cell, and the seeds of this look
    for the cells in `extend`."""
    seeds = design.looks[look]
    return [run for run in expand(spec, profile, overrides, seeds=seeds)
            if run.config.seed < design.start or run.config.network in extend]


def worst_case_runs(spec: Spec, profile: Profile, overrides: dict, design: SequentialDesign) -> list[PlannedRun]:
    """Every run a sequential launch may train: every cell of an ordering to the maximum seeds."""
    first = expand(spec, profile, overrides, seeds=design.start)
    networks = {i: run.config.network for i, run in enumerate(first)}
    compared = {networks[k] for pair in baseline_pairs(networks, spec.table.baseline, spec.table.columns)
                for k in pair}
    return round_runs(spec, profile, overrides, design, len(design.looks) - 1, compared)
