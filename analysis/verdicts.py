"""The verdicts of a table: is each cell consistent with the paper, and do our runs support each of the
paper's orderings? The statistics are `analysis.stats`; this module applies them to a table's cells
and says, in words, what the seeds run so far can decide.

- **Cell against the paper** (`verdict_vs_paper`): our median against the paper's value, both with
  seed noise: σ pooled over the finished cells of the same table column (dataset), or the prior
  when too few runs are pooled. Holm's correction over the table's tested cells keeps the chance
  that a faithful reproduction shows any flag at 5 %, so a flag is worth a look. Only error metrics
  are judged (a time or a parameter count is no sample of seed noise).
- **Orderings** (`verdict` of each variant against its baseline): the contrast of the two cells in
  their column's cells × seeds model, at level 5 %, per comparison (each ordering is its own claim of
  the paper), with the seeds per side that 80 % power to resolve the paper's difference would need.
- **Sequential launches** (`--until-resolved`) look at the orderings after each round of seeds; the
  level of each look is spent from 5 % (`analysis.stats.alpha_spending`) and the launcher records
  its design, so that a report made later replays the same looks and reaches the same verdicts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import stats
from experiments.profiles import Profile
from experiments.spec import matches
from wrn.config import RunConfig, expected_sizes
from wrn.files import atomic_write_json, read_json
from wrn.names import render_label

ERROR_METRICS = ("test_error", "top1_error", "top5_error")
NOT_KEY_FIELDS = ("seed",)


# --------------------------------------------------------------------------------------------------
# Cells against the paper


def cell_verdicts(cells: pd.DataFrame, values: dict[int, dict[int, float]], metric: str,
                  column_field: str | None) -> pd.DataFrame:
    """Per cell (row index of `cells`): sigma, sigma_source, sigma_df, p_value, p_adjusted and
    verdict_vs_paper. `values` are each cell's finished runs, {seed: value}. A cell whose paper number
    is of another recipe than its runs (`paper_recipe`) is not tested: "not_comparable"."""
    out = pd.DataFrame(index=cells.index, columns=["sigma", "sigma_source", "sigma_df", "p_value",
                                                   "p_adjusted", "verdict_vs_paper"], dtype=object)
    out["verdict_vs_paper"] = ""
    if metric not in ERROR_METRICS:
        return out
    with_paper = [i for i in cells.index if math.isfinite(cells.at[i, "paper"]) and cells.at[i, "config"] is not None]
    other_recipe = {i for i in with_paper if cells.at[i, "paper_recipe"]
                    and cells.at[i, "paper_recipe"] != cells.at[i, "config"].recipe}
    out.loc[list(other_recipe), "verdict_vs_paper"] = stats.NOT_COMPARABLE
    tested = [i for i in with_paper if i not in other_recipe]
    columns = {i: cells.at[i, column_field] if column_field else None for i in cells.index}
    tests = {}
    for column in dict.fromkeys(columns[i] for i in tested):
        members = [i for i in cells.index if columns[i] == column and cells.at[i, "config"] is not None]
        pooled = stats.noise([list(values.get(i, {}).values()) for i in members], math.nan)
        for i in (i for i in tested if columns[i] == column):
            sd = pooled if pooled.source == "pooled" else stats.Noise(_prior_sd(cells.loc[i]), math.inf, "prior")
            tests[i] = (sd, stats.test_against_paper(list(values.get(i, {}).values()), cells.at[i, "paper"],
                                                     int(cells.at[i, "paper_runs"] or 1), sd))
    order = list(tests)
    adjusted = dict(zip(order, stats.holm([tests[i][1].p_value for i in order])))
    for i in cells.index:
        if i not in tests:
            continue
        sd, test = tests[i]
        out.loc[i, ["sigma", "sigma_source", "sigma_df", "p_value", "p_adjusted"]] = [
            sd.sd, sd.source, sd.df, test.p_value, adjusted[i]]
        out.at[i, "verdict_vs_paper"] = stats.paper_verdict(int(cells.at[i, "n"]), test, adjusted[i])
    return out


def error_level(cell: pd.Series) -> float:
    """The error a cell's runs are at, for the prior noise: our median, else the paper's value."""
    return cell["median"] if math.isfinite(cell["median"]) else cell["paper"]


def _prior_sd(cell: pd.Series) -> float:
    """The prior σ of a cell: the test set's binomial spread at the cell's error."""
    return stats.test_set_sd(error_level(cell), expected_sizes(cell["config"])[1])


# --------------------------------------------------------------------------------------------------
# Orderings


def column_value(config: RunConfig, column_field: str) -> Any:
    """A config's value of a table's column field: a config field, or "label", the network's name."""
    return render_label(config) if column_field == "label" else getattr(config, column_field)


