"""The evaluator against brute-force references written here: Hamming distances, both tie policies,
MAP@all and MAP@k, precision@k, precision-recall by radius, queries without relevant items, chunking,
and clear errors on bad input. Every test runs on both backends (the NumPy reference and the
compiled numba kernel, chosen through LTH_EVALUATOR_BACKEND), and the two are compared directly.

The references are deliberately naive: distances by comparing unpacked bits, index order by a stable
argsort, and the tie-aware expectation either by enumerating every order of the tied items (tiny
cases) or by summing explicit hypergeometric probabilities over positions (checked against the
enumeration here, then used on 8-bit codes with 200 database items, where groups of 50+ items tie).
"""
from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

from benchmark import metrics
from benchmark.metrics import (
    EvaluationResult,
    evaluate,
    evaluate_packed,
    hamming_distances,
    pack_codes,
    unpack_codes,
)
from benchmark.metrics import EvaluationInputError as InvalidInputError


def numba_works() -> bool:
    return metrics._load_kernel()[0] is not None


needs_numba = pytest.mark.skipif(not numba_works(), reason="numba is not installed or does not compile here")


@pytest.fixture(autouse=True, params=["numpy", pytest.param("numba", marks=needs_numba)])
def backend(request, monkeypatch):
    """Run each test on both backends: ``backend="auto"`` (the default) follows the variable."""
    monkeypatch.setenv(metrics.BACKEND_ENVIRONMENT_VARIABLE, request.param)
    return request.param


# ----------------------------------------------------------------------------------------------
# Brute-force references
# ----------------------------------------------------------------------------------------------
def random_codes(rng, n, n_bits):
    return np.where(rng.random((n, n_bits)) < 0.5, 1, -1).astype(np.int8)


def reference_distances(query_codes, database_codes):
    return (query_codes[:, None, :] != database_codes[None, :, :]).sum(axis=2)


def ap_of_ranking(relevant_in_rank_order, topk=None):
    """AP (topk=None) or AP@k of one ranked relevance vector; 0 when nothing relevant is counted."""
    relevant = np.asarray(relevant_in_rank_order, dtype=float)
    if topk is not None:
        relevant = relevant[:topk]
    n_relevant = relevant.sum()
    if n_relevant == 0:
        return 0.0
    precision = np.cumsum(relevant) / np.arange(1, relevant.size + 1)
    return float((precision * relevant).sum() / n_relevant)


def index_order_ap(distances, relevant, topk=None):
    order = np.argsort(distances, kind="stable")
    return ap_of_ranking(relevant[order], topk)


def enumerated_tie_aware(distances, relevant, topk=None, k_precision=None):
    """Mean AP (or precision@k_precision) over EVERY order of the tied items (tiny inputs only)."""
    groups = [np.flatnonzero(distances == value) for value in np.unique(distances)]
    values = []
    for orders in itertools.product(*(itertools.permutations(group) for group in groups)):
        ranking = relevant[np.concatenate([np.asarray(order) for order in orders])]
        if k_precision is not None:
            values.append(ranking[:k_precision].sum() / k_precision)
        else:
            values.append(ap_of_ranking(ranking, topk))
    return float(np.mean(values))


def expected_group_sum(before, relevant_before, size, n_relevant, positions):
    """E[sum over the first `positions` places of a tied group of P(rank) * rel(rank)].

    Explicit probabilities: place i of the group holds a relevant item with k of the group's other
    relevant items before it with probability (r/n) * C(r-1, k) C(n-r, i-1-k) / C(n-1, i-1).
    """
    total = 0.0
    for i in range(1, positions + 1):
        for k in range(0, min(n_relevant - 1, i - 1) + 1):
            probability = (n_relevant / size) * comb(n_relevant - 1, k) * comb(size - n_relevant, i - 1 - k) \
                / comb(size - 1, i - 1)
            total += probability * (relevant_before + k + 1) / (before + i)
    return total


