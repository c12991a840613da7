"""The metric card (benchmark.metrics.metric_card) against brute-force references written here:
mAP@all and mAP@k under both AP@k normalisations and both tie policies, precision within a Hamming
radius (empty balls counted as 0 or dropped) and the share of empty balls.

References: index order by a stable argsort; tie-aware by enumerating EVERY order of the tied
items (tiny cases, exact) or by averaging over many random tie orders (8-bit codes, 120 items,
checked within 5 standard errors); the radius metrics straight from the distances.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmark import metrics
from benchmark.metrics import EvaluationInputError, evaluate, metric_card, pack_codes

BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    metrics._load_kernel()[0] is None, reason="numba is not installed or does not compile here"))]


def random_codes(rng, n, n_bits):
    return np.where(rng.random((n, n_bits)) < 0.5, 1, -1).astype(np.int8)


def ranked_scores(relevant_in_rank_order, ks):
    """Per ranking: AP over all, and for each k AP@k / (relevant in the top k), AP@k / min(k, l)."""
    relevant = np.asarray(relevant_in_rank_order, dtype=float)
    precision = np.cumsum(relevant) / np.arange(1, relevant.size + 1)
    terms = precision * relevant
    n_relevant = relevant.sum()
    scores = {"all": terms.sum() / n_relevant if n_relevant else 0.0}
    for k in ks:
        inside = terms[:k].sum()
        retrieved = relevant[:k].sum()
        scores[(k, "retrieved")] = inside / retrieved if retrieved else 0.0
        scores[(k, "min_k_l")] = inside / min(k, n_relevant) if n_relevant else 0.0
    return scores


def tie_orders_enumerated(distances):
    """Every ranking that sorts by distance, each order of tied items once (equally likely)."""
    groups = [np.flatnonzero(distances == value) for value in np.unique(distances)]
    for orders in itertools.product(*(itertools.permutations(group) for group in groups)):
        yield np.concatenate([np.asarray(order) for order in orders])


def tie_orders_sampled(distances, rng, n_orders):
    """Random rankings by distance, tied items in a uniformly random order."""
    for _ in range(n_orders):
        shuffled = rng.permutation(distances.size)
        yield shuffled[np.argsort(distances[shuffled], kind="stable")]


def reference_card(distances, relevant, ks, radius, orders_for):
    """The card from brute force, and per tie-aware key the standard error of its estimate."""
    per_query = {}
    errors = {}
    for q in range(distances.shape[0]):
        index = ranked_scores(relevant[q][np.argsort(distances[q], kind="stable")], ks)
        samples = [ranked_scores(relevant[q][order], ks) for order in orders_for(distances[q])]
        for key in index:
            name = "map@all" if key == "all" else f"map@{key[0]}/{key[1]}"
            per_query.setdefault(f"{name}/index_order", []).append(index[key])
            values = np.array([sample[key] for sample in samples])
            per_query.setdefault(f"{name}/tie_aware", []).append(values.mean())
            errors.setdefault(f"{name}/tie_aware", []).append(values.var() / len(values))
    card = {key: float(np.mean(values)) for key, values in per_query.items()}
    standard_errors = {key: float(np.sqrt(np.sum(values)) / distances.shape[0]) for key, values in errors.items()}
    inside = distances <= radius
    retrieved = inside.sum(axis=1)
    precision = np.where(retrieved > 0, (inside & relevant).sum(axis=1) / np.maximum(retrieved, 1), 0.0)
    card[f"precision@r{radius}"] = float(precision.mean())
    card[f"precision@r{radius}/nonempty"] = float(precision[retrieved > 0].mean()) if (retrieved > 0).any() \
        else float("nan")
    card[f"empty_r{radius}_share"] = float((retrieved == 0).mean())
    return card, standard_errors


def card_keys(ks, radius):
    keys = {"map@all/tie_aware", "map@all/index_order", f"precision@r{radius}",
            f"precision@r{radius}/nonempty", f"empty_r{radius}_share", "n_queries", "n_database", "n_bits",
            "n_queries_without_relevant"}
    keys |= {f"map@{k}/{normalisation}/{policy}" for k in ks for normalisation in ("retrieved", "min_k_l")
             for policy in ("tie_aware", "index_order")}
    return keys


def distances_of(query_codes, database_codes):
    return (query_codes[:, None, :] != database_codes[None, :, :]).sum(axis=2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("radius", [0, 1, 2, 5])
def test_card_matches_enumeration_over_every_tie_order(backend, radius):
    # 3-bit codes: 4 distance values for 7 items (big ties); class 3 only among the queries (no
    # relevant item); k = 2 and 4 cut tied groups, k = 100 is beyond the database
    rng = np.random.default_rng(radius)
    ks = (2, 4, 100)
    for trial in range(3):
        query_codes, database_codes = random_codes(rng, 6, 3), random_codes(rng, 7, 3)
        query_labels = np.array([0, 1, 2, 3, 0, 1])
        database_labels = rng.integers(0, 3, 7)
        database_labels[:3] = [0, 1, 2]
        distances = distances_of(query_codes, database_codes)
        relevant = query_labels[:, None] == database_labels[None, :]
        expected, _ = reference_card(distances, relevant, ks, radius, tie_orders_enumerated)
        card = metric_card(query_codes, database_codes, query_labels, database_labels, ks=ks, radius=radius,
                           backend=backend)
        assert set(card) == card_keys(ks, radius)
        for key, value in expected.items():
            if np.isnan(value):
                assert np.isnan(card[key]), key
            else:
                assert card[key] == pytest.approx(value, abs=1e-12), key
        assert card["n_queries_without_relevant"] == 1.0 and card["n_database"] == 7.0 and card["n_bits"] == 3.0
        # k beyond the database: both normalisations are the whole-database AP
        for policy in ("tie_aware", "index_order"):
            assert card[f"map@100/retrieved/{policy}"] == pytest.approx(card[f"map@all/{policy}"], abs=1e-15)
            assert card[f"map@100/min_k_l/{policy}"] == pytest.approx(card[f"map@all/{policy}"], abs=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_card_matches_random_tie_orders_with_many_ties(backend):
    # 8-bit codes, 120 items, 4 classes (class 4 only among queries): tied groups of 20+ items
    rng = np.random.default_rng(5)
    query_codes, database_codes = random_codes(rng, 10, 8), random_codes(rng, 120, 8)
    query_labels = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 0])
    database_labels = rng.integers(0, 4, 120)
    distances = distances_of(query_codes, database_codes)
    assert max(np.bincount(row).max() for row in distances) >= 20
    relevant = query_labels[:, None] == database_labels[None, :]
    ks = (5, 30, 119, 500)
    expected, standard_errors = reference_card(
        distances, relevant, ks, 2, lambda row: tie_orders_sampled(row, rng, 1500))
    card = metric_card(query_codes, database_codes, query_labels, database_labels, ks=ks, backend=backend)
    for key, value in expected.items():
        if key.endswith("/tie_aware"):  # an estimate: within 5 standard errors (plus rounding)
            assert abs(card[key] - value) <= 5 * standard_errors[key] + 1e-12, (key, card[key], value)
        else:
            assert card[key] == pytest.approx(value, abs=1e-12), key
    # the two tie policies and the two normalisations really differ here
    assert abs(card["map@30/retrieved/tie_aware"] - card["map@30/retrieved/index_order"]) > 1e-4
    assert abs(card["map@30/retrieved/tie_aware"] - card["map@30/min_k_l/tie_aware"]) > 1e-2
    assert card["n_queries_without_relevant"] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_card_agrees_with_evaluate_and_with_packed_input(backend):
    rng = np.random.default_rng(8)
    query_codes, database_codes = random_codes(rng, 40, 12), random_codes(rng, 300, 12)
    query_labels, database_labels = rng.integers(0, 5, 40), rng.integers(0, 5, 300)
    card = metric_card(query_codes, database_codes, query_labels, database_labels, ks=(50, 1000), backend=backend)
    whole = evaluate(query_codes, database_codes, query_labels, database_labels, backend=backend)
    top = evaluate(query_codes, database_codes, query_labels, database_labels, topk=50, backend=backend)
    assert card["map@all/tie_aware"] == pytest.approx(whole.map_tie_aware, abs=1e-12)
    assert card["map@all/index_order"] == pytest.approx(whole.map_index_order, abs=1e-12)
    assert card["map@50/retrieved/tie_aware"] == pytest.approx(top.map_tie_aware, abs=1e-12)
    assert card["map@50/retrieved/index_order"] == pytest.approx(top.map_index_order, abs=1e-12)
    assert card["precision@r2"] == pytest.approx(whole.pr_curve["precision"][2], abs=1e-12)
    packed = metric_card(pack_codes(query_codes), pack_codes(database_codes), query_labels, database_labels,
                         n_bits=12, ks=(50, 1000), backend=backend)
    assert packed == card
    threaded = metric_card(query_codes, database_codes, query_labels, database_labels, ks=(50, 1000),
                           backend=backend, n_threads=2, chunk_size=7)
    assert threaded == pytest.approx(card, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_radius_balls_count_zero_or_are_dropped(backend):
    # 16 bits. Query 0: every item at distance >= 3 (empty ball). Query 1: items 1 (relevant) and 2
    # (not) within distance 2. Query 2: a copy of item 0 (not relevant), every other item farther than 2.
    database_codes = np.ones((4, 16), dtype=np.int8)
    database_codes[:, :8] = -1
    database_codes[0, 8:11] = -1
    database_codes[1, 0:2] = 1
    database_codes[2, 0] = 1
    database_codes[3, 12:16] = -1
    database_labels = np.array([1, 0, 1, 0])
    query_codes = np.ones((3, 16), dtype=np.int8)
    query_codes[1, :8] = -1
    query_codes[2] = database_codes[0]
    query_labels = np.array([0, 0, 0])
    distances = distances_of(query_codes, database_codes)
    assert np.array_equal(distances <= 2, [[0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]])
    card = metric_card(query_codes, database_codes, query_labels, database_labels, ks=(2,), backend=backend)
    # query 0: empty ball; query 1: items 1 (relevant) and 2 (not) -> 1/2; query 2: item 0, not relevant -> 0
    assert card["empty_r2_share"] == pytest.approx(1 / 3)
    assert card["precision@r2"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert card["precision@r2/nonempty"] == pytest.approx((0.5 + 0) / 2)
    far = metric_card(query_codes[:1], database_codes, query_labels[:1], database_labels, ks=(2,), backend=backend)
    assert far["empty_r2_share"] == 1.0 and far["precision@r2"] == 0.0 and np.isnan(far["precision@r2/nonempty"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(radius=-1), "radius must be an integer >= 0"),
    (dict(radius=1.5), "radius"),
    (dict(ks=(0,)), "positive integers"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(backend="gpu"), "backend must be one of"),
])
def test_bad_card_options_give_a_clear_error(kwargs, message):
    rng = np.random.default_rng(0)
    arguments = (random_codes(rng, 3, 8), random_codes(rng, 9, 8), [0, 1, 0], np.arange(9) % 2)
    with pytest.raises(EvaluationInputError, match=message):
        metric_card(*arguments, **kwargs)
    with pytest.raises(EvaluationInputError, match="uint8"):
        metric_card(*arguments, n_bits=8)  # {-1,+1} codes passed as packed ones
