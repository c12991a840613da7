"""FastHash: the block graph-cut inference step and the boosted-tree hash functions."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from datasets.synthetic import make_class_clusters
from methods.base import InvalidInputError
from methods.fasthash import (
    FastHash, FeatureBins, _BlockStructure, binary_objective, block_coordinate_descent, fit_boosted_bit,
    sample_relation_pairs, solve_submodular_block,
)


def _all_codes(n):
    return np.array(list(itertools.product((-1, 1), repeat=n)), dtype=np.int64)


def _problem(sizes, n_previous_bits, seed, n_similar=1000, n_dissimilar=1000):
    """Labels, all pairs (quotas above the class sizes) and the KSH coefficients of bit m."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    first, second, similar = sample_relation_pairs(labels, n_similar, n_dissimilar, rng)
    previous = rng.choice([-1, 1], size=(labels.size, n_previous_bits))
    affinity = np.einsum("ij,ij->i", previous[first], previous[second]).astype(np.int64)
    bit = n_previous_bits + 1
    coefficients = -(bit * np.where(similar, 1, -1) - affinity)
    return labels, first, second, coefficients, rng


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_cut_equals_brute_force_on_a_random_submodular_energy(seed):
    rng = np.random.default_rng(seed)
    n = 10
    a, b = np.triu_indices(n, 1)
    keep = rng.random(a.size) < 0.5
    a, b = a[keep], b[keep]
    weights = rng.integers(0, 6, size=a.size)
    unary = rng.integers(-8, 9, size=n)
    codes = solve_submodular_block(n, a, b, weights, unary)
    assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    every = _all_codes(n)
    energies = every @ unary - (every[:, a] * every[:, b]) @ weights
    found = codes.astype(np.int64) @ unary - np.dot(weights, codes[a].astype(np.int64) * codes[b])
    assert found == energies.min()


def test_block_step_equals_brute_force_over_the_block_with_the_rest_fixed():
    # block 0 has 10 items; the two other blocks are fixed at random codes
    labels, first, second, coefficients, rng = _problem([10, 7, 6], n_previous_bits=3, seed=4)
    blocks = _BlockStructure(labels, first, second)
    codes = rng.choice(np.array([-1, 1], dtype=np.int8), size=labels.size)
    members = blocks.members[0]
    node, other, pair = blocks.cross[0]
    unary = np.rint(np.bincount(node, weights=coefficients[pair] * codes[other], minlength=members.size))
    pair_ids, edge_first, edge_second = blocks.within[0]
    assert np.all(coefficients[pair_ids] < 0)  # inside a class every term is attractive: submodular
    solved = solve_submodular_block(members.size, edge_first, edge_second, -coefficients[pair_ids],
                                    unary.astype(np.int64))
    # the whole objective J over all 2^10 assignments of the block, the rest fixed
    objectives = []
    for assignment in _all_codes(members.size):
        trial = codes.copy()
        trial[members] = assignment
        objectives.append(binary_objective(trial, first, second, coefficients))
    trial = codes.copy()
    trial[members] = solved
    assert binary_objective(trial, first, second, coefficients) == min(objectives)
    assert min(objectives) < max(objectives)  # a non-trivial block


@pytest.mark.parametrize("seed", [0, 1])
def test_block_coordinate_descent_never_increases_the_bit_objective(seed):
    labels, first, second, coefficients, rng = _problem([30, 20, 15, 8, 5], n_previous_bits=5, seed=seed,
                                                         n_similar=6, n_dissimilar=6)
    blocks = _BlockStructure(labels, first, second)
    codes = np.ones(labels.size, dtype=np.int8)
    start = binary_objective(codes, first, second, coefficients)
    trace = block_coordinate_descent(codes, blocks, first, second, coefficients, 3, rng, trace_blocks=True)
    assert len(trace) == 1 + 3 * 5
    assert trace[0] == start
    assert np.all(np.diff(trace) <= 0)
    assert trace[-1] < trace[0]  # the sub-objective actually fell
    # the running objective is the objective of the final codes, recomputed from scratch
    assert trace[-1] == binary_objective(codes, first, second, coefficients)


def test_feature_bins_are_ordered_and_at_most_255_levels():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_normal(3000), rng.integers(0, 4, 3000), np.maximum(rng.standard_normal(3000), 0)])
    bins = FeatureBins(X, rng)
    binned = bins.transform(X)
    assert binned.dtype == np.uint8 and binned.flags.f_contiguous
    assert bins.n_levels.tolist()[1] == 4 and bins.n_levels.max() <= 255
    for j in range(X.shape[1]):
        order = np.argsort(X[:, j], kind="stable")
        assert np.all(np.diff(binned[order, j].astype(int)) >= 0)  # monotone in the feature
        assert binned[:, j].max() == bins.n_levels[j] - 1