def reference_tie_aware_ap(distances, relevant, topk=None):
    """Expected AP / AP@k over random orders of tied items, from explicit probabilities."""
    relevant = relevant.astype(int)
    n_total = int(relevant.sum())
    cutoff = distances.size if topk is None else min(topk, distances.size)
    before = relevant_before = 0
    inside_sum = 0.0
    for value in np.unique(distances):
        members = distances == value
        size, n_relevant = int(members.sum()), int(relevant[members].sum())
        if before + size <= cutoff:  # the whole group is inside the cut
            inside_sum += expected_group_sum(before, relevant_before, size, n_relevant, size)
            before, relevant_before = before + size, relevant_before + n_relevant
            continue
        if before < cutoff:  # the group the cut splits: X relevant items land in its first m places
            m = cutoff - before
            expectation = 0.0
            for x in range(0, min(n_relevant, m) + 1):
                p = comb(n_relevant, x) * comb(size - n_relevant, m - x) / comb(size, m)
                if p and relevant_before + x:
                    partial = expected_group_sum(before, relevant_before, m, x, m)
                    expectation += p * (inside_sum + partial) / (relevant_before + x)
            return expectation
        break
    if topk is None:
        return inside_sum / n_total if n_total else 0.0
    return inside_sum / relevant_before if relevant_before else 0.0


def reference_tie_aware_precision(distances, relevant, k):
    """E[#relevant in the first k] / k: each tied group contributes r * (share of it inside)."""
    k = min(k, distances.size)
    before, expected = 0, 0.0
    for value in np.unique(distances):
        members = distances == value
        size = int(members.sum())
        expected += relevant[members].sum() * np.clip(k - before, 0, size) / size
        before += size
    return expected / k


def many_ties_problem(seed=0, n_queries=24, n_database=200, n_bits=8, n_classes=5):
    """8-bit codes (9 distance values for 200 items), 5 classes; class 5 exists only among queries."""
    rng = np.random.default_rng(seed)
    query_codes = random_codes(rng, n_queries, n_bits)
    database_codes = random_codes(rng, n_database, n_bits)
    query_labels = rng.integers(0, n_classes, n_queries)
    query_labels[:3] = n_classes  # no relevant database item for these three
    database_labels = rng.integers(0, n_classes, n_database)
    database_labels[-1] = query_labels[3]  # the very last database item is relevant to query 3
    return query_codes, database_codes, query_labels, database_labels


@pytest.fixture(scope="module")
def many_ties():
    query_codes, database_codes, query_labels, database_labels = many_ties_problem()
    distances = reference_distances(query_codes, database_codes)
    relevant = query_labels[:, None] == database_labels[None, :]
    return query_codes, database_codes, query_labels, database_labels, distances, relevant


# ----------------------------------------------------------------------------------------------
# The references themselves, and the evaluator, against full enumeration on tiny cases
# ----------------------------------------------------------------------------------------------
def tiny_cases():
    rng = np.random.default_rng(7)
    for _ in range(12):
        n_database = int(rng.integers(4, 8))
        distances = rng.integers(0, 3, n_database)  # at most 3 distance values: big ties
        relevant = rng.random(n_database) < 0.45
        relevant[rng.integers(n_database)] = True
        yield distances, relevant


def test_reference_tie_aware_formula_matches_enumeration():
    for distances, relevant in tiny_cases():
        for topk in (None, 1, 2, 3, distances.size - 1):
            assert reference_tie_aware_ap(distances, relevant, topk) == pytest.approx(
                enumerated_tie_aware(distances, relevant, topk), abs=1e-12)
        for k in (1, 2, distances.size):
            assert reference_tie_aware_precision(distances, relevant, k) == pytest.approx(
                enumerated_tie_aware(distances, relevant, k_precision=k), abs=1e-12)


