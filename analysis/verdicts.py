"""The verdicts of a table: what our runs can say about each cell against the paper, and about each of
the paper's orderings. The statistics are `analysis.stats`; this module applies them to a table's
cells and says, in words, what the seeds run so far decide and what they could have seen.

- **Cell against the paper** (`verdict_vs_paper`): our median against the paper's value, both with
  seed noise σ pooled over the finished cells of the same table column (dataset). Holm's correction
  over the table's tested cells keeps the chance that a faithful reproduction shows any flag at 5 %.
  A cell is `higher` or `lower` (a difference the noise does not explain), `equivalent` (two one-sided
  tests put the difference within the dataset's `analysis.stats.EQUIVALENCE_MARGIN`),
  `indistinguishable` (neither: the runs cannot tell, and `detectable` says what difference they
  could have seen), `too_few` (no finished run, or fewer than `analysis.stats.MIN_DF` pooled degrees
  of freedom to estimate σ), `not_comparable` (the paper's number is another recipe's) or
  `not_applicable` (the runs trained on generated data). Only error metrics are judged.
- **Orderings** (`verdict` of each variant against its baseline): the contrast of the two cells in
  their column's cells × seeds model, at the level of its look, per comparison (each ordering is its
  own claim of the paper), with the seeds per side that 80 % power to resolve the paper's difference
  would need at that level, the difference the comparison could have seen, and the probability that
  the variant beats the baseline. Runs of one seed are paired only where they draw the same data
  (`draw_group`).
- **Sequential launches** (`--until-resolved`) look at the orderings after each round of seeds; the
  level of each look is spent from 5 % (`experiments.sequential.alpha_spending`), every interval and number of
  a look is at its level, and the launcher records its design, so that a report made later replays
  the same looks and reaches the same verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis import stats
from analysis.improvement import Improvement, probability_of_improvement
from experiments.sequential import SequentialDesign
from wrn.config import RunConfig
from wrn.recipes import RECIPE_PRESETS

ERROR_METRICS = ("test_error", "top1_error", "top5_error")


# --------------------------------------------------------------------------------------------------
# Cells against the paper


@dataclass(frozen=True)
class CellRuns:
    """What a cell brings to the verdicts: its finished runs' values, the paper's value and how many
    runs it is the median of (NaN: no paper value to test), its table column and dataset, and whether
    our runs and the paper's each shared one data order (`analysis.stats.test_against_paper`)."""

    values: list[float]
    paper: float
    paper_runs: int
    column: Any
    dataset: str
    ours_shared: bool = False
    paper_shared: bool = False


@dataclass(frozen=True)
class CellVerdict:
    """A cell's test against the paper: the noise it used, the test, Holm-adjusted p-values of the
    difference and of equivalence, the level a lone departure is tested at (`alpha`), the smallest
    departure flagged with 80 % power at that level (`detectable`), the equivalence margin, and the
    verdict."""

    noise: stats.Noise
    test: stats.PaperTest
    p_adjusted: float
    p_equivalence: float
    alpha: float
    detectable: float
    margin: float
    verdict: str


def judge_against_paper(cells: list[CellRuns], alpha: float = stats.ALPHA) -> list[CellVerdict | None]:
    """The verdict of every cell with a paper value (None for the others), σ pooled per column over all
    the cells given. Holm's correction runs over the tested cells (those whose column has an estimated
    σ), once for the difference and once for equivalence; a lone departing cell is then tested first,
    at α/m, the level its `detectable` is computed at."""
    noises = {}
    for column in dict.fromkeys(c.column for c in cells):
        members = [c for c in cells if c.column == column]
        noises[column] = stats.noise([c.values for c in members], stats.prior_sd(members[0].dataset))
    tests = [stats.test_against_paper(c.values, c.paper, int(c.paper_runs or 1), noises[c.column], c.ours_shared,
                                      c.paper_shared) if math.isfinite(c.paper) else None for c in cells]
    margins = [stats.EQUIVALENCE_MARGIN.get(c.dataset, math.nan) for c in cells]
    p = stats.holm([t.p_value if t else math.nan for t in tests])
    p_equivalence = stats.holm([t.equivalence_p(m) if t else math.nan for t, m in zip(tests, margins)])
    level = alpha / max(1, sum(math.isfinite(v) for v in p))
    out: list[CellVerdict | None] = []
    for cell, test, margin, p_diff, p_eq in zip(cells, tests, margins, p, p_equivalence):
        if test is None:
            out.append(None)
            continue
        sd = noises[cell.column]
        n = sum(math.isfinite(v) for v in cell.values)
        verdict = stats.paper_verdict(n, sd, test, p_diff, p_eq, alpha)
        out.append(CellVerdict(sd, test, p_diff, p_eq, level, stats.detectable(test.se, test.df, level), margin,
                               verdict))
    return out


