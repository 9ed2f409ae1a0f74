"""Statistics the paper does not give: how sure is our median, and does the paper's number fit it?

The paper reports the median over 5 runs (Tables 2, 3, 5 and 6), so the cell statistic here is the median
too, and its uncertainty is a bootstrap percentile interval: resample the seeds with replacement
`RESAMPLES` times, take each resample's median, and read the 2.5th and 97.5th percentiles. The
generator is seeded with `SEED`, so the same runs always give the same interval and a regenerated
report does not change by chance.

With very few seeds an interval says little: a cell with fewer than `MIN_N_FOR_VERDICT` finished runs
is not judged (verdict "n<3"), and a single run has no interval at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
SEED = 20160523  # arXiv v1 date of the paper; any fixed value makes the output deterministic
CONFIDENCE = 0.95
MIN_N_FOR_VERDICT = 3

INSIDE, OUTSIDE, TOO_FEW, NO_PAPER, NO_RUNS = "inside", "outside", "n<3", "no paper value", "no runs"

SUPPORTED, CONTRADICTED, UNRESOLVED = "supported", "contradicted", "unresolved"


@dataclass(frozen=True)
class Summary:
    """The finished runs of one cell: median (the paper's statistic), spread and its interval."""

    n: int
    median: float
    min: float
    max: float
    ci_low: float
    ci_high: float


def _clean(values) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


def _percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_medians(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(values), size=(RESAMPLES, len(values)))
    return np.median(values[picks], axis=1)


def bootstrap_median_ci(values) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (NaN, NaN) for fewer than 2 values."""
    arr = _clean(values)
    if len(arr) < 2:
        return float("nan"), float("nan")
    return _percentile_interval(_resampled_medians(arr, np.random.default_rng(SEED)))


def summarize(values) -> Summary:
    """Median, min, max and bootstrap interval of the finite `values` (NaN everywhere when empty)."""
    arr = _clean(values)
    if len(arr) == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan)
    low, high = bootstrap_median_ci(arr)
    return Summary(len(arr), float(np.median(arr)), float(arr.min()), float(arr.max()), low, high)


def verdict(summary: Summary, paper_value: float | None) -> str:
    """Whether the paper's value lies inside our interval; cells with n < 3 are not judged."""
    if summary.n == 0:
        return NO_RUNS
    if paper_value is None or not np.isfinite(paper_value):
        return NO_PAPER
    if summary.n < MIN_N_FOR_VERDICT:
        return TOO_FEW
    return INSIDE if summary.ci_low <= paper_value <= summary.ci_high else OUTSIDE


@dataclass(frozen=True)
class Difference:
    """median(variant) - median(baseline), with a bootstrap interval from resampling both groups
    independently (they are different networks trained with their own seeds)."""

    n_variant: int
    n_baseline: int
    diff: float
    ci_low: float
    ci_high: float


def median_difference(variant, baseline) -> Difference:
    """The variant's median minus the baseline's, with its percentile bootstrap interval (NaN when
    either side has fewer than 2 values, and NaN entirely when either is empty)."""
    a, b = _clean(variant), _clean(baseline)
    nan = float("nan")
    if len(a) == 0 or len(b) == 0:
        return Difference(len(a), len(b), nan, nan, nan)
    diff = float(np.median(a) - np.median(b))
    if len(a) < 2 or len(b) < 2:
        return Difference(len(a), len(b), diff, nan, nan)
    rng = np.random.default_rng(SEED)
    samples = _resampled_medians(a, rng) - _resampled_medians(b, rng)
    low, high = _percentile_interval(samples)
    return Difference(len(a), len(b), diff, low, high)


def ordering_verdict(difference: Difference, paper_diff: float | None) -> str:
    """Do our runs support the paper's ordering of variant vs baseline?

    "supported": our interval excludes 0 on the same side as the paper's difference; "contradicted":
    it excludes 0 on the other side; "unresolved": it contains 0 (or the paper's values are equal).
    Fewer than 3 runs on either side: "n<3"; no paper difference: "no paper value"."""
    if min(difference.n_variant, difference.n_baseline) < MIN_N_FOR_VERDICT:
        return TOO_FEW
    if paper_diff is None or not np.isfinite(paper_diff):
        return NO_PAPER
    if paper_diff == 0 or difference.ci_low <= 0 <= difference.ci_high:
        return UNRESOLVED
    return SUPPORTED if (difference.ci_low > 0) == (paper_diff > 0) else CONTRADICTED