def test_evaluator_matches_enumeration_over_all_tie_orders():
    rng = np.random.default_rng(11)
    n_bits, n_database = 3, 7  # 4 distance values for 7 items
    for trial in range(4):
        query_codes = random_codes(rng, 3, n_bits)
        database_codes = random_codes(rng, n_database, n_bits)
        query_labels = rng.integers(0, 2, 3)
        database_labels = rng.integers(0, 2, n_database)
        database_labels[:2] = [0, 1]
        distances = reference_distances(query_codes, database_codes)
        relevant = query_labels[:, None] == database_labels[None, :]
        for topk in (None, 2, 4):
            result = evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk,
                              precision_ks=(1, 3))
            expected = [enumerated_tie_aware(distances[q], relevant[q], topk) for q in range(3)]
            np.testing.assert_allclose(result.ap_tie_aware, expected, rtol=0, atol=1e-12)
        for k in (1, 3):
            expected = np.mean([enumerated_tie_aware(distances[q], relevant[q], k_precision=k)
                                for q in range(3)])
            assert result.precision_at_k[k] == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Many ties: 8-bit codes, 200 database items
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("topk", [None, 1, 17, 60, 199, 200, 10_000])
def test_both_policies_match_reference_with_many_ties(many_ties, topk):
    query_codes, database_codes, query_labels, database_labels, distances, relevant = many_ties
    group_sizes = np.stack([np.bincount(row, minlength=9) for row in distances])
    assert group_sizes.max() >= 50  # the test really is about ties
    result = evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk)
    expected_index = [index_order_ap(distances[q], relevant[q], topk) for q in range(len(distances))]
    expected_tie = [reference_tie_aware_ap(distances[q], relevant[q], topk) for q in range(len(distances))]
    np.testing.assert_allclose(result.ap_index_order, expected_index, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.ap_tie_aware, expected_tie, rtol=0, atol=1e-10)
    assert result.map_index_order == pytest.approx(np.mean(expected_index), abs=1e-12)
    assert result.map_tie_aware == pytest.approx(np.mean(expected_tie), abs=1e-10)
    assert result.mean_average_precision("index_order") == result.map_index_order
    assert np.array_equal(result.average_precision("tie_aware"), result.ap_tie_aware)
    # the two policies genuinely differ when groups tie
    assert np.abs(result.ap_tie_aware - result.ap_index_order).max() > 1e-3


def test_topk_none_counts_the_last_ranked_item():
    # one relevant item, and it is the farthest one: AP = 1 / n_database, never 0
    n_bits, n_database = 8, 9
    query_codes = np.ones((1, n_bits), dtype=np.int8)
    database_codes = np.ones((n_database, n_bits), dtype=np.int8)
    for item in range(n_database - 1):
        database_codes[item, :item] = -1  # distances 0..7
    database_codes[-1] = -1  # distance 8, ranked last under both policies
    labels = np.zeros(n_database, dtype=int)
    labels[-1] = 1
    for topk in (None, n_database, n_database + 5):
        result = evaluate(query_codes, database_codes, [1], labels, topk=topk)
        assert result.ap_index_order[0] == pytest.approx(1 / n_database, abs=1e-15)
        assert result.ap_tie_aware[0] == pytest.approx(1 / n_database, abs=1e-15)
        assert result.topk is None
    cut = evaluate(query_codes, database_codes, [1], labels, topk=n_database - 1)
    assert cut.ap_index_order[0] == 0.0 and cut.ap_tie_aware[0] == 0.0 and cut.topk == n_database - 1


def test_topk_none_last_item_with_many_ties(many_ties):
    # query 3's class has a relevant item at the last database index: it counts at topk=None
    query_codes, database_codes, query_labels, database_labels, distances, relevant = many_ties
    assert relevant[3, -1]
    result = evaluate(query_codes, database_codes, query_labels, database_labels)
    dropped = relevant[3].copy()
    dropped[-1] = False  # what slicing [:topk] with topk=-1 would do to the last database item
    assert result.ap_index_order[3] == pytest.approx(index_order_ap(distances[3], relevant[3]), abs=1e-12)
    assert result.ap_index_order[3] != pytest.approx(index_order_ap(distances[3], dropped), abs=1e-6)


def test_precision_at_k_matches_reference(many_ties):
    query_codes, database_codes, query_labels, database_labels, distances, relevant = many_ties
    ks = (1, 5, 37, 200, 5000)
    result = evaluate(query_codes, database_codes, query_labels, database_labels, precision_ks=ks)
    for k in ks:
        cutoff = min(k, distances.shape[1])
        expected_index = np.mean([relevant[q][np.argsort(distances[q], kind="stable")][:cutoff].sum() / cutoff
                                  for q in range(len(distances))])
        expected_tie = np.mean([reference_tie_aware_precision(distances[q], relevant[q], k)
                                for q in range(len(distances))])
        assert result.precision_at_k_index_order[k] == pytest.approx(expected_index, abs=1e-12)
        assert result.precision_at_k[k] == pytest.approx(expected_tie, abs=1e-12)
    # k beyond the database is the whole database: the fraction of relevant items
    assert result.precision_at_k[5000] == pytest.approx(relevant.mean(axis=1).mean(), abs=1e-12)