VERDICT_COLUMNS = ["sigma", "sigma_source", "sigma_df", "p_value", "p_adjusted", "alpha", "detectable",
                   "equivalence_margin", "p_equivalence", "verdict_vs_paper"]


def _cell_runs(cells: pd.DataFrame, i: int, values: dict[int, dict[int, float]], column_field: str | None,
               tested: bool) -> CellRuns:
    """Cell `i` as the verdicts take it. The paper's runs shared their data order where the code of
    their recipe's era did (`wrn.recipes.RECIPE_PRESETS`: the v2 code's train.lua)."""
    config = cells.at[i, "config"]
    era = cells.at[i, "paper_recipe"] or config.recipe
    runs = cells.at[i, "paper_runs"]
    return CellRuns(list(values.get(i, {}).values()), cells.at[i, "paper"] if tested else math.nan,
                    int(runs) if tested and math.isfinite(runs) else 1,
                    cells.at[i, column_field] if column_field else None, config.dataset,
                    config.data_order == "shared", RECIPE_PRESETS[era].get("data_order") == "shared")


def generated_data(config: RunConfig | None) -> bool:
    """Whether runs of `config` train on generated data (a synthetic data_source, the smoke profile's)."""
    return config is not None and str(config.data_source).startswith("synthetic")


def cell_verdicts(cells: pd.DataFrame, values: dict[int, dict[int, float]], metric: str,
                  column_field: str | None) -> pd.DataFrame:
    """Per cell (row index of `cells`), `VERDICT_COLUMNS`; `values` are each cell's finished runs, {seed:
    value}. A cell whose paper number is of another recipe than its runs (`paper_recipe`) is not
    tested: "not_comparable"; one whose runs trained on generated data: "not_applicable"."""
    out = pd.DataFrame(index=cells.index, columns=VERDICT_COLUMNS, dtype=object)
    out["verdict_vs_paper"] = ""
    if metric not in ERROR_METRICS:
        return out
    with_paper = [i for i in cells.index if math.isfinite(cells.at[i, "paper"]) and cells.at[i, "config"] is not None]
    generated = {i for i in with_paper if generated_data(cells.at[i, "config"])}
    other_recipe = {i for i in with_paper if i not in generated and cells.at[i, "paper_recipe"]
                    and cells.at[i, "paper_recipe"] != cells.at[i, "config"].recipe}
    out.loc[list(generated), "verdict_vs_paper"] = stats.NOT_APPLICABLE
    out.loc[list(other_recipe), "verdict_vs_paper"] = stats.NOT_COMPARABLE
    members = [i for i in cells.index if cells.at[i, "config"] is not None and i not in generated]
    tested = set(with_paper) - generated - other_recipe
    judged = judge_against_paper([_cell_runs(cells, i, values, column_field, i in tested) for i in members])
    for i, verdict in zip(members, judged):
        if verdict is None:
            continue
        out.loc[i, VERDICT_COLUMNS] = [verdict.noise.sd, verdict.noise.source, verdict.noise.df, verdict.test.p_value,
                                       verdict.p_adjusted, verdict.alpha, verdict.detectable, verdict.margin,
                                       verdict.p_equivalence, verdict.verdict]
    return out


