"""The statistics behind every verdict: intervals with known coverage, the seed noise of a table, tests
whose error rates are known, and the seeds a claim needs.

The model: a run's final test error is its configuration's true error plus seed noise, normal with a
standard deviation σ that is the same for every configuration of a table on one dataset. The paper
reports the median of 5 runs for most tables, so our cell statistic is the median too.

- **Intervals** of a median are distribution-free order-statistic intervals: the probability that
  the true median lies between the j-th smallest and the j-th largest of n runs is a binomial sum,
  exact for any continuous distribution. With few runs no interval reaches 95 %, so each interval is
  printed with the coverage it really has (75 % for [min, max] of 3 runs, 93.8 % of 5).
- **σ** is the pooled within-cell standard deviation: the square root of the cells' sample variances
  averaged with weights n_i − 1, the unbiased estimator of a common variance, with Σ(n_i − 1)
  degrees of freedom. Below `MIN_DF` degrees of freedom the prior is used instead:
  `test_set_sd`, the binomial sampling spread of the test set at the paper's error rate.
- **Tests** are Student t-tests, whose error rates are exact for normal noise: the cell against the
  paper's value divides the difference of medians by σ times the medians' standard deviations (both
  sides have seed noise: ours a median of n runs, the paper's a median of its own runs), and an
  ordering is a contrast in the additive cells × seeds model of its table column (`SeedBlocks`):
  every run of one seed sees the same data order and augmentation, so the seed is a block, as in a
  paired test, and the noise is pooled over all the column's cells.
- **Seeds needed** to resolve a difference δ with power 1 − β at level α: the normal-approximation
  sample size n = ((z_{1−α/2} + z_{1−β}) · s_d / δ)², where s_d is the standard deviation of one
  seed's difference.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special
from scipy import stats as distributions

ALPHA = 0.05  # the level of every test (its false-positive rate under no effect)
POWER = 0.8  # the power `seeds_needed` plans for
CONFIDENCE = 0.95  # the coverage intervals aim for
MIN_DF = 4  # fewer pooled degrees of freedom than this: σ comes from the prior

# Cell against the paper
CONSISTENT, HIGHER, LOWER, TOO_FEW = "consistent", "higher", "lower", "too_few"
NOT_COMPARABLE = "not_comparable"  # the paper's number comes from another recipe than our runs
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
    """A seed standard deviation and where it comes from: "pooled" (estimated, `df` degrees of
    freedom) or "prior" (assumed; df infinite)."""

    sd: float
    df: float
    source: str


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


def test_set_sd(error_pct: float, test_images: int) -> float:
    """The prior σ (percentage points) of a test error: the binomial spread of the error measured on
    `test_images` images when the true error rate is `error_pct`. Published seed spreads of full-
    schedule CIFAR ResNets are of this order or below (about 0.1-0.2 pp at 5 % error on CIFAR-10,
    where this gives 0.22 pp), so the prior errs towards fewer flags."""
    p = min(max(error_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / test_images)


def noise(groups, prior_sd: float) -> Noise:
    """The pooled σ of `groups` when it has at least `MIN_DF` degrees of freedom, else the prior."""
    sd, df = pooled_sd(groups)
    if df >= MIN_DF and sd > 0:
        return Noise(sd, df, "pooled")
    return Noise(prior_sd, math.inf, "prior")


def _two_sided_p(t: float, df: float) -> float:
    if math.isinf(df):
        return float(2 * special.ndtr(-abs(t)))
    return float(2 * special.stdtr(df, -abs(t)))


def _critical(df: float, alpha: float = ALPHA) -> float:
    return float(-special.ndtri(alpha / 2) if math.isinf(df) else -special.stdtrit(df, alpha / 2))


# --------------------------------------------------------------------------------------------------
# A cell against the paper


@dataclass(frozen=True)
class PaperTest:
    """Our median minus the paper's value, its standard error and the two-sided p-value of "same
    distribution"."""

    diff: float
    se: float
    p_value: float


def test_against_paper(values, paper: float, paper_runs: int, sd: Noise) -> PaperTest:
    """t-test of our median against the paper's (a median of `paper_runs` runs) with seed noise `sd`."""
    arr = _clean(values)
    if len(arr) == 0 or not math.isfinite(paper) or not math.isfinite(sd.sd):
        return PaperTest(math.nan, math.nan, math.nan)
    diff = float(np.median(arr)) - paper
    se = sd.sd * math.sqrt(median_variance_factor(len(arr)) + median_variance_factor(max(1, paper_runs)))
    return PaperTest(diff, se, _two_sided_p(diff / se, sd.df) if se > 0 else math.nan)


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


def paper_verdict(n: int, test: PaperTest, p_adjusted: float, alpha: float = ALPHA) -> str:
    if n == 0:
        return TOO_FEW
    if not math.isfinite(p_adjusted) or p_adjusted >= alpha:
        return CONSISTENT
    return HIGHER if test.diff > 0 else LOWER


# --------------------------------------------------------------------------------------------------
# Orderings: a variant against its baseline


@dataclass(frozen=True)
class Difference:
    """variant - baseline: the estimate, its standard error and degrees of freedom, the 95 %
    t-interval and the two-sided p-value of "no difference". `paired`: whether the seed blocks entered
    (the sides share seeds); `n`, `n_baseline`: the runs of each side."""

    paired: bool
    n: int
    n_baseline: int
    diff: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float

    @classmethod
    def of(cls, paired: bool, n: int, n_baseline: int, diff: float, se: float, df: float) -> Difference:
        half = _critical(df) * se
        p = _two_sided_p(diff / se, df) if se > 0 else math.nan
        return cls(paired, n, n_baseline, diff, se, df, diff - half, diff + half, p)


