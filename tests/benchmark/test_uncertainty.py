"""Uncertainty: bootstrap intervals cover the truth at about the nominal rate (over queries, over
seeds, for a group's queries), Holm's correction against a hand-computed example, paired tests."""
import numpy as np
import pytest

from benchmark.uncertainty import bootstrap_intervals, direction, format_interval, holm, paired_test

A, B = 2.0, 5.0
TRUTH = A / (A + B)  # the population MAP of Beta(2, 5) per-query APs


def _coverage(result: np.ndarray, truth: float) -> float:
    return float(np.mean((result[:, 1] <= truth) & (truth <= result[:, 2])))


def test_interval_over_queries_covers_the_truth_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    items = [[(rng.beta(A, B, 200), None)] for _ in range(200)]  # 200 simulated cells of 200 queries
    result = bootstrap_intervals(items)
    assert 0.9 <= _coverage(result, TRUTH) <= 0.99
    # the estimate is the cell's MAP and the interval brackets it, with the width the CLT predicts
    assert result[:, 0] == pytest.approx([item[0][0].mean() for item in items])
    assert np.all(result[:, 1] < result[:, 0]) and np.all(result[:, 0] < result[:, 2])
    sd = np.sqrt(A * B / ((A + B) ** 2 * (A + B + 1)) / 200)
    assert np.mean(result[:, 2] - result[:, 1]) == pytest.approx(2 * 1.96 * sd, rel=0.1)


def test_interval_over_seeds_and_queries_covers_a_seed_effect():
    """Each seed shifts every query's AP (training randomness): the two-level bootstrap must widen
    the interval to cover the expectation over seeds, where a query-only interval would not."""
    rng = np.random.default_rng(1)
    items = []
    for _ in range(200):
        query_ap = rng.beta(A, B, 200)
        items.append([(query_ap + shift, None) for shift in rng.normal(0, 0.03, 10)])
    result = bootstrap_intervals(items)
    assert 0.9 <= _coverage(result, TRUTH) <= 0.99
    query_only = bootstrap_intervals([[(np.mean([ap for ap, _ in item], axis=0), None)] for item in items])
    assert _coverage(query_only, TRUTH) < 0.85
    assert np.mean(result[:, 2] - result[:, 1]) > 1.2 * np.mean(query_only[:, 2] - query_only[:, 1])


def test_group_interval_covers_the_groups_truth():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 300)
    mask = labels < 3  # ~90 queries of the "tail" classes
    items = []
    for _ in range(200):
        ap = np.where(mask, rng.beta(A, B, 300), rng.beta(5.0, 2.0, 300))  # the rest differ
        items.append([(ap, mask)])
    result = bootstrap_intervals(items)
    assert result[0, 0] == pytest.approx(items[0][0][0][mask].mean())
    assert 0.9 <= _coverage(result, TRUTH) <= 0.99


def test_intervals_are_reproducible_and_independent_of_their_batch():
    rng = np.random.default_rng(3)
    first = [[(rng.random(150), None)], [(rng.random(150), None), (rng.random(150), None)]]
    alone = bootstrap_intervals(first[:1])
    together = bootstrap_intervals(first + [[(rng.random(150), rng.random(150) < 0.5)], [(rng.random(77), None)]])
    assert alone[0] == pytest.approx(together[0], abs=1e-6)  # the same draws (float32 products)
    assert np.array_equal(bootstrap_intervals(first), bootstrap_intervals(first))
    assert not np.array_equal(bootstrap_intervals(first, seed=1), bootstrap_intervals(first))


def test_empty_group_and_bad_input():
    result = bootstrap_intervals([[(np.ones(5), np.zeros(5, dtype=bool))]])
    assert np.isnan(result).all()
    constant = bootstrap_intervals([[(np.full(40, 0.25), None)]])
    assert constant[0] == pytest.approx([0.25, 0.25, 0.25])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_intervals([[(np.ones(3), None)]], confidence=95)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_intervals([[(np.ones(3), np.ones(4, dtype=bool))]])


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1; NaN is not a test (m = 2 here)
    adjusted = holm([np.nan, 0.6, 0.01])
    assert np.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.6, 0.02])
    assert holm([0.5, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]).size == 0


def test_paired_test_and_direction():
    rng = np.random.default_rng(4)
    a = rng.random(300)
    t, p = paired_test(a + 0.05 + rng.normal(0, 0.01, 300), a)
    assert t > 0 and p < 1e-10
    assert paired_test(a, a) == (0.0, 1.0)
    with pytest.raises(ValueError, match="same queries"):
        paired_test(a, a[:10])
    assert direction(0.1, 0.001) == "significantly better"
    assert direction(-0.1, 1e-59) == "significantly worse"
    assert direction(-0.1, 0.2) == "not significant"
    assert direction(0.1, float("nan")) == "not significant"
    assert format_interval(0.41234, 0.4, 0.42) == "0.4123 [0.4000, 0.4200]"
    assert format_interval(float("nan"), 0, 1) == "–"