# --------------------------------------------------------------------------------------------------
# Orderings


# The config fields that change what a seed draws (its data order, crops, flips, or the images a
# process sees): two cells pair by seed only when they agree on all of them.
DRAW_FIELDS = ("dataset", "data_source", "data_order", "batch_size", "drop_last", "crop_draw", "flip_draw",
               "crop_padding", "hflip", "world_size", "color_augment")


def draw_group(config: RunConfig) -> tuple:
    """What a run's seed draws besides its network: runs of one seed and one draw group see the same
    data order, crops and flips, so their seed is a shared block (`analysis.stats.SeedBlocks`)."""
    return tuple((f, repr(getattr(config, f))) for f in DRAW_FIELDS)


def unpaired_because(a: RunConfig, b: RunConfig) -> str:
    """The draw fields in which two configs differ ("" when they pair): why their seeds share nothing."""
    return ", ".join(f for f in DRAW_FIELDS if getattr(a, f) != getattr(b, f))


@dataclass(frozen=True)
class Ordering:
    """The outcome of one comparison: the test at its deciding (or last) look (the difference, its
    interval and `detectable` at that look's level), the verdict, the seeds needed at that level, the
    standard deviation of one seed's difference behind it, and the probability that the variant beats
    the baseline."""

    difference: stats.Difference
    verdict: str
    seeds_needed: float
    difference_sd: float
    noise_source: str
    improvement: Improvement
    look: int  # 0-based index of the deciding (or last) look
    active: bool  # still undecided and decidable within the design's seeds: more seeds would help

    @property
    def alpha(self) -> float:
        return self.difference.alpha


def decide_orderings(pairs: list[tuple[int, int, float]], values: dict[int, dict[int, float]],
                     column_of: dict[int, Any], prior_sd: dict[Any, float], design: SequentialDesign | None,
                     groups: dict[int, Any] | None = None) -> dict[tuple[int, int], Ordering]:
    """Each (variant, baseline, paper difference) of `pairs` decided on `values` ({cell: {seed:
    value}}), in the cells × seeds model of all the cells of its column (`column_of`), seeds pairing
    only cells of one draw group (`groups`). Without a design: one look at level α on every run. With
    one: the looks replayed in order, each on the runs of seeds below its seed count, a comparison
    decided at the first look whose p-value is under that look's level, and followed further only
    while it is undecided and `seeds_needed` at a later look's level fits within the design's maximum
    seeds. A look whose runs are not all in is not read: its comparisons stay undecided and `active`
    (the next round of a launch continues them)."""
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
                blocks[column] = stats.SeedBlocks(members, prior_sd[column], groups)
            fit = blocks[column]
            difference = fit.compare(v, b, level)
            verdict = stats.ordering_verdict(difference, paper_diff)
            target = paper_diff if math.isfinite(paper_diff) else difference.diff
            improvement = probability_of_improvement(fit.cells.get(v, {}), fit.cells.get(b, {}),
                                                     difference.paired, level)
            undecided = verdict == stats.UNRESOLVED or (verdict == stats.TOO_FEW and difference.n > 0
                                                        and difference.n_baseline > 0)
            still = (undecided and design is not None and k + 1 < len(looks)
                     and stats.seeds_needed(target, fit.difference_sd, max(levels[k + 1:])) <= design.max_seeds)
            outcome[(v, b)] = Ordering(difference, verdict, stats.seeds_needed(target, fit.difference_sd, level),
                                       fit.difference_sd, fit.noise.source, improvement, k, still)
            if not still:
                active.discard((v, b))
    return outcome


def _below(runs: dict[int, float], seeds: int | None) -> dict[int, float]:
    return dict(runs) if seeds is None else {s: v for s, v in runs.items() if s < seeds}


# --------------------------------------------------------------------------------------------------
# In words


