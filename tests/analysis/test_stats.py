"""The statistics behind the verdicts have the error rates they claim, checked by simulation: seeded,
so every run of the tests draws the same numbers, and sized to take seconds.

σ = 0.15 pp is about the seed spread published for CIFAR-10 WRNs and ResNets; the paper's values are
medians of 5 runs drawn from the same distribution as ours (a faithful reproduction).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as distributions

from analysis import stats

SIGMA = 0.15
SIMULATIONS = 2000


def simulation_error(rate: float, draws: int) -> float:
    """Three standard errors of a simulated rate: the slack a simulated check allows."""
    return 3 * math.sqrt(rate * (1 - rate) / draws)


# --------------------------------------------------------------------------------------------------
# The median's interval


@pytest.mark.parametrize("n, j, coverage", [(3, 1, 0.75), (5, 1, 0.9375), (10, 2, 1 - 2 * 11 / 1024)])
def test_the_interval_is_between_order_statistics_with_its_exact_coverage(n, j, coverage):
    values = np.arange(n, dtype=float)[::-1]
    low, high, stated = stats.median_interval(values)
    assert (low, high) == (j - 1, n - j) and stated == pytest.approx(coverage)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_the_stated_coverage_is_the_true_coverage(n):
    """Draws from a skewed distribution (the interval is distribution-free): the share of intervals
    holding the true median matches the coverage printed next to them."""
    rng = np.random.default_rng(n)
    true_median = math.log(2)  # of an exponential with rate 1
    hits, stated = [], set()
    for _ in range(4000):
        low, high, coverage = stats.median_interval(rng.exponential(size=n))
        hits.append(low <= true_median <= high)
        stated.add(coverage)
    (coverage,) = stated
    assert abs(np.mean(hits) - coverage) < simulation_error(coverage, 4000)
    assert coverage >= stats.CONFIDENCE or n < 6  # 95 % needs 6 runs; fewer say what they have


def test_a_summary_has_the_median_and_no_interval_below_two_runs():
    s = stats.summarize([5.9, 5.5, 5.7, 5.6, 5.8])
    assert (s.n, s.median, s.ci_low, s.ci_high, s.coverage) == (5, 5.7, 5.5, 5.9, pytest.approx(0.9375))
    one = stats.summarize([4.0, math.nan])
    assert one.n == 1 and math.isnan(one.ci_low) and math.isnan(one.coverage)
    assert stats.summarize([]).n == 0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 11])
def test_the_medians_variance_factor(n):
    rng = np.random.default_rng(n)
    simulated = np.var(np.median(rng.standard_normal((100_000, n)), axis=1))
    assert stats.median_variance_factor(n) == pytest.approx(simulated, rel=0.02)


# --------------------------------------------------------------------------------------------------
# A cell against the paper


def simulate_table(rng, runs: int, cells: int = 6, shift: float = 0.0) -> list[str]:
    """One Table-2-like table: `cells` networks at their own true error, our `runs` seeds each, the
    paper's median of 5; the first cell of ours shifted by `shift` σ. Verdicts as the tables give them."""
    truth = rng.uniform(5.5, 6.5, cells)
    ours = [truth[i] + SIGMA * rng.standard_normal(runs) for i in range(cells)]
    ours[0] = ours[0] + shift * SIGMA
    paper = [float(np.median(truth[i] + SIGMA * rng.standard_normal(5))) for i in range(cells)]
    sd = stats.noise(ours, prior_sd=0.22)
    tests = [stats.test_against_paper(ours[i], paper[i], 5, sd) for i in range(cells)]
    adjusted = stats.holm([t.p_value for t in tests])
    return [stats.paper_verdict(runs, t, p) for t, p in zip(tests, adjusted, strict=True)]


