"""Which cells the next round of a `--until-resolved` launch extends, and what its rounds are expected
to decide: the analysis's side of a sequential launch (the runs of a round: `experiments.rounds`).

After each round the orderings are decided as the report decides them (`analysis.verdicts.
decide_orderings`, replaying the looks of the recorded `SequentialDesign`): `cells_to_extend` gives
the cells of orderings still unresolved that `seeds_needed` says can be resolved within the maximum.
Before a launch, `plan_rounds` projects the rounds: which cells each would extend, and which orderings
it is expected to decide (`analysis.tables.expected_resolution`), so that a budget of GPU-hours can be
spent on the rounds that fit it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.collect import collect_spec
from analysis.tables import build_table, expected_resolution
from experiments.plan import PlannedRun, expand
from experiments.profiles import Profile
from experiments.rounds import round_runs
from experiments.sequential import SequentialDesign
from experiments.spec import Spec
from wrn.config import RunConfig


def cells_to_extend(spec: Spec, results: Path, profile: Profile, overrides: dict,
                    design: SequentialDesign) -> set[RunConfig]:
    """The cells of the orderings that the runs stored so far leave unresolved but resolvable."""
    table = build_table(spec, collect_spec(spec, results, profile, overrides), design)
    return {table.cells.at[i, "config"].network for pair, ordering in table.orderings.items() if ordering.active
            for i in pair}


@dataclass(frozen=True)
class RoundPlan:
    """One projected round: its seeds per extended cell, the cells it extends (all of them in the
    first), every run of the launch up to it, and the orderings expected decided by its end."""

    look: int
    seeds: int
    cells: int
    runs: list[PlannedRun]  # every run of the rounds up to this one
    decided: int
    orderings: int


def plan_rounds(spec: Spec, results: Path, profile: Profile, overrides: dict, design: SequentialDesign
                ) -> list[RoundPlan]:
    """The rounds of a sequential launch as the runs stored so far (or the planning prior) project
    them: a later round extends the cells of the orderings not expected decided before it that the
    launch would follow (`analysis.tables.Expectation`)."""
    table = build_table(spec, collect_spec(spec, results, profile, overrides), design)
    expected = expected_resolution(table, design)
    cells = table.cells
    rounds: list[RoundPlan] = []
    so_far: dict[str, PlannedRun] = {}
    for look, seeds in enumerate(design.looks):
        if look == 0:
            extend: set[RunConfig] = set()
            count = len({run.config.network for run in expand(spec, profile, overrides, seeds=design.start)})
        else:
            extend = {cells.at[i, "config"].network for e in expected if e.extended and (e.look is None or e.look >= look)
                      for i in (e.variant, e.baseline)}
            count = len(extend)
            if not extend:
                break
        so_far.update((run.run_id, run) for run in round_runs(spec, profile, overrides, design, look, extend))
        decided = sum(e.look is not None and e.look <= look for e in expected)
        rounds.append(RoundPlan(look, seeds, count, list(so_far.values()), decided, len(expected)))
    return rounds