def ordering_sentence(label: str, baseline: str, ordering: Ordering, paper_diff: float, unit: str = "pp") -> str:
    """What the seeds run so far decide about one ordering, at the level of its look, e.g.
    "WRN-40-2-B(3,1) vs WRN-28-2: the paper's +0.05 pp needs ~142 seeds per side for 80 % power at
    α = 0.05 (σ = 0.15 pp); with 5 it is underpowered"."""
    d = ordering.difference
    head = f"{label} vs {baseline}"
    if ordering.verdict == stats.TOO_FEW:
        if d.n == 0 or d.n_baseline == 0:
            return f"{head}: not run yet ({d.n} and {d.n_baseline} runs)"
        return (f"{head}: too few runs to estimate the seed noise ({_plural(int(d.df), 'degree')} of freedom, "
                f"{stats.MIN_DF} needed); run more seeds")
    level = f"α = {ordering.alpha:.3g}"
    if not math.isfinite(paper_diff):
        return _sentence_without_paper(head, ordering, unit, level)
    theirs = f"the paper's {paper_diff:+.2f} {unit}"
    sigma = f"σ = {ordering.difference_sd / math.sqrt(2):.2f} {unit}"
    found = f"{d.diff:+.2f} {unit} [{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
    if ordering.verdict in (stats.SUPPORTED, stats.CONTRADICTED):
        return (f"{head}: {theirs} is {ordering.verdict} by ours, {found} (p = {d.p_value:.3g} < {ordering.alpha:.3g}, "
                f"{_plural(d.n, 'seed')}{'' if d.paired else ', unpaired'}{_improvement(ordering)})")
    if math.isinf(ordering.seeds_needed):
        return (f"{head}: {theirs}: the paper's values are equal, so no number of seeds can support an ordering "
                f"(ours {found}; could detect ≥ {d.detectable:.2f} {unit})")
    needed = int(ordering.seeds_needed)
    if needed > d.n:
        return (f"{head}: {theirs} needs ~{_seeds(needed)} seeds per side for {stats.POWER:.0%} power at {level} ({sigma}); "
                f"with {d.n} it is underpowered (ours {found}, p = {d.p_value:.2f}; could detect ≥ "
                f"{d.detectable:.2f} {unit}{_improvement(ordering)})")
    return (f"{head}: {theirs} is unresolved although {d.n} seeds give {stats.POWER:.0%} power to resolve it at "
            f"{level} (~{needed} needed, {sigma}): ours is {found}{_improvement(ordering)}")


def _sentence_without_paper(head: str, ordering: Ordering, unit: str, level: str) -> str:
    """A difference no paper predicts: resolved (higher or lower than the baseline), or not, with the
    smallest difference the seeds run so far would have resolved."""
    d = ordering.difference
    found = f"{d.diff:+.2f} {unit} [{d.ci_low:+.2f}, {d.ci_high:+.2f}] (p = {d.p_value:.3g}"
    pairing = "" if d.paired else ", unpaired"
    if ordering.verdict in (stats.HIGHER, stats.LOWER):
        return (f"{head}: {ordering.verdict}, {found} < {ordering.alpha:.3g}, {_plural(d.n, 'seed')}{pairing}"
                f"{_improvement(ordering)})")
    needed = "" if not math.isfinite(ordering.seeds_needed) else (
        f"; a true difference of that size needs ~{_seeds(int(ordering.seeds_needed))} seeds per side")
    return (f"{head}: unresolved, {found}{pairing}); {d.n} seed{'s detect' if d.n != 1 else ' detects'} "
            f"≥ {d.detectable:.2f} {unit} with {stats.POWER:.0%} power at {level}{needed}{_improvement(ordering)}")


def _improvement(ordering: Ordering) -> str:
    i = ordering.improvement
    if not math.isfinite(i.p):
        return ""
    return f"; P(better) = {i.p:.2f} [{i.low:.2f}, {i.high:.2f}]"


SEEDS_SHOWN = 10_000  # more seeds per side than this is said as "more than 10,000": no launch runs them


def _seeds(n: int) -> str:
    return f"more than {SEEDS_SHOWN:,}" if n > SEEDS_SHOWN else f"{n:,}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
