"""The probability of improvement (`analysis.improvement`): over seed pairs and over all pairs of runs,
and a bootstrap interval that holds the truth about as often as its level."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import improvement


def test_probability_of_improvement_over_seed_pairs_and_over_all_pairs():
    better = improvement.probability_of_improvement({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.5, 2: 2.0}, paired=True)
    assert better.p == pytest.approx(2 / 3) and better.low <= better.p <= better.high
    unpaired = improvement.probability_of_improvement({0: 1.0, 1: 2.0, 2: 3.0}, {5: 2.0, 6: 4.0, 7: 0.0}, paired=False)
    assert unpaired.p == pytest.approx((1 + 1 + 0 + 0.5 + 1 + 0 + 0 + 1 + 0) / 9)  # a tie counts half
    few = improvement.probability_of_improvement({0: 1.0, 1: 2.0}, {0: 1.5, 1: 2.5}, paired=True)
    assert math.isnan(few.p)  # below MIN_RUNS_IMPROVEMENT


def test_the_interval_of_the_probability_of_improvement_holds_the_truth_about_as_often_as_its_level():
    """Two cells from one distribution: P(better) is 0.5 and the 95 % bootstrap interval (10 paired
    seeds) holds it in most draws; a 3 σ better variant is near 1."""
    rng = np.random.default_rng(13)
    held = []
    for _ in range(300):
        a, b = rng.standard_normal(10), rng.standard_normal(10)
        i = improvement.probability_of_improvement(dict(enumerate(a)), dict(enumerate(b)), paired=True)
        held.append(i.low <= 0.5 <= i.high)
    assert np.mean(held) >= 0.88
    strong = improvement.probability_of_improvement(dict(enumerate(rng.standard_normal(10) - 3)),
                                                    dict(enumerate(rng.standard_normal(10))), paired=True)
    assert strong.p >= 0.9