@pytest.mark.parametrize("runs", [3, 5])
def test_a_faithful_reproduction_is_flagged_in_at_most_5_percent_of_cells(runs):
    rng = np.random.default_rng(runs)
    flags = [v in (stats.HIGHER, stats.LOWER) for _ in range(SIMULATIONS) for v in simulate_table(rng, runs)]
    assert np.mean(flags) <= 0.05 + simulation_error(0.05, len(flags))
    tables = [any(v != stats.CONSISTENT for v in simulate_table(rng, runs)) for _ in range(SIMULATIONS)]
    assert np.mean(tables) <= 0.05 + simulation_error(0.05, SIMULATIONS)  # Holm: per table, too


def test_a_cell_shifted_by_4_sigma_is_flagged_in_at_least_80_percent_of_tables():
    rng = np.random.default_rng(7)
    flagged = [simulate_table(rng, 5, shift=4.0)[0] == stats.HIGHER for _ in range(SIMULATIONS)]
    assert np.mean(flagged) >= 0.80


def test_without_runs_to_pool_the_prior_is_the_test_sets_spread():
    assert stats.test_set_sd(5.0, 10_000) == pytest.approx(100 * math.sqrt(0.05 * 0.95 / 10_000))
    sd = stats.noise([[5.0], [6.0, 6.1]], prior_sd=0.22)  # 1 degree of freedom: too few
    assert (sd.sd, sd.source, sd.df) == (0.22, "prior", math.inf)
    pooled = stats.noise([[5.0, 5.2, 5.4], [6.0, 6.1, 6.2]], prior_sd=0.22)
    assert pooled.source == "pooled" and pooled.df == 4
    assert pooled.sd == pytest.approx(math.sqrt((0.08 + 0.02) / 4))


def test_holm_adjusts_in_step_down_order():
    assert stats.holm([0.01, 0.04, math.nan, 0.03]) == pytest.approx([0.03, 0.06, math.nan, 0.06], nan_ok=True)


# --------------------------------------------------------------------------------------------------
# Orderings


def simulate_ablation(rng, runs: int, effect: float = 0.0, variants: int = 5, seed_effect: float = 0.0):
    """Table 2's design: `variants` networks and one baseline, the same seeds everywhere; a seed may
    move all of its runs together by `seed_effect` σ."""
    shared = seed_effect * SIGMA * rng.standard_normal(runs)
    cells = {"baseline": dict(enumerate(5.7 + shared + SIGMA * rng.standard_normal(runs)))}
    for v in range(variants):
        cells[v] = dict(enumerate(5.7 + effect + shared + SIGMA * rng.standard_normal(runs)))
    blocks = stats.SeedBlocks(cells, prior_sd=0.22)
    return [blocks.compare(v, "baseline") for v in range(variants)]


@pytest.mark.parametrize("runs, seed_effect", [(3, 0.0), (5, 0.0), (5, 1.0), (10, 0.0)])
def test_without_a_true_effect_orderings_are_called_in_at_most_5_percent(runs, seed_effect):
    rng = np.random.default_rng(runs)
    calls = [stats.ordering_verdict(d, 0.33) in (stats.SUPPORTED, stats.CONTRADICTED)
             for _ in range(SIMULATIONS) for d in simulate_ablation(rng, runs, seed_effect=seed_effect)]
    assert np.mean(calls) <= 0.05 + simulation_error(0.05, SIMULATIONS)  # 5 calls of a draw share a baseline


def test_an_effect_of_the_papers_size_is_supported_as_often_as_the_power_says():
    """0.33 pp at σ = 0.15 with 5 seeds: the t-test on 20 pooled degrees of freedom has about 90 % power."""
    rng = np.random.default_rng(3)
    supported = [stats.ordering_verdict(d, 0.33) == stats.SUPPORTED
                 for _ in range(400) for d in simulate_ablation(rng, 5, effect=0.33)]
    df, se = 20, SIGMA * math.sqrt(2 / 5)
    power = distributions.nct.sf(distributions.t.isf(0.025, df), df, 0.33 / se)
    assert abs(np.mean(supported) - power) < 0.05


