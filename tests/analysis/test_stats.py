import math

import numpy as np
import pytest

from analysis import stats


def test_summary_is_the_median_with_min_max_and_a_deterministic_interval():
    values = [5.9, 5.5, 5.7, 5.6, 5.8]
    first, again = stats.summarize(values), stats.summarize(values)
    assert first == again  # seeded bootstrap: the same runs give the same interval
    assert (first.n, first.median, first.min, first.max) == (5, 5.7, 5.5, 5.9)
    assert 5.5 <= first.ci_low <= 5.7 <= first.ci_high <= 5.9
    assert first.ci_low < first.ci_high


def test_interval_matches_a_direct_percentile_bootstrap():
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    rng = np.random.default_rng(stats.SEED)
    picks = rng.integers(0, len(values), size=(stats.RESAMPLES, len(values)))
    expected = np.percentile(np.median(values[picks], axis=1), [2.5, 97.5])
    assert stats.bootstrap_median_ci(values) == pytest.approx(tuple(expected))


def test_non_finite_values_are_dropped_and_empty_is_nan():
    assert stats.summarize([5.0, math.nan, math.inf]).n == 1
    empty = stats.summarize([])
    assert empty.n == 0 and math.isnan(empty.median)
    single = stats.summarize([4.0])
    assert single.median == 4.0 and math.isnan(single.ci_low)


@pytest.mark.parametrize("values, paper, expected", [
    ([5.5, 5.6, 5.7, 5.8, 5.9], 5.73, stats.INSIDE),
    ([7.0, 7.1, 7.2, 7.3, 7.4], 6.06, stats.OUTSIDE),
    ([5.0, 5.1], 5.05, stats.TOO_FEW),
    ([], 5.0, stats.NO_RUNS),
    ([5.0, 5.1, 5.2], math.nan, stats.NO_PAPER),
])
def test_verdict(values, paper, expected):
    assert stats.verdict(stats.summarize(values), paper) == expected


def test_difference_and_ordering_verdicts():
    worse = [7.0, 7.1, 7.2, 7.3, 7.4]
    base = [5.5, 5.6, 5.7, 5.8, 5.9]
    diff = stats.median_difference(worse, base)
    assert diff.diff == pytest.approx(1.5)
    assert 0 < diff.ci_low <= 1.5 <= diff.ci_high
    assert stats.ordering_verdict(diff, 0.33) == stats.SUPPORTED
    assert stats.ordering_verdict(diff, -0.2) == stats.CONTRADICTED
    overlapping = stats.median_difference([5.6, 5.8, 5.5, 5.9, 5.7], base)
    assert stats.ordering_verdict(overlapping, 0.1) == stats.UNRESOLVED
    assert stats.ordering_verdict(stats.median_difference(worse[:2], base), 0.3) == stats.TOO_FEW
    assert stats.median_difference(worse, base) == diff  # deterministic