def test_pr_curve_by_hamming_radius(many_ties):
    query_codes, database_codes, query_labels, database_labels, distances, relevant = many_ties
    result = evaluate(query_codes, database_codes, query_labels, database_labels)
    curve = result.pr_curve
    assert np.array_equal(curve["radius"], np.arange(9))
    n_relevant = relevant.sum(axis=1)
    for radius in range(9):
        retrieved = distances <= radius
        hits = (retrieved & relevant).sum(axis=1)
        precision = np.where(retrieved.sum(axis=1) > 0, hits / np.maximum(retrieved.sum(axis=1), 1), 0.0)
        recall = np.where(n_relevant > 0, hits / np.maximum(n_relevant, 1), 0.0)
        assert curve["precision"][radius] == pytest.approx(precision.mean(), abs=1e-12)
        assert curve["recall"][radius] == pytest.approx(recall.mean(), abs=1e-12)
    # recall reaches 1 for every query with a relevant item (and 0 for the others) at radius K
    assert curve["recall"][-1] == pytest.approx((n_relevant > 0).mean(), abs=1e-12)
    assert evaluate(query_codes, database_codes, query_labels, database_labels, pr_curve=False).pr_curve is None


def test_queries_without_relevant_items_score_zero_and_are_counted(many_ties):
    query_codes, database_codes, query_labels, database_labels, distances, relevant = many_ties
    result = evaluate(query_codes, database_codes, query_labels, database_labels, precision_ks=(10,))
    without = ~relevant.any(axis=1)
    assert without.sum() == 3 and result.n_queries_without_relevant == 3
    assert np.all(result.ap_tie_aware[without] == 0) and np.all(result.ap_index_order[without] == 0)
    # they are counted in the mean: MAP = sum over the others / all queries
    assert result.map_tie_aware == pytest.approx(result.ap_tie_aware[~without].sum() / len(query_labels))
    # and they pull precision@k down with a 0 of their own
    others = evaluate(query_codes[~without], database_codes, query_labels[~without], database_labels,
                      precision_ks=(10,))
    assert result.precision_at_k[10] == pytest.approx(others.precision_at_k[10] * (~without).sum() / len(without))
    assert result.n_queries == len(query_labels) and result.n_database == 200 and result.n_bits == 8


def test_tie_aware_ap_does_not_depend_on_database_order(many_ties):
    query_codes, database_codes, query_labels, database_labels, _, _ = many_ties
    before = evaluate(query_codes, database_codes, query_labels, database_labels, topk=60)
    order = np.random.default_rng(3).permutation(len(database_labels))
    after = evaluate(query_codes, database_codes[order], query_labels, database_labels[order], topk=60)
    np.testing.assert_allclose(after.ap_tie_aware, before.ap_tie_aware, rtol=0, atol=1e-12)
    assert not np.allclose(after.ap_index_order, before.ap_index_order, atol=1e-6)


@pytest.mark.parametrize("topk", [None, 45])
def test_chunks_threads_and_the_sorting_path_give_identical_results(many_ties, topk, monkeypatch):
    query_codes, database_codes, query_labels, database_labels, _, _ = many_ties
    base = evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk, precision_ks=(7, 90))
    variants = [dict(chunk_size=1), dict(chunk_size=5), dict(chunk_size=3, n_threads=2),
                dict(n_threads=3)]
    packed = (pack_codes(query_codes), pack_codes(database_codes))
    runs = [evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk,
                     precision_ks=(7, 90), **variant) for variant in variants]
    # the per-query stable-sort fallback (used when a class is huge) must agree with the histogram path
    runs.append(evaluate_packed(*packed, query_labels, database_labels, n_bits=8, topk=topk,
                                precision_ks=(7, 90), chunk_size=4, _histogram_limit=0.0))
    # the np.bincount counter used on NumPy < 1.25 must agree with the np.add.at one
    monkeypatch.setattr(metrics, "_FAST_UFUNC_AT", not metrics._FAST_UFUNC_AT)
    runs.append(evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk,
                         precision_ks=(7, 90), chunk_size=6))
    for run in runs:
        np.testing.assert_allclose(run.ap_tie_aware, base.ap_tie_aware, rtol=0, atol=1e-13)
        np.testing.assert_array_equal(run.ap_index_order, base.ap_index_order)
        assert run.precision_at_k == pytest.approx(base.precision_at_k, abs=1e-13)
        assert run.precision_at_k_index_order == base.precision_at_k_index_order
        np.testing.assert_allclose(run.pr_curve["precision"], base.pr_curve["precision"], atol=1e-13)


