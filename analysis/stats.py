"""The statistics behind every verdict: intervals with known coverage, the seed noise of a table, tests
whose error rates are known, what each test could have seen, and the seeds a claim needs.

The model: a run's final test error is its configuration's true error plus seed noise, normal with a
standard deviation σ that is the same for every configuration of a table on one dataset. The paper
reports the median of 5 runs for most tables, so our cell statistic is the median too.

- **Intervals** of a median are distribution-free order-statistic intervals: the probability that
  the true median lies between the j-th smallest and the j-th largest of n runs is a binomial sum,
  exact for any continuous distribution. With few runs no interval reaches 95 %, so each interval is
  printed with the coverage it really has (75 % for [min, max] of 3 runs, 93.8 % of 5).
- **σ** is the pooled within-cell standard deviation: the square root of the cells' sample variances
  averaged with weights n_i − 1, the unbiased estimator of a common variance, with Σ(n_i − 1)
  degrees of freedom. A verdict needs at least `MIN_DF` of them; with fewer, no test holds its level
  whatever the true σ, so the verdict is declined (`TOO_FEW`) rather than taken on an assumed σ.
  (A test on an assumed σ flags a faithful reproduction in 15 % of cells when the true σ is twice the
  assumption; at one seed per cell the only test that keeps 5 % per table for every σ from half to
  twice an assumption is one that can see nothing under 12 σ.) `PRIOR_SD` holds a σ per dataset for
  planning alone: seeds needed before any run, what a launch is expected to decide.
- **Tests** are Student t-tests on the pooled σ, whose error rates are exact for normal noise
  whatever σ is: the cell against the paper's value divides the difference of medians by σ times the
  medians' standard deviations (both sides have seed noise: ours a median of n runs, the paper's a
  median of its own runs), and an ordering is a contrast in the additive cells × seeds model of its
  table column (`SeedBlocks`), where the runs of one seed that draw the same data order, crops and
  flips share a block, as in a paired test, and the noise is pooled over all the column's cells.
- **Equivalence** is a claim of its own, two one-sided tests (TOST): our median lies within
  `EQUIVALENCE_MARGIN` of the paper's when both one-sided nulls, "below −margin" and "above
  +margin", are rejected.
- **What a test could see** (`detectable`): the smallest true difference it flags with 80 % power at
  its n, σ and level, (t_{1−α/2} + t_{0.8}) · se, fixed before looking at the difference, so that
  "indistinguishable" says what it rules out.
- **Seeds needed** to resolve a difference δ with power 1 − β at level α: the normal-approximation
  sample size n = ((z_{1−α/2} + z_{1−β}) · s_d / δ)², where s_d is the standard deviation of one
  seed's difference.
- **Probability of improvement**, P(variant better than baseline) with its bootstrap interval, needs
  no noise model: `analysis.improvement`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special
from scipy import stats as distributions

from experiments.sequential import ALPHA

POWER = 0.8  # the power `detectable` and `seeds_needed` plan for
CONFIDENCE = 0.95  # the coverage intervals aim for
MIN_DF = 2  # fewer pooled degrees of freedom than this: no verdict (`TOO_FEW`)

# Planning σ of one run's final test error (pp) per dataset: never below the published seed-to-seed
# spreads. CIFAR-10: 0.16 (ResNet-110, He et al. 2015, arXiv:1512.03385, Table 6), 0.14 and 0.20
# (pre-act ResNet-1001 at batch 128 and 64, He et al. 2016, arXiv:1603.05027, Table 4). CIFAR-100:
# 0.22 (ResNet-1001, the same table), larger at its higher error: the test set's binomial spread at
# 20 % error is 0.40. SVHN: no spread is published; the binomial spread of its 26,032 test images at
# 1.6 % error is 0.078. ImageNet: the binomial spread of its 50,000 validation images at 22 % is 0.19.
PRIOR_SD = {"cifar10": 0.25, "cifar100": 0.4, "svhn": 0.1, "imagenet": 0.2}
# The share of a run's seed variance that its data order, crops and flips make, the rest being its
# initialisation's: an assumption (Bouthillier et al. 2021, "Accounting for variance in machine learning
# benchmarks", MLSys, find the two of comparable size on CIFAR-10), needed where a cell's runs, or the
# paper's, share one data order (`wrn.config.RunConfig.data_order`): that order's effect is then common to
# the cell and no number of seeds averages it. The deviations spec's "data_order = shared" row measures it.
DATA_ORDER_SHARE = 0.5
# How far from the paper's value a median may be and still be called `EQUIVALENT` (pp): about two of
# the dataset's planning σ, smaller than the paper's larger ablation effects (0.3-0.7 pp on CIFAR-10).
EQUIVALENCE_MARGIN = {"cifar10": 0.5, "cifar100": 1.0, "svhn": 0.2, "imagenet": 0.5}

# Cell against the paper
INDISTINGUISHABLE, EQUIVALENT, HIGHER, LOWER, TOO_FEW = "indistinguishable", "equivalent", "higher", "lower", "too_few"
NOT_COMPARABLE = "not_comparable"  # the paper's number comes from another recipe than our runs
NOT_APPLICABLE = "not_applicable"  # the runs trained on generated data: nothing to compare with the paper
PAPER_VERDICTS = (INDISTINGUISHABLE, EQUIVALENT, HIGHER, LOWER, TOO_FEW, NOT_COMPARABLE, NOT_APPLICABLE)
# Orderings
SUPPORTED, CONTRADICTED, UNRESOLVED = "supported", "contradicted", "unresolved"


def _clean(values) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


# --------------------------------------------------------------------------------------------------
# The median and its interval


@dataclass(frozen=True)
class Summary:
    """The finished runs of one cell: median, spread, and an interval of the median with its true
    coverage (NaN with fewer than 2 runs)."""

    n: int
    median: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    coverage: float


def median_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): the narrowest interval (x_(j), x_(n+1-j)) between order statistics whose
    coverage of the true median, 1 - 2 P(Bin(n, 1/2) < j), is at least `confidence`; with too few
    values for that, (min, max) and its smaller coverage. NaN for fewer than 2 values."""
    x = np.sort(_clean(values))
    n = len(x)
    if n < 2:
        return math.nan, math.nan, math.nan
    best = 1
    for j in range(1, n // 2 + 1):
        if _order_coverage(n, j) >= confidence:
            best = j
    return float(x[best - 1]), float(x[n - best]), _order_coverage(n, best)


def _order_coverage(n: int, j: int) -> float:
    """P(x_(j) <= median <= x_(n+1-j)) for n draws of a continuous distribution."""
    return 1.0 - 2.0 * float(special.bdtr(j - 1, n, 0.5))


def summarize(values) -> Summary:
    arr = _clean(values)
    if len(arr) == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    low, high, coverage = median_interval(arr)
    return Summary(len(arr), float(np.median(arr)), float(arr.min()), float(arr.max()), low, high, coverage)


@lru_cache(maxsize=None)
def median_variance_factor(n: int) -> float:
    """Var(median of n independent standard normals), by integrating the order statistics' densities
    on a fine grid (exact to 5 digits): 1 for n = 1, 0.2868 for n = 5 (the mean's would be 0.2)."""
    if n < 1:
        raise ValueError(f"n={n}: expected at least one value")
    x = np.linspace(-8.0, 8.0, 3001)
    log_cdf, log_sf, log_pdf = distributions.norm.logcdf(x), distributions.norm.logsf(x), distributions.norm.logpdf(x)
    if n % 2:
        m = (n - 1) // 2
        log_c = special.gammaln(n + 1) - 2 * special.gammaln(m + 1)
        return float(np.trapezoid(x * x * np.exp(log_c + m * (log_cdf + log_sf) + log_pdf), x))
    # the mean of the two middle order statistics, X_(m) and X_(m+1)
    m = n // 2
    log_c1 = special.gammaln(n + 1) - special.gammaln(m) - special.gammaln(m + 1)
    second_moment = np.trapezoid(x * x * np.exp(log_c1 + (m - 1) * log_cdf + m * log_sf + log_pdf), x)
    half_log_c2 = 0.5 * (special.gammaln(n + 1) - 2 * special.gammaln(m))
    lower = x * np.exp(half_log_c2 + (m - 1) * log_cdf + log_pdf)
    upper = x * np.exp(half_log_c2 + (m - 1) * log_sf + log_pdf)
    above = np.cumsum(upper[::-1])[::-1]  # sum of upper[j] for j >= i
    h = x[1] - x[0]
    cross = h * h * (np.sum(lower * (above - upper)) + 0.5 * np.sum(lower * upper))  # E[X_(m) X_(m+1)]
    return float((2 * second_moment + 2 * cross) / 4)


# --------------------------------------------------------------------------------------------------
# The noise of a table


@dataclass(frozen=True)
class Noise:
    """A seed standard deviation and where it comes from: "pooled" (estimated from the runs, with `df`
    degrees of freedom: the only kind a verdict rests on) or "prior" (`PRIOR_SD`, for planning; `df` is
    then the pooled degrees of freedom there were, fewer than `MIN_DF`)."""

    sd: float
    df: float
    source: str

    @property
    def estimated(self) -> bool:
        return self.source == "pooled"


def pooled_sd(groups) -> tuple[float, int]:
    """(pooled standard deviation, degrees of freedom) of several groups of values around their own
    means; groups of fewer than 2 values add nothing. (NaN, 0) when nothing is pooled."""
    total, df = 0.0, 0
    for group in groups:
        arr = _clean(group)
        if len(arr) >= 2:
            total += float(np.sum((arr - arr.mean()) ** 2))
            df += len(arr) - 1
    return (math.sqrt(total / df), df) if df else (math.nan, 0)


def prior_sd(dataset: str) -> float:
    """The planning σ of a run's test error on `dataset` (`PRIOR_SD`; NaN for a dataset without one)."""
    return PRIOR_SD.get(dataset, math.nan)


def noise(groups, prior: float) -> Noise:
    """The pooled σ of `groups` when it has at least `MIN_DF` degrees of freedom, else the planning
    `prior` (no verdict rests on it)."""
    sd, df = pooled_sd(groups)
    if df >= MIN_DF and sd > 0:
        return Noise(sd, df, "pooled")
    return Noise(prior, df, "prior")


def _t_cdf(t: float, df: float) -> float:
    return float(special.ndtr(t) if math.isinf(df) else special.stdtr(df, t))


def _two_sided_p(t: float, df: float) -> float:
    return 2 * _t_cdf(-abs(t), df)


def _quantile(q: float, df: float) -> float:
    return float(special.ndtri(q) if math.isinf(df) else special.stdtrit(df, q))


def critical(df: float, alpha: float = ALPHA) -> float:
    """The two-sided critical value of a t-test (a z-test for infinite df) at level `alpha`."""
    return _quantile(1 - alpha / 2, df)


def detectable(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference that a two-sided t-test with standard error `se` and `df` degrees of
    freedom flags with probability `power` at level `alpha`: (t_{1-α/2} + t_{power}) · se, the usual
    approximation of the noncentral t's power. What a "not flagged" can rule out, known before the
    difference is looked at."""
    if not (math.isfinite(se) and se > 0 and df > 0):
        return math.nan
    return (critical(df, alpha) + _quantile(power, df)) * se


# --------------------------------------------------------------------------------------------------
# A cell against the paper


@dataclass(frozen=True)
class PaperTest:
    """Our median minus the paper's value, its standard error and degrees of freedom, and the two-sided
    p-value of "same distribution"."""

    diff: float
    se: float
    df: float
    p_value: float

    def equivalence_p(self, margin: float) -> float:
        """The p-value of two one-sided tests (TOST) of "the true difference lies outside ±`margin`":
        the larger of the two one-sided p-values; below α, the two sides are equivalent within the
        margin."""
        if not (math.isfinite(self.diff) and math.isfinite(self.se) and self.se > 0 and math.isfinite(margin)):
            return math.nan
        above = 1 - _t_cdf((self.diff + margin) / self.se, self.df)  # null: difference <= -margin
        below = _t_cdf((self.diff - margin) / self.se, self.df)  # null: difference >= +margin
        return max(above, below)


NO_TEST = PaperTest(math.nan, math.nan, math.nan, math.nan)


def test_against_paper(values, paper: float, paper_runs: int, sd: Noise, ours_shared: bool = False,
                       paper_shared: bool = False) -> PaperTest:
    """t-test of our median against the paper's (a median of `paper_runs` runs) with seed noise `sd`,
    an estimated one (no test rests on a prior). A side whose runs share one data order
    (`ours_shared`, `paper_shared`) carries that order's effect whole, unaveraged over its runs
    (`DATA_ORDER_SHARE` of a run's variance); σ estimated from runs that share their order is their
    initialisation's alone."""
    arr = _clean(values)
    if len(arr) == 0 or not math.isfinite(paper) or not sd.estimated or not math.isfinite(sd.sd):
        return NO_TEST
    diff = float(np.median(arr)) - paper
    share = DATA_ORDER_SHARE
    init, order = (1.0, share / (1 - share)) if ours_shared else (1 - share, share)  # in units of σ²
    variance = sum(init * median_variance_factor(n) + (order if shared else order * median_variance_factor(n))
                   for n, shared in ((len(arr), ours_shared), (max(1, paper_runs), paper_shared)))
    se = sd.sd * math.sqrt(variance)
    return PaperTest(diff, se, sd.df, _two_sided_p(diff / se, sd.df) if se > 0 else math.nan)


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values: rejecting those below α keeps the chance of any false
    rejection among them at most α. NaN entries are left out and stay NaN."""
    p = [float(v) for v in p_values]
    order = sorted((i for i in range(len(p)) if math.isfinite(p[i])), key=lambda i: p[i])
    m, adjusted, running = len(order), [math.nan] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def paper_verdict(n: int, sd: Noise, test: PaperTest, p_adjusted: float, equivalence_adjusted: float,
                  alpha: float = ALPHA) -> str:
    """too_few without a finished run or without an estimated σ; higher or lower when the Holm-adjusted
    difference test rejects; equivalent when the Holm-adjusted TOST does; indistinguishable otherwise."""
    if n == 0 or not sd.estimated:
        return TOO_FEW
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return HIGHER if test.diff > 0 else LOWER
    if math.isfinite(equivalence_adjusted) and equivalence_adjusted < alpha:
        return EQUIVALENT
    return INDISTINGUISHABLE


# --------------------------------------------------------------------------------------------------
# Orderings: a variant against its baseline


@dataclass(frozen=True)
class Difference:
    """variant - baseline: the estimate, its standard error and degrees of freedom, the t-interval at
    1 - `alpha` and the two-sided p-value of "no difference". `paired`: whether shared seed blocks
    entered (the sides share seeds that draw the same data); `estimated`: whether the noise is pooled
    from runs (else no verdict); `n`, `n_baseline`: the runs of each side."""

    paired: bool
    estimated: bool
    n: int
    n_baseline: int
    diff: float
    se: float
    df: float
    alpha: float
    ci_low: float
    ci_high: float
    p_value: float

    @classmethod
    def of(cls, paired: bool, estimated: bool, n: int, n_baseline: int, diff: float, se: float, df: float,
           alpha: float = ALPHA) -> Difference:
        if not estimated:
            return cls(paired, False, n, n_baseline, diff, se, df, alpha, math.nan, math.nan, math.nan)
        half = critical(df, alpha) * se
        p = _two_sided_p(diff / se, df) if se > 0 else math.nan
        return cls(paired, True, n, n_baseline, diff, se, df, alpha, diff - half, diff + half, p)

    @property
    def detectable(self) -> float:
        """The smallest true difference this comparison flags with 80 % power at its level."""
        return detectable(self.se, self.df, self.alpha) if self.estimated else math.nan


NO_DIFFERENCE = Difference(False, False, 0, 0, math.nan, math.nan, math.nan, ALPHA, math.nan, math.nan, math.nan)


class SeedBlocks:
    """The additive model of one table column: run = cell effect + seed effect + noise.

    The runs of one seed that draw the same data order, crops and flips (the same `groups` value: the
    config fields that change the draws, `analysis.verdicts.draw_group`) share a block, since a seed
    may push all of them the same way; the model removes that shared effect, as a paired comparison
    does, and pools the remaining noise over every cell, with (runs - cells - blocks + groups) degrees
    of freedom. For two cells of one group with the same seeds it is exactly the paired t-test; a
    cell's seeds that the other cells lack still count through the cells that have them. Cells of
    different groups share no block and are compared unpaired. With fewer than `MIN_DF` degrees of
    freedom the noise is `prior_sd`, for planning only, and no comparison is decided."""

    def __init__(self, cells: dict[object, dict[int, float]], prior_sd: float, groups: dict[object, object] | None = None):
        self.cells = {c: clean for c, runs in cells.items()
                      if (clean := {s: float(v) for s, v in runs.items() if math.isfinite(v)})}
        self.names = list(self.cells)
        self.prior_sd = prior_sd
        self.group = {c: (groups or {}).get(c) for c in self.names}
        # One effect per cell and per block. The blocks are disjoint, so they are absorbed exactly (each
        # run less its block's mean: the Frisch-Waugh-Lovell projection) and only the cells' normal
        # equations are solved: cells x cells, whatever the number of seeds (an --until-resolved spec
        # has thousands of runs). The model is rank-deficient by one per group, so a contrast is
        # estimable only within a group (`compare` checks), and the degrees of freedom are the runs
        # less the rank (the blocks', plus the absorbed cells').
        blocks = {b: k for k, b in enumerate(sorted({(repr(self.group[c]), s) for c in self.names
                                                     for s in self.cells[c]}))}
        rows = [(i, blocks[repr(self.group[c]), s], v) for i, c in enumerate(self.names) for s, v in self.cells[c].items()]
        cell = np.array([r[0] for r in rows], dtype=int)
        block = np.array([r[1] for r in rows], dtype=int)
        y = np.array([r[2] for r in rows], dtype=float)
        per_block = np.bincount(block, minlength=len(blocks)).astype(float)
        counts = np.zeros((len(self.names), len(blocks)))  # runs of each cell in each block
        np.add.at(counts, (cell, block), 1.0)
        block_sums = np.bincount(block, weights=y, minlength=len(blocks))
        shares = counts / np.maximum(per_block, 1.0)
        self.reduced = np.diag(counts.sum(axis=1)) - shares @ counts.T  # C'MC
        reduced_y = np.bincount(cell, weights=y, minlength=len(self.names)) - shares @ block_sums  # C'My
        self.reduced_inverse = np.linalg.pinv(self.reduced, hermitian=True)
        self.beta = self.reduced_inverse @ reduced_y  # the cells' effects (one solution)
        rank = (int(np.linalg.matrix_rank(self.reduced, hermitian=True)) if rows else 0) + len(blocks)
        df = len(rows) - rank
        fitted_cells = self.beta[cell] if rows else y
        block_effect = (block_sums - np.bincount(block, weights=fitted_cells, minlength=len(blocks))) / np.maximum(per_block, 1.0)
        rss = float(np.sum((y - fitted_cells - block_effect[block]) ** 2))
        self.noise = Noise(math.sqrt(rss / df), df, "pooled") if df >= MIN_DF and rss > 0 else \
            Noise(prior_sd, df, "prior")

    @property
    def difference_sd(self) -> float:
        """The standard deviation of one seed's difference between two cells: √2 σ."""
        return math.sqrt(2) * self.noise.sd

    def paired(self, variant, baseline) -> bool:
        """Whether the two cells share seeds that draw the same data (a seed block)."""
        return self.group[variant] == self.group[baseline] and bool(set(self.cells[variant]) & set(self.cells[baseline]))

    def compare(self, variant, baseline, alpha: float = ALPHA) -> Difference:
        """variant - baseline (cell keys), its interval at 1 - `alpha`: the contrast of the two cell
        effects when the blocks link them; when they do not (no shared block, no cell between them, or
        cells of different draw groups), the two-sample t-test of the two cells alone, unpaired: the
        other cells' runs share seed effects with these, so pooling them would overstate the degrees
        of freedom."""
        if variant not in self.cells or baseline not in self.cells:
            return dataclasses.replace(NO_DIFFERENCE, n=len(self.cells.get(variant, {})),
                                       n_baseline=len(self.cells.get(baseline, {})), alpha=alpha)
        n, n_b = len(self.cells[variant]), len(self.cells[baseline])
        contrast = np.zeros(len(self.names))
        contrast[self.names.index(variant)], contrast[self.names.index(baseline)] = 1.0, -1.0
        estimable = float(np.max(np.abs(contrast @ self.reduced_inverse @ self.reduced - contrast))) < 1e-8
        if estimable:
            se = self.noise.sd * math.sqrt(float(contrast @ self.reduced_inverse @ contrast))
            return Difference.of(self.paired(variant, baseline), self.noise.estimated, n, n_b,
                                 float(contrast @ self.beta), se, self.noise.df, alpha)
        a, b = np.array(list(self.cells[variant].values())), np.array(list(self.cells[baseline].values()))
        two = noise([a, b], self.prior_sd)
        return Difference.of(False, two.estimated, n, n_b, float(a.mean() - b.mean()),
                             two.sd * math.sqrt(1 / n + 1 / n_b), two.df, alpha)


def _z_for(alpha: float, power: float) -> float:
    return distributions.norm.isf(alpha / 2) + distributions.norm.isf(1 - power)


def seeds_needed(target_diff: float, difference_sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds per side for `power` to resolve a true difference `target_diff` (the paper's, or for a
    spec without paper numbers the one observed) at level `alpha` when one seed's difference has
    standard deviation `difference_sd`; infinite for no difference."""
    if not math.isfinite(target_diff) or not math.isfinite(difference_sd):
        return math.nan
    if target_diff == 0:
        return math.inf
    return float(max(2, math.ceil((_z_for(alpha, power) * difference_sd / abs(target_diff)) ** 2)))


def ordering_verdict(difference: Difference, paper_diff: float) -> str:
    """At the difference's level: supported, significant on the paper's side; contradicted,
    significant on the other side (or any significant difference where the paper's is 0); unresolved:
    not significant; too_few: a side without runs, or too few runs to estimate the noise. Without a
    paper difference (a spec of one's own, a deviation, generated data): higher or lower when the
    difference is significant, two-sided, else unresolved."""
    if difference.n == 0 or difference.n_baseline == 0 or not difference.estimated:
        return TOO_FEW
    if not math.isfinite(difference.p_value) or difference.p_value >= difference.alpha:
        return UNRESOLVED
    if not math.isfinite(paper_diff):
        return HIGHER if difference.diff > 0 else LOWER
    if paper_diff != 0 and (difference.diff > 0) == (paper_diff > 0):
        return SUPPORTED
    return CONTRADICTED
