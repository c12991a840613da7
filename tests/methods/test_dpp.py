"""Fast greedy DPP MAP inference (methods/_dpp.py, Chen et al. NeurIPS 2018) against brute force,
and LTHNet's per-class prototype selection (eq. 4): distinct items, non-increasing gains, small
classes and duplicates."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from methods._dpp import (
    DEFAULT_EPSILON,
    diverse_prototypes,
    greedy_map_inference_dense,
    greedy_map_inference_low_rank,
    quality_diversity_vectors,
)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def brute_force_greedy(kernel: np.ndarray, max_items: int, epsilon: float = DEFAULT_EPSILON):
    """Greedy MAP by explicit log-determinants: add the item maximising log det(L_{S+j})."""
    selected: list[int] = []
    gains: list[float] = []
    logdet = 0.0
    for _ in range(min(max_items, len(kernel))):
        best, best_logdet = None, -np.inf
        for j in range(len(kernel)):
            if j in selected:
                continue
            sign, value = np.linalg.slogdet(kernel[np.ix_(selected + [j], selected + [j])])
            value = value if sign > 0 else -np.inf
            if value > best_logdet:
                best, best_logdet = j, value
        gain = np.exp(best_logdet - logdet)
        if best is None or gain < epsilon:
            break
        selected.append(best)
        gains.append(gain)
        logdet = best_logdet
    return selected, np.array(gains)


def random_kernel(n, rank, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, rank))
    return vectors @ vectors.T, vectors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_greedy_equals_brute_force_log_det(seed):
    kernel, _ = random_kernel(7, 7, seed)
    selected, gains = greedy_map_inference_dense(torch.tensor(kernel), 5)
    expected, expected_gains = brute_force_greedy(kernel, 5)
    assert selected.tolist() == expected
    np.testing.assert_allclose(gains.numpy(), expected_gains, rtol=1e-9)
    # the gains are the determinant ratios: their product is det(L_S)
    assert np.isclose(np.prod(gains.numpy()), np.linalg.det(kernel[np.ix_(expected, expected)]), rtol=1e-9)


def test_low_rank_form_equals_dense_form():
    kernel, vectors = random_kernel(9, 5, 3)
    dense, dense_gains = greedy_map_inference_dense(torch.tensor(kernel), 4)
    low, low_gains = greedy_map_inference_low_rank(torch.tensor(vectors), 4)
    assert dense.tolist() == low.tolist()
    np.testing.assert_allclose(dense_gains.numpy(), low_gains.numpy(), rtol=1e-9)


def test_gains_never_increase_and_items_are_distinct():
    _, vectors = random_kernel(40, 12, 4)
    selected, gains = greedy_map_inference_low_rank(torch.tensor(vectors), 12)
    assert len(selected) == 12 and len(set(selected.tolist())) == 12
    assert torch.all(gains[1:] <= gains[:-1] + 1e-12)
    assert gains[-1] > 0


def test_stops_when_remaining_items_add_no_volume():
    kernel, vectors = random_kernel(8, 3, 5)  # rank 3: a fourth item has zero residual
    selected, gains = greedy_map_inference_dense(torch.tensor(kernel), 6)
    assert len(selected) == 3
    assert brute_force_greedy(kernel, 6)[0] == selected.tolist()
    assert len(greedy_map_inference_low_rank(torch.tensor(vectors), 6)[0]) == 3


def test_zero_and_empty_requests():
    kernel, _ = random_kernel(4, 4, 6)
    for max_items in (0, -1):
        selected, gains = greedy_map_inference_dense(torch.tensor(kernel), max_items)
        assert selected.numel() == 0 and gains.numel() == 0
    selected, _ = greedy_map_inference_low_rank(torch.zeros(0, 3, dtype=torch.float64), 3)
    assert selected.numel() == 0
    # an all-zero kernel has no item with positive volume
    assert greedy_map_inference_dense(torch.zeros(3, 3), 2)[0].numel() == 0


# ---------------------------------------------------------------------------- LTHNet's prototypes
def class_features(seed=0, n=12, dim=6):
    """Non-negative (post-ReLU-like) features of one class."""
    rng = np.random.default_rng(seed)
    return torch.tensor(np.abs(rng.standard_normal((n, dim)) + 0.5), dtype=torch.float32)


def test_quality_diversity_kernel_is_cosine_gram_scaled_by_centroid_similarity():
    features = class_features(1).double()
    centroid = features.mean(dim=0)
    vectors = quality_diversity_vectors(features, centroid)
    unit = features / features.norm(dim=1, keepdim=True)
    quality = unit @ (centroid / centroid.norm())
    expected = quality[:, None] * (unit @ unit.T) * quality[None, :]
    np.testing.assert_allclose((vectors @ vectors.T).numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_prototypes_are_k_distinct_items_equal_to_brute_force(seed):
    features = class_features(seed)
    centroid = features.mean(dim=0)
    chosen, gains = diverse_prototypes(features, centroid, 3)
    assert len(chosen) == 3 and len(set(chosen.tolist())) == 3
    assert all(0 <= i < len(features) for i in chosen.tolist())
    assert torch.all(gains[1:] <= gains[:-1])
    vectors = quality_diversity_vectors(features, centroid).numpy()
    expected, expected_gains = brute_force_greedy(vectors @ vectors.T, 3)
    assert chosen.tolist() == expected
    np.testing.assert_allclose(gains.numpy(), expected_gains, rtol=1e-9)
    # the first prototype is the item most similar (cosine) to the centroid
    cosine = torch.nn.functional.cosine_similarity(features, centroid[None, :])
    assert chosen[0].item() == int(torch.argmax(cosine))


@pytest.mark.parametrize("n_items", [1, 2, 3])
def test_small_class_gives_all_its_items(n_items):
    features = class_features(2, n=n_items)
    chosen, _ = diverse_prototypes(features, features.mean(dim=0), 3)
    assert sorted(chosen.tolist()) == list(range(n_items))


def test_duplicates_are_chosen_once():
    base = class_features(3, n=3)
    a, b = base[0], base[1]
    features = torch.stack([a, a, b, a, b])  # two distinct directions, repeated
    chosen, gains = diverse_prototypes(features, features.mean(dim=0), 3)
    assert len(chosen) == 2  # stops early: a third item adds no volume
    assert torch.equal(features[chosen[0]], a) and torch.equal(features[chosen[1]], b)
    assert chosen.tolist() == [0, 2]  # ties go to the lowest index
    # a class whose items are all identical yields one prototype
    same = torch.stack([a] * 4)
    assert diverse_prototypes(same, a, 3)[0].tolist() == [0]


def test_zero_feature_items_are_never_chosen():
    features = class_features(4, n=5)
    features[1] = 0.0
    features[3] = 0.0
    chosen, _ = diverse_prototypes(features, features.mean(dim=0), 4)
    assert sorted(chosen.tolist()) == [0, 2, 4]


# ---------------------------------------------------------------------------- all classes at once


def long_tail_rows(seed, n_classes=9, dim=24):
    """Rows of a long-tail set in shuffled order: classes of 0 (none), 1, 2, 3 and up to 40 items,
    with a duplicated row and a zero row."""
    rng = np.random.default_rng(seed)
    counts = np.concatenate([[0, 1, 2, 3], rng.integers(4, 41, n_classes - 4)])
    labels = rng.permutation(np.repeat(np.arange(n_classes), counts))
    features = np.maximum(rng.standard_normal((len(labels), dim)), 0).astype(np.float32)
    big = np.flatnonzero(labels == 5)
    features[big[1]] = features[big[0]]  # a duplicate: chosen at most once
    features[big[2]] = 0.0                 # a zero row: zero quality, never chosen
    labels = torch.tensor(labels)
    features = torch.tensor(features)
    centroids = torch.zeros(n_classes, dim)
    for c in range(n_classes):
        if (labels == c).any():
            centroids[c] = features[labels == c].double().mean(0).float()
    return features, labels, centroids


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [0, 1, 3, 6])
def test_class_prototypes_equal_the_per_class_selection(seed, k):
    from methods._dpp import _class_prototypes_by_class, class_prototypes

    features, labels, centroids = long_tail_rows(seed)
    chosen = class_prototypes(features, labels, centroids, k)  # the compiled, vectorised path
    assert chosen.shape == (centroids.shape[0], k) and chosen.dtype == torch.int64
    for c in range(centroids.shape[0]):
        rows = torch.nonzero(labels == c).flatten()
        expected = []
        if len(rows):
            picks, _ = diverse_prototypes(features[rows], centroids[c], k)
            expected = rows[picks].tolist()
        assert chosen[c].tolist() == expected + [-1] * (k - len(expected)), c
    torch.testing.assert_close(_class_prototypes_by_class(features, labels, centroids, k, DEFAULT_EPSILON), chosen)
    # float64 features take the per-class path: the same choice
    torch.testing.assert_close(class_prototypes(features.double(), labels, centroids, k), chosen)
    duplicate_rows = set(torch.nonzero(labels == 5).flatten()[:3].tolist())
    assert len(duplicate_rows & set(chosen[5].tolist())) <= 1