def baseline_pairs(configs: dict[int, RunConfig], baseline: dict[str, Any], column_field: str | None
                   ) -> list[tuple[int, int]]:
    """(variant, baseline) keys of `configs` (networks, seed aside): each network that the `baseline`
    selection does not match, with the baseline network of its column that differs from it in the
    fewest fields (the no-dropout network of the same depth and width for a dropout variant, the single
    B(3,3) network for every block type)."""
    is_base = {key: matches(baseline, cfg) for key, cfg in configs.items()}
    pairs = []
    for key, cfg in configs.items():
        if is_base[key]:
            continue
        bases = [b for b in configs if is_base[b]
                 and (not column_field or column_value(configs[b], column_field) == column_value(cfg, column_field))]
        if bases:
            mine = cfg.to_dict()
            shared = lambda b: sum(mine[f] == v for f, v in configs[b].to_dict().items() if f not in NOT_KEY_FIELDS)  # noqa: E731
            pairs.append((key, max(bases, key=shared)))
    return pairs


@dataclass(frozen=True)
class SequentialDesign:
    """How a `--until-resolved` launch spends seeds: each look's seeds per cell (`looks`, doubling
    from `start` up to `max_seeds`) and its level (`alpha` spent over the looks)."""

    spec: str
    profile: str
    start: int
    max_seeds: int
    alpha: float = stats.ALPHA

    @property
    def looks(self) -> list[int]:
        return stats.rounds(self.start, self.max_seeds)

    @property
    def levels(self) -> list[float]:
        return stats.alpha_spending(self.looks, self.alpha)

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


@dataclass(frozen=True)
class Ordering:
    """The outcome of one comparison: the test at its deciding (or last) look, its level, the verdict,
    the seeds needed and the standard deviation of one seed's difference behind it."""

    difference: stats.Difference
    alpha: float
    verdict: str
    seeds_needed: float
    difference_sd: float
    noise_source: str
    look: int  # 0-based index of the deciding (or last) look
    active: bool  # still unresolved and resolvable within the design's seeds: more seeds would help


def decide_orderings(pairs: list[tuple[int, int, float]], values: dict[int, dict[int, float]],
                     column_of: dict[int, Any], prior_sd: dict[Any, float], design: SequentialDesign | None
                     ) -> dict[tuple[int, int], Ordering]:
    """Each (variant, baseline, paper difference) of `pairs` decided on `values` ({cell: {seed:
    value}}), in the cells × seeds model of all the cells of its column (`column_of`). Without a design:
    one look at level α on every run. With one: the looks replayed in order, each on the runs of seeds
    below its seed count, a comparison decided at the first look whose p-value is under that look's
    level, and followed further only while it is unresolved and `seeds_needed` fits within the
    design's maximum seeds. A look whose runs are not all in is not read: its comparisons stay
    unresolved and `active` (the next round of a launch continues them)."""
    looks = design.looks if design else [None]
    levels = design.levels if design else [stats.ALPHA]
    outcome: dict[tuple[int, int], Ordering] = {}
    active = {(v, b) for v, b, _ in pairs}
    for k, (seeds, level) in enumerate(zip(looks, levels)):
        if k > 0 and any(len(_below(values.get(c, {}), seeds)) < seeds for pair in active for c in pair):
            break  # a round still running (or stopped): its look is not read until all its runs are in
        blocks: dict[Any, stats.SeedBlocks] = {}
        for v, b, paper_diff in pairs:
            if (v, b) not in active:
                continue
            column = column_of[v]
            if column not in blocks:
                members = {c: _below(values.get(c, {}), seeds) for c, col in column_of.items() if col == column}
                blocks[column] = stats.SeedBlocks(members, prior_sd[column])
            fit = blocks[column]
            difference = fit.compare(v, b)
            verdict = stats.ordering_verdict(difference, paper_diff, level)
            target = paper_diff if math.isfinite(paper_diff) else difference.diff
            needed = stats.seeds_needed(target, fit.difference_sd)
            still = (verdict == stats.UNRESOLVED and design is not None and k + 1 < len(looks)
                     and needed <= design.max_seeds)
            outcome[(v, b)] = Ordering(difference, level, verdict, needed, fit.difference_sd, fit.noise.source,
                                       k, still)
            if not still:
                active.discard((v, b))
    return outcome