def test_trees_reproduce_the_inferred_bits_on_training_data():
    X, y = make_class_clusters(8, 60, 40, seed=3, noise=1.0)
    first, second, similar = sample_relation_pairs(y, 30, 30, np.random.default_rng(0))
    coefficients = -np.where(similar, 1, -1).astype(np.int64)  # bit 1: a_ij = -y_ij
    codes = np.ones(y.size, dtype=np.int8)
    trace = block_coordinate_descent(codes, _BlockStructure(y, first, second), first, second, coefficients, 2,
                                     np.random.default_rng(1))
    assert trace[-1] < trace[0] and 0.1 < np.mean(codes > 0) < 0.9
    bins = FeatureBins(X, np.random.default_rng(0))
    X_binned = bins.transform(X)
    params = dict(n_trees=30, tree_depth=4, learning_rate=0.3, min_samples_leaf=5, n_features_per_tree=20)
    model, decision = fit_boosted_bit(X_binned, bins, codes, np.ones(y.size), params, np.random.default_rng(2), 1)
    assert len(model.trees) == 30
    # the stored trees (features mapped back from the per-tree subset) give the training decisions
    np.testing.assert_allclose(model.decision_binned(X_binned, 1), decision, rtol=1e-9, atol=1e-9)
    assert np.mean((decision >= 0) == (codes > 0)) > 0.95


def test_fasthash_fits_its_codes():
    X, y = make_class_clusters(6, 40, 24, seed=5)
    model = FastHash(n_bits=6, n_trees=10, n_similar_pairs=20, n_dissimilar_pairs=20, n_jobs=1).fit(X, y)
    assert np.mean(model.training_log_["code_fit_accuracy"]) > 0.9
    for trace in model.training_log_["inference_objective"]:
        assert np.all(np.diff(trace) <= 0)
    codes = model.encode(X).astype(int)
    # same-class items share more bits than different-class items
    agreement = (codes @ codes.T) / 6.0
    same = y[:, None] == y[None, :]
    assert agreement[same].mean() > agreement[~same].mean() + 0.5


def test_non_stagewise_bits_fitted_in_parallel_match_sequential_fits():
    X, y = make_class_clusters(4, 30, 16, seed=6)
    params = dict(n_bits=4, n_trees=5, n_similar_pairs=10, n_dissimilar_pairs=10, stagewise=False)
    sequential = FastHash(**params, n_jobs=1).fit(X, y)
    parallel = FastHash(**params, n_jobs=2).fit(X, y)
    assert sequential.training_log_["code_fit_accuracy"] == parallel.training_log_["code_fit_accuracy"]
    np.testing.assert_array_equal(sequential.encode(X), parallel.encode(X))


# ------------------------------------------------------------------ the numba engine = the reference engine
FAST_TREE_PARAMS = dict(n_trees=12, tree_depth=4, learning_rate=0.3, min_samples_leaf=5, n_features_per_tree=20)


def _bit_problem(seed=3, n_classes=8, per_class=60, dim=40):
    """Class-clustered features (plus a constant and a four-valued feature) and a noisy bit."""
    X, y = make_class_clusters(n_classes, per_class, dim, seed=seed, noise=1.0)
    rng = np.random.default_rng(seed)
    X[:, 0] = 1.5
    X[:, 1] = rng.integers(0, 4, size=y.size)
    codes = np.where(rng.random(n_classes)[y] > 0.5, 1, -1).astype(np.int8)
    codes[rng.random(y.size) < 0.1] *= -1
    weights = rng.random(y.size) + 0.2
    return X, y, codes, weights


@pytest.mark.parametrize("params, n_threads", [
    (FAST_TREE_PARAMS, 1),
    (FAST_TREE_PARAMS, 2),  # features split over two threads
    (dict(FAST_TREE_PARAMS, tree_depth=2, min_samples_leaf=1, n_features_per_tree=100), 1),  # all features
    (dict(FAST_TREE_PARAMS, tree_depth=6, min_samples_leaf=20), 2),  # leaves stopped by min_samples_leaf
])
def test_numba_trees_are_node_for_node_the_scikit_learn_grower_trees(params, n_threads, monkeypatch):
    pytest.importorskip("numba")
    import methods._fasthash_fast as fast_engine

    monkeypatch.setattr(fast_engine, "MIN_WORK_PER_THREAD", 1)  # use the threads even on this small problem
    X, y, codes, weights = _bit_problem()
    bins = FeatureBins(X, np.random.default_rng(0))
    X_binned = bins.transform(X, "reference")
    reference, reference_decision = fit_boosted_bit(X_binned, bins, codes, weights, params,
                                                    np.random.default_rng(2), 1, "reference")
    fast, fast_decision = fit_boosted_bit(X_binned, bins, codes, weights, params, np.random.default_rng(2),
                                          n_threads, "numba")
    assert len(fast.trees) == len(reference.trees) == params["n_trees"] and fast.base == reference.base
    for ours, theirs in zip(fast.trees, reference.trees):
        assert ours.nodes.dtype == theirs.nodes.dtype
        for field in theirs.nodes.dtype.names:  # every field, bit for bit (values, gains, thresholds)
            np.testing.assert_array_equal(ours.nodes[field], theirs.nodes[field], err_msg=field)
    np.testing.assert_array_equal(fast_decision, reference_decision)
    assert sum(tree.nodes.size for tree in fast.trees) > 3 * params["n_trees"]  # real trees, not stumps
    # prediction: numba kernel on bin ids and on raw features = scikit-learn's predict_binned
    expected = reference.decision_binned(X_binned, 1, "reference")
    np.testing.assert_array_equal(fast.decision_binned(X_binned, 1, "numba"), expected)


