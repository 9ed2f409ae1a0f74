"""How a `--until-resolved` launch spends seeds and its tests' level over rounds: the design that the
launcher records and every later report replays (`SequentialDesign`).

The first round runs the spec's seeds for every cell; each later round doubles the seeds (up to
`--max-seeds`) of the cells whose orderings are still undecided. Each round's test has its own level,
α spent in proportion to the seeds added (`alpha_spending`), so that stopping at the first significant
round keeps the chance of calling a false ordering at most α. Which cells a round extends is the
analysis's decision (`analysis.rounds`); what a round trains is `experiments.rounds`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from experiments.profiles import Profile
from wrn.files import atomic_write_json, read_json

ALPHA = 0.05  # the level of every test (its false-positive rate under no effect), spent over a launch's rounds


def rounds(start: int, max_seeds: int) -> list[int]:
    """The seeds per cell at each look of a sequential launch: the spec's seeds, then doubling, up to
    `max_seeds` (5, 10, 20, 40 for 5 up to 40)."""
    out = [start]
    while out[-1] < max_seeds:
        out.append(min(2 * out[-1], max_seeds))
    return out


def alpha_spending(looks: list[int], alpha: float = ALPHA) -> list[float]:
    """The level of each look: α spent in proportion to the seeds added since the last look (so
    Σ α_k = α). Whatever the looks' dependence, the chance that any look rejects a true null is at
    most Σ α_k = α (the union bound), so stopping early keeps the error rate honest."""
    edges = [0, *looks]
    return [alpha * (edges[k + 1] - edges[k]) / looks[-1] for k in range(len(looks))]


@dataclass(frozen=True)
class SequentialDesign:
    """How a `--until-resolved` launch spends seeds: each look's seeds per cell (`looks`, doubling
    from `start` up to `max_seeds`) and its level (`alpha` spent over the looks)."""

    spec: str
    profile: str
    start: int
    max_seeds: int
    alpha: float = ALPHA

    @property
    def looks(self) -> list[int]:
        return rounds(self.start, self.max_seeds)

    @property
    def levels(self) -> list[float]:
        return alpha_spending(self.looks, self.alpha)

    @staticmethod
    def path(results: Path, spec: str, profile: Profile) -> Path:
        return Path(results) / "sequential" / f"{profile.output_stem(spec)}.json"

    def write(self, results: Path, profile: Profile) -> Path:
        path = self.path(results, self.spec, profile)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(path, asdict(self))

    @classmethod
    def read(cls, results: Path, spec: str, profile: Profile) -> SequentialDesign | None:
        """The design recorded for `spec` under `profile` in `results`, if any."""
        path = cls.path(results, spec, profile)
        if not path.is_file():
            return None
        design = cls(**read_json(path))
        return design if design.profile == profile.source else None