NO_DIFFERENCE = Difference(False, 0, 0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)


class SeedBlocks:
    """The additive model of one table column: run = cell effect + seed effect + noise.

    Every run of a seed sees the same data order and augmentation, so a seed may push all of its runs
    the same way; the model removes that shared effect (the seed is a block), as a paired comparison
    does, and pools the remaining noise over every cell, with (runs - cells - seeds + 1) degrees of
    freedom. For two cells with the same seeds it is exactly the paired t-test; a cell's seeds that
    the other cells lack still count through the cells that have them. The contrast t-tests are exact
    for normal noise. With too few degrees of freedom, the noise is the prior's (one seed's
    difference then has standard deviation √2 · prior, assuming no shared seed effect)."""

    def __init__(self, cells: dict[object, dict[int, float]], prior_sd: float):
        self.cells = {c: clean for c, runs in cells.items()
                      if (clean := {s: float(v) for s, v in runs.items() if math.isfinite(v)})}
        self.names = list(self.cells)
        self.prior_sd = prior_sd
        seeds = sorted({s for runs in self.cells.values() for s in runs})
        seed_column = {s: len(self.names) + k - 1 for k, s in enumerate(seeds) if k > 0}
        rows = [(i, s, v) for i, c in enumerate(self.names) for s, v in self.cells[c].items()]
        self.x = np.zeros((len(rows), len(self.names) + max(0, len(seeds) - 1)))
        y = np.array([v for _, _, v in rows])
        for r, (i, s, _) in enumerate(rows):
            self.x[r, i] = 1.0
            if s in seed_column:
                self.x[r, seed_column[s]] = 1.0
        self.gram_inverse = np.linalg.pinv(self.x.T @ self.x)
        self.beta = self.gram_inverse @ self.x.T @ y
        df = len(rows) - (int(np.linalg.matrix_rank(self.x)) if rows else 0)
        rss = float(np.sum((y - self.x @ self.beta) ** 2))
        self.noise = Noise(math.sqrt(rss / df), df, "pooled") if df >= MIN_DF and rss > 0 else \
            Noise(prior_sd, math.inf, "prior")

    @property
    def difference_sd(self) -> float:
        """The standard deviation of one seed's difference between two cells: √2 σ."""
        return math.sqrt(2) * self.noise.sd

    def compare(self, variant, baseline) -> Difference:
        """variant - baseline (cell keys): the contrast of the two cell effects when the seeds link
        them; when they do not (no seed in common, no other cell between them), the difference of the
        two cells' means with the noise of the runs' spread around their cell means."""
        if variant not in self.cells or baseline not in self.cells:
            return dataclasses.replace(NO_DIFFERENCE, n=len(self.cells.get(variant, {})),
                                       n_baseline=len(self.cells.get(baseline, {})))
        n, n_b = len(self.cells[variant]), len(self.cells[baseline])
        contrast = np.zeros(self.x.shape[1])
        contrast[self.names.index(variant)], contrast[self.names.index(baseline)] = 1.0, -1.0
        estimable = float(np.max(np.abs(contrast @ self.gram_inverse @ (self.x.T @ self.x) - contrast))) < 1e-8
        shared = bool(set(self.cells[variant]) & set(self.cells[baseline]))
        if estimable:
            se = self.noise.sd * math.sqrt(float(contrast @ self.gram_inverse @ contrast))
            return Difference.of(shared, n, n_b, float(contrast @ self.beta), se, self.noise.df)
        run_noise = noise([list(self.cells[c].values()) for c in self.names], self.prior_sd)
        a, b = np.array(list(self.cells[variant].values())), np.array(list(self.cells[baseline].values()))
        return Difference.of(False, n, n_b, float(a.mean() - b.mean()), run_noise.sd * math.sqrt(1 / n + 1 / n_b),
                             run_noise.df)


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


def detectable_difference(difference_sd: float, seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference that `seeds` seeds per side resolve with probability `power` at
    level `alpha`: what a "no difference resolved" verdict can rule out, chosen before looking at the
    runs (unlike a power computed at the difference observed)."""
    if seeds < 1 or not math.isfinite(difference_sd):
        return math.nan
    return _z_for(alpha, power) * difference_sd / math.sqrt(seeds)


def ordering_verdict(difference: Difference, paper_diff: float, alpha: float = ALPHA) -> str:
    """supported: significant on the paper's side; contradicted: significant on the other side (or any
    significant difference where the paper's is 0); unresolved: not significant; too_few: a side
    without runs. Without a paper difference (a spec of one's own, a deviation): higher or lower when
    the difference is significant, two-sided, else unresolved."""
    if difference.n == 0 or difference.n_baseline == 0:
        return TOO_FEW
    if not math.isfinite(difference.p_value) or difference.p_value >= alpha:
        return UNRESOLVED
    if not math.isfinite(paper_diff):
        return HIGHER if difference.diff > 0 else LOWER
    if paper_diff != 0 and (difference.diff > 0) == (paper_diff > 0):
        return SUPPORTED
    return CONTRADICTED


# --------------------------------------------------------------------------------------------------
# Spending seeds in rounds


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