def test_numba_block_solver_gives_pymaxflow_codes_including_ties():
    pytest.importorskip("numba")
    from methods._fasthash_fast import solve_block

    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(2, 40))
        a, b = np.triu_indices(n, 1)
        keep = rng.random(a.size) < rng.uniform(0.05, 0.9)
        a, b = a[keep], b[keep]
        weights = rng.integers(0, 4, size=a.size)  # zero-weight edges and ties
        unary = rng.integers(-6, 7, size=n) * (rng.random(n) < 0.8)  # zero unaries: free nodes
        expected = solve_submodular_block(n, a, b, weights, unary)
        np.testing.assert_array_equal(solve_block(n, a, b, weights, unary), expected, err_msg=f"trial {trial}")


def test_numba_inference_traces_equal_the_reference_block_by_block():
    pytest.importorskip("numba")
    from methods._fasthash_fast import FastInference
    from methods.fasthash import ReferenceInference

    labels, first, second, coefficients, rng = _problem([30, 20, 15, 8, 5, 1], n_previous_bits=0, seed=3,
                                                         n_similar=6, n_dissimilar=6)
    similar = labels[first] == labels[second]
    blocks = _BlockStructure(labels, first, second)
    slow = ReferenceInference(blocks, first, second, similar, labels.size)
    fast = FastInference(labels, first, second)  # builds the same blocks from the labels
    for bit in range(1, 5):
        codes_slow, codes_fast = np.ones(labels.size, np.int8), np.ones(labels.size, np.int8)
        weights_slow, trace_slow = slow.infer_bit(codes_slow, bit, 3, np.random.default_rng(bit), trace_blocks=True)
        weights_fast, trace_fast = fast.infer_bit(codes_fast, bit, 3, np.random.default_rng(bit), trace_blocks=True)
        assert trace_fast == trace_slow and len(trace_fast) == 1 + 3 * 6
        np.testing.assert_array_equal(codes_fast, codes_slow)
        np.testing.assert_array_equal(weights_fast, weights_slow)
        # the next bit is conditioned on codes that are not the inferred ones (as the trees' are)
        predicted = codes_slow.copy()
        predicted[rng.random(labels.size) < 0.2] *= -1
        assert fast.add_bit(predicted, bit) == pytest.approx(slow.add_bit(predicted, bit), rel=1e-12)


@pytest.mark.parametrize("stagewise", [True, False])
def test_numba_engine_fits_the_reference_model(stagewise):
    pytest.importorskip("numba")
    X, y = make_class_clusters(6, 40, 24, seed=5)
    params = dict(n_bits=6, n_trees=8, n_similar_pairs=20, n_dissimilar_pairs=20, n_jobs=2, stagewise=stagewise)
    reference = FastHash(**params, engine="reference").fit(X, y)
    fast = FastHash(**params, engine="numba").fit(X, y)
    for key in ("inference_objective", "code_fit_accuracy"):
        assert fast.training_log_[key] == reference.training_log_[key], key
    np.testing.assert_allclose(fast.training_log_["ksh_loss"], reference.training_log_["ksh_loss"], rtol=1e-12)
    unseen = np.vstack([X * 1.7 - 0.3, X[:5]])  # beyond the training range, and training rows again
    np.testing.assert_array_equal(fast._encode(unseen), reference._encode(unseen))  # decision values, exactly
    np.testing.assert_array_equal(fast.encode(X), reference.encode(X))


def test_numba_binning_equals_searchsorted_at_and_beyond_the_cuts():
    pytest.importorskip("numba")
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.standard_normal(2000), rng.integers(0, 5, 2000), rng.exponential(size=2000)] * 4)
    bins = FeatureBins(X, rng)
    probe = np.vstack([X, X * 3.0 - 1.0, np.array([[c[0] if c.size else 0.0 for c in bins.thresholds]])])
    np.testing.assert_array_equal(bins.transform(probe, "numba", 2), bins.transform(probe, "reference"))


def test_engine_choice_and_thread_limit(monkeypatch):
    from threadpoolctl import threadpool_limits

    with pytest.raises(InvalidInputError, match="engine must be one of"):
        FastHash(engine="gpu").fit(*make_class_clusters(3, 10, 4, seed=0))
    assert FastHash(tree_depth=7)._fast() is False  # deeper trees: the reference engine
    with threadpool_limits(limits=1):  # what the runner sets for each of its parallel cells
        assert FastHash()._n_threads() == 1
    assert FastHash(n_jobs=3)._n_threads() == 3
    import methods.fasthash as module

    monkeypatch.setattr(module, "numba_available", lambda: False)
    assert FastHash()._fast() is False  # without numba: the NumPy / scikit-learn / PyMaxflow path
    with pytest.raises(InvalidInputError, match="pip install numba"):
        FastHash(engine="numba").fit(*make_class_clusters(3, 10, 4, seed=0))