def test_without_paper_numbers_the_detectable_difference_is_resolved_as_often_as_planned():
    """A spec of one's own: a true difference of `detectable_difference` at 10 seeds is called higher
    about 80 % of the time (the normal plan; the t-test on 50 pooled degrees of freedom is close), and
    none is called either way in about 5 %."""
    rng = np.random.default_rng(11)
    detectable = stats.detectable_difference(SIGMA * math.sqrt(2), 10)
    found = [stats.ordering_verdict(d, math.nan) for _ in range(400) for d in simulate_ablation(rng, 10, detectable)]
    assert abs(np.mean([v == stats.HIGHER for v in found]) - stats.POWER) < 0.06
    null = [stats.ordering_verdict(d, math.nan) != stats.UNRESOLVED
            for _ in range(SIMULATIONS) for d in simulate_ablation(rng, 10)]
    assert np.mean(null) <= 0.05 + simulation_error(0.05, SIMULATIONS)


def test_a_seed_effect_is_removed_like_a_paired_test():
    """With 2 cells and the same seeds, the model's test is the paired t-test."""
    rng = np.random.default_rng(5)
    base = 5.0 + rng.standard_normal(6)
    variant = base + 0.2 + 0.1 * rng.standard_normal(6)
    d = stats.SeedBlocks({"v": dict(enumerate(variant)), "b": dict(enumerate(base))}, 0.22).compare("v", "b")
    paired = distributions.ttest_rel(variant, base)
    assert d.paired and d.df == 5 and d.p_value == pytest.approx(paired.pvalue)
    assert d.diff == pytest.approx(np.mean(variant - base))


def test_sides_without_a_common_seed_are_compared_unpaired():
    d = stats.SeedBlocks({"v": {5: 6.0, 6: 6.2, 7: 6.1}, "b": {0: 5.0, 1: 5.2, 2: 5.1}}, 0.22).compare("v", "b")
    assert not d.paired and d.diff == pytest.approx(1.0) and d.n == 3 and d.n_baseline == 3


@pytest.mark.parametrize("paper_diff, sd", [(0.05, SIGMA * math.sqrt(2)), (0.33, SIGMA * math.sqrt(2)), (0.5, 0.3)])
def test_seeds_needed_is_the_closed_form_sample_size(paper_diff, sd):
    z = distributions.norm.ppf(0.975) + distributions.norm.ppf(0.8)
    assert stats.seeds_needed(paper_diff, sd) == max(2, math.ceil((z * sd / paper_diff) ** 2))
    assert stats.seeds_needed(-paper_diff, sd) == stats.seeds_needed(paper_diff, sd)


def test_the_papers_smallest_table_2_difference_needs_about_140_seeds():
    assert stats.seeds_needed(0.05, SIGMA * math.sqrt(2)) == 142
    assert math.isinf(stats.seeds_needed(0.0, 0.2))


@pytest.mark.parametrize("p, paper_diff, diff, verdict", [
    (0.01, 0.3, 0.25, stats.SUPPORTED), (0.01, 0.3, -0.25, stats.CONTRADICTED), (0.2, 0.3, 0.1, stats.UNRESOLVED),
    (0.01, 0.0, 0.1, stats.CONTRADICTED), (0.01, math.nan, 0.1, stats.HIGHER), (0.01, math.nan, -0.1, stats.LOWER),
    (0.2, math.nan, 0.1, stats.UNRESOLVED),
])
def test_ordering_verdicts(p, paper_diff, diff, verdict):
    d = stats.Difference(True, 5, 5, diff, 0.1, 20, diff - 0.2, diff + 0.2, p)
    assert stats.ordering_verdict(d, paper_diff) == verdict
    assert stats.ordering_verdict(stats.NO_DIFFERENCE, paper_diff) == stats.TOO_FEW


# --------------------------------------------------------------------------------------------------
# Rounds of seeds


def test_rounds_double_up_to_the_maximum_and_spend_alpha_over_them():
    assert stats.rounds(5, 40) == [5, 10, 20, 40] and stats.rounds(5, 12) == [5, 10, 12] and stats.rounds(5, 5) == [5]
    levels = stats.alpha_spending([5, 10, 20, 40])
    assert levels == pytest.approx([0.00625, 0.00625, 0.0125, 0.025]) and sum(levels) == pytest.approx(0.05)