def test_repeated_queries_get_their_own_results(many_ties):
    # the evaluator ranks each distinct (code, class) once: repeats must still get their own class's AP
    query_codes, database_codes, query_labels, database_labels, distances, relevant = many_ties
    rows = np.array([5, 5, 5, 6, 6, 5, 7, 7])
    labels = np.array([0, 1, 0, 2, 2, 3, 4, 0])
    result = evaluate(query_codes[rows], database_codes, labels, database_labels, topk=40)
    for position, (row, label) in enumerate(zip(rows, labels)):
        is_relevant = database_labels == label
        assert result.ap_index_order[position] == pytest.approx(index_order_ap(distances[row], is_relevant, 40), abs=1e-12)
        assert result.ap_tie_aware[position] == pytest.approx(reference_tie_aware_ap(distances[row], is_relevant, 40),
                                                              abs=1e-10)
    assert result.ap_index_order[0] == result.ap_index_order[2] and result.n_queries == len(rows)


def test_wide_histogram_keys_match_reference():
    # 96 bits and a class of 700 items: 97 * 701 > 65,536 keys, so the keys need 32 bits
    rng = np.random.default_rng(9)
    query_codes, database_codes = random_codes(rng, 4, 96), random_codes(rng, 1400, 96)
    database_codes[700:] = database_codes[:700]  # ties across the two classes
    query_labels, database_labels = np.array([0, 1, 0, 1]), np.repeat([0, 1], 700)
    distances = reference_distances(query_codes, database_codes)
    relevant = query_labels[:, None] == database_labels[None, :]
    result = evaluate_packed(pack_codes(query_codes), pack_codes(database_codes), query_labels, database_labels,
                             n_bits=96, _histogram_limit=1e6)
    np.testing.assert_allclose(result.ap_index_order, [index_order_ap(distances[q], relevant[q]) for q in range(4)],
                               rtol=0, atol=1e-12)


def test_labels_of_any_comparable_type():
    query_codes, database_codes, query_labels, database_labels = many_ties_problem(seed=2, n_queries=6)
    names = np.array([f"class-{label}" for label in range(6)])
    as_int = evaluate(query_codes, database_codes, query_labels, database_labels)
    as_str = evaluate(query_codes, database_codes, names[query_labels], names[database_labels])
    as_column = evaluate(query_codes, database_codes, query_labels[:, None], database_labels[:, None])
    np.testing.assert_array_equal(as_str.ap_tie_aware, as_int.ap_tie_aware)
    np.testing.assert_array_equal(as_column.ap_index_order, as_int.ap_index_order)