def _below(runs: dict[int, float], seeds: int | None) -> dict[int, float]:
    return dict(runs) if seeds is None else {s: v for s, v in runs.items() if s < seeds}


# --------------------------------------------------------------------------------------------------
# In words


def ordering_sentence(label: str, baseline: str, ordering: Ordering, paper_diff: float, unit: str = "pp") -> str:
    """What the seeds run so far decide about one ordering, e.g. "WRN-40-2-B(3,1) vs WRN-28-2: the
    paper's +0.05 pp needs ~142 seeds per side at σ = 0.15 pp; with 5 it is unresolvable"."""
    d = ordering.difference
    head = f"{label} vs {baseline}"
    if ordering.verdict == stats.TOO_FEW:
        return f"{head}: not run yet ({d.n} and {d.n_baseline} runs)"
    if not math.isfinite(paper_diff):
        return _sentence_without_paper(head, ordering, unit)
    theirs = f"the paper's {paper_diff:+.2f} {unit}"
    sigma = f"σ = {ordering.difference_sd / math.sqrt(2):.2f} {unit}"
    if ordering.verdict in (stats.SUPPORTED, stats.CONTRADICTED):
        return (f"{head}: {theirs} is {ordering.verdict} by ours, {d.diff:+.2f} {unit} "
                f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}] (p = {d.p_value:.3g} < {ordering.alpha:.3g}, "
                f"{d.n} seed{'s' if d.n != 1 else ''})")
    if math.isinf(ordering.seeds_needed):
        return f"{head}: {theirs}: the paper's values are equal, so no number of seeds can support an ordering"
    needed = int(ordering.seeds_needed)
    if needed > d.n:
        return (f"{head}: {theirs} needs ~{needed} seeds per side at {sigma}; with {d.n} it is unresolvable "
                f"(ours {d.diff:+.2f} {unit}, p = {d.p_value:.2f})")
    return (f"{head}: {theirs} is unresolved although {d.n} seeds give {stats.POWER:.0%} power to resolve it "
            f"(~{needed} needed at {sigma}): ours is {d.diff:+.2f} {unit} [{d.ci_low:+.2f}, {d.ci_high:+.2f}]")


def _sentence_without_paper(head: str, ordering: Ordering, unit: str) -> str:
    """A difference no paper predicts: resolved (higher or lower than the baseline), or not, with the
    smallest difference the seeds run so far would have resolved."""
    d = ordering.difference
    found = f"{d.diff:+.2f} {unit} [{d.ci_low:+.2f}, {d.ci_high:+.2f}] (p = {d.p_value:.3g}"
    if ordering.verdict in (stats.HIGHER, stats.LOWER):
        return f"{head}: {ordering.verdict}, {found} < {ordering.alpha:.3g}, {d.n} seed{'s' if d.n != 1 else ''})"
    detectable = stats.detectable_difference(ordering.difference_sd, d.n)
    needed = "" if not math.isfinite(ordering.seeds_needed) else (
        f"; a true difference of that size needs ~{int(ordering.seeds_needed)} seeds per side")
    return (f"{head}: no difference resolved, {found}); {d.n} seed{'s resolve' if d.n != 1 else ' resolves'} "
            f"±{detectable:.2f} {unit} with {stats.POWER:.0%} power{needed}")

