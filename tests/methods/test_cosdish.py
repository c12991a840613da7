"""COSDISH: the per-bit BQP solver, the provable Gamma-step descent, the sampled similarity block,
small-data fallbacks, and retrieval quality against LSH."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics import evaluate
from methods.base import InvalidInputError
from methods.cosdish import COSDISH, balanced_bqp_two_approximation, bqp_objective
from methods.lsh import LSH


def mean_average_precision(query_codes, db_codes, query_labels, db_labels):
    return evaluate(query_codes, db_codes, query_labels, db_labels, pr_curve=False).map_tie_aware


@pytest.fixture(scope="module")
def split(long_tail_split):
    return long_tail_split


def planted_bit(m, rng):
    b = -np.ones(m)
    b[rng.permutation(m)[: m // 2]] = 1.0
    return b


@pytest.mark.parametrize("m", [8, 9, 32, 64])
def test_bqp_solver_recovers_a_planted_bit(m):
    rng = np.random.default_rng(m)
    planted = planted_bit(m, rng)
    residual = 3.0 * np.outer(planted, planted) + 0.3 * rng.standard_normal((m, m))
    residual = (residual + residual.T) / 2
    Q = -2.0 * residual
    np.fill_diagonal(Q, 0.0)
    b = balanced_bqp_two_approximation(Q, np.zeros(m))
    assert set(np.unique(b)) <= {-1.0, 1.0}
    assert int((b > 0).sum()) == m // 2  # balanced on Omega, as in the reference (H - 1 ones)
    assert abs(b @ planted) == m  # the planted bit or its mirror image: both are optimal
    # a linear term that prefers the planted sign breaks the symmetry
    b = balanced_bqp_two_approximation(Q, -5.0 * planted)
    np.testing.assert_array_equal(b, planted)


def test_bqp_solver_is_never_worse_than_its_own_candidates_and_near_brute_force():
    rng = np.random.default_rng(1)
    m = 10
    from itertools import combinations

    for _ in range(5):
        A = rng.standard_normal((m, m))
        Q = A + A.T
        np.fill_diagonal(Q, 0.0)
        p = rng.standard_normal(m)
        b = balanced_bqp_two_approximation(Q, p)
        values = []
        for ones in combinations(range(m), m // 2):
            candidate = -np.ones(m)
            candidate[list(ones)] = 1.0
            values.append(bqp_objective(Q, p, candidate))
        values = np.sort(values)
        found = bqp_objective(Q, p, b)
        assert found >= values[0] - 1e-9
        # much better than a typical balanced bit (the median), not necessarily optimal
        assert found < np.median(values)


def test_gamma_step_is_exact_descent_on_its_surrogate(split):
    (X, y), _, _ = split
    model = COSDISH(n_bits=32).fit(X, y)
    before = np.asarray(model.training_log_["gamma_step_before"])
    after = np.asarray(model.training_log_["gamma_step_after"])
    assert len(after) == model.n_rounds * model.n_alternations
    assert np.all(after <= before + 1e-9)
    assert np.all(after < 0)  # sgn(S B) aligns every Gamma row with its field
    assert np.all(np.isfinite(model.training_log_["subproblem_objective"]))


def test_sampled_similarity_block_reference_weighting():
    y = np.array([0, 0, 1, 1, 1, 2])
    omega = np.array([0, 2])
    block = COSDISH()._sampled_similarity(y, omega)
    assert block.shape == (6, 2)  # n x |Omega|, never n x n
    same = y[:, None] == y[omega][None, :]
    r = same.sum() / (~same).sum()
    np.testing.assert_allclose(block, np.where(same, 1.0, r))
    hard = COSDISH(dissimilar_value=-1.0)._sampled_similarity(y, omega)
    np.testing.assert_allclose(hard, np.where(same, 1.0, -1.0))


@pytest.mark.parametrize("n_bits", [32, 96])
def test_every_paper_bit_length(split, n_bits):
    (X, y), (Xq, _), _ = split
    codes = COSDISH(n_bits=n_bits).fit(X, y).encode(Xq)
    assert codes.shape == (len(Xq), n_bits)
    assert (codes.std(axis=0) > 0).mean() > 0.9


def test_cosdish_beats_lsh_at_64_bits(split):
    (X, y), (Xq, yq), (Xd, yd) = split
    model = COSDISH(n_bits=64).fit(X, y)
    cosdish_map = mean_average_precision(model.encode(Xq), model.encode(Xd), yq, yd)
    lsh_maps = [mean_average_precision(*(lambda m: (m.encode(Xq), m.encode(Xd)))(LSH(64, random_state=s).fit(X)), yq, yd)
                for s in range(3)]
    assert cosdish_map > np.mean(lsh_maps) + 0.2, (cosdish_map, lsh_maps)


def test_single_sample_class_and_fewer_items_than_bits(clustered_features):
    X, y = clustered_features
    X, y = np.vstack([X[:40], X[200:201]]), np.append(y[:40], 7)  # class 7 has one sample
    model = COSDISH(n_bits=16).fit(X, y)
    assert (model.encode(X).std(axis=0) > 0).any()
    with pytest.warns(UserWarning, match="Omega"):
        small = COSDISH(n_bits=64).fit(X[:30], y[:30])
    assert small.n_sampled_columns_ == 30
    assert np.all(np.isfinite(small.projection_))


def test_bad_dissimilar_value_is_named(clustered_features):
    X, y = clustered_features
    with pytest.raises(InvalidInputError, match="dissimilar_value"):
        COSDISH(dissimilar_value="soft").fit(X, y)
