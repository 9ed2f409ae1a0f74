"""Probability of improvement, P(variant better than baseline) (Bouthillier et al. 2021, "Accounting
for variance in machine learning benchmarks", MLSys; as rliable reports it): the share of seed pairs
(paired) or of all pairs of runs (unpaired) in which the variant's error is lower, ties counted half,
with a percentile bootstrap interval.

Apart from `analysis.stats` because it rests on no noise model: no σ, no t-test, only the runs
themselves and their resamples; the comparisons report it beside the model's difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.stats import ALPHA

MIN_RUNS_IMPROVEMENT = 3  # runs per side below which no probability of improvement is estimated
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Improvement:
    """P(the variant's error is lower than the baseline's), with its bootstrap interval; NaN with fewer
    than `MIN_RUNS_IMPROVEMENT` runs (or seed pairs) per side."""

    p: float
    low: float
    high: float


NO_IMPROVEMENT = Improvement(math.nan, math.nan, math.nan)


def _better_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of pairs with a < b (ties counted half), along the last axis pair by pair (same shapes)."""
    return np.mean((a < b) + 0.5 * (a == b), axis=-1)


def _pairs_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of all pairs (x of `a`, y of `b`) with x < y, ties counted half: the Mann-Whitney
    statistic, by sorting (n log n: a sweep's thousands of runs per side make n·m pairs too many)."""
    b = np.sort(b)
    right, left = np.searchsorted(b, a, "right"), np.searchsorted(b, a, "left")
    return float(((len(b) - right) + 0.5 * (right - left)).sum() / (len(a) * len(b)))


def probability_of_improvement(variant: dict[int, float], baseline: dict[int, float], paired: bool,
                               alpha: float = ALPHA) -> Improvement:
    """P(variant better than baseline), lower being better: over the seeds both sides ran when
    `paired`, over all pairs of runs otherwise (the Mann-Whitney statistic over n·m); its percentile
    bootstrap interval at 1 - `alpha` resamples seeds (paired) or each side's runs, from a fixed seed
    so that a report reproduces it."""
    rng = np.random.default_rng(0)
    if paired:
        seeds = sorted(set(variant) & set(baseline))
        if len(seeds) < MIN_RUNS_IMPROVEMENT:
            return NO_IMPROVEMENT
        a, b = np.array([variant[s] for s in seeds]), np.array([baseline[s] for s in seeds])
        p = float(_better_share(a, b))
        picks = rng.integers(0, len(seeds), (BOOTSTRAP_RESAMPLES, len(seeds)))
        boot = _better_share(a[picks], b[picks])
    else:
        a, b = np.array(list(variant.values())), np.array(list(baseline.values()))
        if min(len(a), len(b)) < MIN_RUNS_IMPROVEMENT:
            return NO_IMPROVEMENT
        p = _pairs_share(a, b)
        ra = a[rng.integers(0, len(a), (BOOTSTRAP_RESAMPLES, len(a)))]
        rb = b[rng.integers(0, len(b), (BOOTSTRAP_RESAMPLES, len(b)))]
        boot = np.array([_pairs_share(x, y) for x, y in zip(ra, rb, strict=True)])
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Improvement(p, float(low), float(high))