# ----------------------------------------------------------------------------------------------
# Packing and Hamming distances
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_bits", [1, 8, 12, 48, 63, 64, 65, 96, 130, 300])
@pytest.mark.parametrize("bitwise_count", [True, False])
def test_hamming_distances_match_numpy(monkeypatch, n_bits, bitwise_count):
    if not bitwise_count:  # the lookup-table popcount used on NumPy < 2
        monkeypatch.setattr(metrics, "_HAS_BITWISE_COUNT", False)
    elif not metrics._HAS_BITWISE_COUNT:
        pytest.skip("np.bitwise_count needs NumPy >= 2")
    rng = np.random.default_rng(n_bits)
    query_codes, database_codes = random_codes(rng, 9, n_bits), random_codes(rng, 31, n_bits)
    packed_query, packed_database = pack_codes(query_codes), pack_codes(database_codes)
    assert packed_query.shape == (9, (n_bits + 7) // 8) and packed_query.dtype == np.uint8
    distances = hamming_distances(packed_query, packed_database, n_bits)
    expected = reference_distances(query_codes, database_codes)
    assert distances.dtype == (np.uint8 if n_bits <= 255 else np.uint16)
    np.testing.assert_array_equal(distances, expected)
    np.testing.assert_array_equal(hamming_distances(packed_query, packed_database), expected)
    np.testing.assert_array_equal(unpack_codes(packed_database, n_bits), database_codes)
    # the evaluator sees the same distances: with a distinct label per item, radius 0 retrieves
    # exactly the zero-distance items
    assert expected.max() <= n_bits


def test_evaluator_with_multiword_codes_matches_reference():
    rng = np.random.default_rng(5)
    n_bits = 96
    query_codes, database_codes = random_codes(rng, 10, n_bits), random_codes(rng, 120, n_bits)
    query_labels, database_labels = rng.integers(0, 3, 10), rng.integers(0, 3, 120)
    distances = reference_distances(query_codes, database_codes)
    relevant = query_labels[:, None] == database_labels[None, :]
    result = evaluate(query_codes, database_codes, query_labels, database_labels, topk=50)
    np.testing.assert_allclose(result.ap_index_order,
                               [index_order_ap(distances[q], relevant[q], 50) for q in range(10)], atol=1e-12)
    np.testing.assert_allclose(result.ap_tie_aware,
                               [reference_tie_aware_ap(distances[q], relevant[q], 50) for q in range(10)],
                               atol=1e-10)


# ----------------------------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------------------------
def _valid():
    rng = np.random.default_rng(0)
    return random_codes(rng, 4, 12), random_codes(rng, 10, 12), np.arange(4) % 2, np.arange(10) % 2


@pytest.mark.parametrize("change, message", [
    (lambda q, d, ql, dl: (q[0], d, ql, dl), "2-D array"),
    (lambda q, d, ql, dl: (q[:, :, None], d, ql, dl), "2-D array"),
    (lambda q, d, ql, dl: (q[:, :0], d, ql, dl), "0 bits"),
    (lambda q, d, ql, dl: (q, d[:, :8], ql, dl), "12 bits but database codes have 8"),
    (lambda q, d, ql, dl: ((q > 0).astype(int), d, ql, dl), "2 \\* codes - 1"),
    (lambda q, d, ql, dl: (q > 0, d, ql, dl), "only -1 and \\+1"),
    (lambda q, d, ql, dl: (q, np.where(d > 0, 0.7, -1.0), ql, dl), "only -1 and \\+1"),
    (lambda q, d, ql, dl: (q.astype(float) * np.array([np.nan] + [1.0] * 11), d, ql, dl), "nan"),
    (lambda q, d, ql, dl: (q.astype(str), d, ql, dl), "numeric"),
    (lambda q, d, ql, dl: (q, d, ql[:3], dl), "query_labels has 3 labels but there are 4 codes"),
    (lambda q, d, ql, dl: (q, d, ql, np.append(dl, 0)), "database_labels has 11 labels but there are 10"),
    (lambda q, d, ql, dl: (q, d, ql, np.eye(10)[:, :3]), "argmax"),
    (lambda q, d, ql, dl: (q, d, ql.astype(float) * np.array([np.nan, 1, 1, 1]), dl), "NaN"),
    (lambda q, d, ql, dl: (q, d[:0], ql, dl[:0]), "at least one query and one database item"),
])
def test_bad_input_gives_a_clear_error(change, message):
    query_codes, database_codes, query_labels, database_labels = change(*_valid())
    with pytest.raises(InvalidInputError, match=message):
        evaluate(query_codes, database_codes, query_labels, database_labels)


@pytest.mark.parametrize("kwargs, message", [
    (dict(topk=-1), "do not use -1"),
    (dict(topk=0), "positive integer"),
    (dict(topk=2.5), "positive integer"),
    (dict(precision_ks=(0,)), "precision_ks"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(n_threads=0), "n_threads"),
])
def test_bad_options_give_a_clear_error(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        evaluate(*_valid(), **kwargs)


def test_bad_packed_input_gives_a_clear_error():
    query_codes, database_codes, query_labels, database_labels = _valid()
    packed_query, packed_database = pack_codes(query_codes), pack_codes(database_codes)
    with pytest.raises(InvalidInputError, match="needs 2"):
        hamming_distances(packed_query, packed_database[:, :1], 12)
    with pytest.raises(InvalidInputError, match="padding bits"):
        hamming_distances(packed_query | np.uint8(1), packed_database, 12)
    with pytest.raises(InvalidInputError, match="uint8"):
        hamming_distances(packed_query.astype(np.int16), packed_database, 12)
    with pytest.raises(InvalidInputError, match="2-D"):
        hamming_distances(packed_query[0], packed_database)
    with pytest.raises(InvalidInputError, match="n_bits"):
        evaluate_packed(packed_query, packed_database, query_labels, database_labels, n_bits=0)
    with pytest.raises(InvalidInputError, match="tie policy"):
        EvaluationResult(np.zeros(1), np.zeros(1), 0.0, 0.0, None).average_precision("random")


# ----------------------------------------------------------------------------------------------
# The two backends
# ----------------------------------------------------------------------------------------------
@needs_numba
@pytest.mark.parametrize("n_bits", [1, 7, 64, 65, 130])
@pytest.mark.parametrize("topk", [None, 3, 150])
def test_numba_kernel_equals_the_numpy_reference(n_bits, topk):
    # class-structured codes (heavy ties), a class present only among queries, repeated queries
    rng = np.random.default_rng(n_bits)
    centres = random_codes(rng, 6, n_bits)
    database_labels = rng.integers(0, 5, 400)
    query_labels = np.concatenate([rng.integers(0, 6, 30), [2, 2]])
    flips = lambda n: np.where(rng.random((n, n_bits)) < 0.2, -1, 1).astype(np.int8)
    database_codes = centres[database_labels] * flips(400)
    query_codes = centres[query_labels] * flips(32)
    query_codes[-1] = query_codes[-2]
    reference = evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk,
                         precision_ks=(1, 40, 1000), backend="numpy")
    for chunk, threads in ((1024, 1), (3, 2), (1, 3)):
        run = evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk,
                       precision_ks=(1, 40, 1000), backend="numba", chunk_size=chunk, n_threads=threads)
        np.testing.assert_allclose(run.ap_tie_aware, reference.ap_tie_aware, rtol=0, atol=1e-12)
        np.testing.assert_allclose(run.ap_index_order, reference.ap_index_order, rtol=0, atol=1e-12)
        assert run.precision_at_k == pytest.approx(reference.precision_at_k, abs=1e-12)
        assert run.precision_at_k_index_order == pytest.approx(reference.precision_at_k_index_order, abs=1e-12)
        np.testing.assert_allclose(run.pr_curve["precision"], reference.pr_curve["precision"], atol=1e-12)
        np.testing.assert_allclose(run.pr_curve["recall"], reference.pr_curve["recall"], atol=1e-12)
        assert run.n_queries_without_relevant == reference.n_queries_without_relevant == np.sum(query_labels == 5)
        assert run.map_index_order == pytest.approx(reference.map_index_order, abs=1e-12)
    # the results do not depend on the threads: bit for bit
    one = evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk, backend="numba",
                   chunk_size=5)
    two = evaluate(query_codes, database_codes, query_labels, database_labels, topk=topk, backend="numba",
                   chunk_size=5, n_threads=3)
    np.testing.assert_array_equal(one.ap_index_order, two.ap_index_order)
    np.testing.assert_array_equal(one.ap_tie_aware, two.ap_tie_aware)


def test_auto_falls_back_to_numpy_when_numba_is_unavailable(monkeypatch, many_ties):
    query_codes, database_codes, query_labels, database_labels, distances, relevant = many_ties
    monkeypatch.delenv(metrics.BACKEND_ENVIRONMENT_VARIABLE)
    monkeypatch.setattr(metrics, "_KERNEL_STATE", {"reason": "ImportError: No module named 'numba'"})
    result = evaluate(query_codes, database_codes, query_labels, database_labels, topk=17)
    expected = [index_order_ap(distances[q], relevant[q], 17) for q in range(len(distances))]
    np.testing.assert_allclose(result.ap_index_order, expected, rtol=0, atol=1e-12)
    with pytest.raises(InvalidInputError, match="needs a working numba.*No module named 'numba'.*backend='numpy'"):
        evaluate(query_codes, database_codes, query_labels, database_labels, backend="numba")


def test_bad_backend_gives_a_clear_error(monkeypatch):
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        evaluate(*_valid(), backend="cuda")
    monkeypatch.setenv(metrics.BACKEND_ENVIRONMENT_VARIABLE, "fast")
    with pytest.raises(InvalidInputError, match="LTH_EVALUATOR_BACKEND='fast' is not one of"):
        evaluate(*_valid())
