"""FSSH: its own optimisation. The objective  ||rS - (XW)(YG)^T||^2 + mu ||B - YG||^2 + theta ||B - XW||^2
is computed here from the paper's formula with the dense n x n S = Y Y^T (small n), from the fitted
state; it must match what the method records (the method never forms S) and never rise."""
from __future__ import annotations

import numpy as np
import pytest

from methods.fssh import FSSH

N_ITERATIONS = 5


def direct_features(model: FSSH, X: np.ndarray) -> np.ndarray:
    """z-scored RBF features of L2-normalised rows, with plain numpy."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = ((Xn[:, None, :] - model.anchors_[None, :, :]) ** 2).sum(axis=2)
    return (np.exp(-D / (2 * model.sigma**2)) - model.feature_mean_) / model.feature_scale_


def paper_objective(model: FSSH, X: np.ndarray, y: np.ndarray) -> float:
    Y = np.eye(len(model.classes_))[np.searchsorted(model.classes_, y)]
    S = Y @ Y.T  # dense: only affordable because n is tiny here
    F = direct_features(model, X)
    B = model.train_codes_.astype(float)
    XW, YG = F @ model.feature_projection_, Y @ model.codes_label_projection_
    return float(
        np.linalg.norm(model.similarity_scale * S - XW @ YG.T) ** 2
        + model.mu * np.linalg.norm(B - YG) ** 2
        + model.theta * np.linalg.norm(B - XW) ** 2
    )


@pytest.fixture(scope="module")
def train(long_tail_train_float64):
    return long_tail_train_float64


@pytest.fixture(scope="module")
def runs(train):
    X, y = train
    return [FSSH(n_bits=16, n_anchors=80, n_iterations=k).fit(X, y) for k in range(1, N_ITERATIONS + 1)]


def test_recorded_objective_is_the_paper_objective(runs, train):
    X, y = train
    np.testing.assert_allclose(runs[0]._kernel_features(X), direct_features(runs[0], X), atol=1e-10)
    for k, model in enumerate(runs, start=1):
        assert len(model.objective_) == k
        direct = paper_objective(model, X, y)
        assert model.objective_[-1] == pytest.approx(direct, rel=1e-8)
        np.testing.assert_allclose(runs[-1].objective_[:k], model.objective_, rtol=1e-10)


def test_objective_never_rises_across_iterations(runs, train):
    X, y = train
    direct = np.array([paper_objective(model, X, y) for model in runs])
    assert np.all(np.diff(direct) <= 1e-9 * np.abs(direct[:-1])), direct
    values = runs[-1].objective_
    assert np.all(np.diff(values) <= 1e-9 * np.abs(values[:-1])), values
    assert values[-1] < values[0]


def test_each_block_update_is_exact(runs, train):
    """The last W-step is the exact minimiser given B and G (perturbing W cannot help), and the
    B-step's sgn(mu YG + theta XW) is the exact minimiser given G and W."""
    X, y = train
    model = runs[-1]
    base = paper_objective(model, X, y)
    rng = np.random.default_rng(0)
    W = model.feature_projection_
    for scale in (1e-4, 1e-2):
        model.feature_projection_ = W + scale * rng.standard_normal(W.shape)
        assert paper_objective(model, X, y) > base
    model.feature_projection_ = W
    F = direct_features(model, X)
    Y = np.eye(len(model.classes_))[np.searchsorted(model.classes_, y)]
    field = model.mu * Y @ model.codes_label_projection_ + model.theta * F @ model.feature_projection_
    best_codes = np.where(field >= 0, 1, -1).astype(np.int8)
    saved = model.train_codes_
    model.train_codes_ = best_codes
    assert paper_objective(model, X, y) <= base + 1e-9 * abs(base)
    model.train_codes_ = saved


def test_similarity_is_recomputed_from_our_labels(train):
    """S Y comes from y (not a shipped file); sparse class ids are compacted, order-preserving
    relabelling changes nothing, and the codes separate the classes."""
    X, y = train
    first = FSSH(n_bits=16, n_anchors=80).fit(X, y)
    relabelled = FSSH(n_bits=16, n_anchors=80).fit(X, 3 * y + 100)
    np.testing.assert_allclose(first.objective_, relabelled.objective_, rtol=1e-10)
    assert relabelled.codes_label_projection_.shape == (len(np.unique(y)), 16)
    # the learned codes separate the classes: same-class items agree on more bits than others
    codes = first.train_codes_.astype(float)
    agreement = codes @ codes.T / codes.shape[1]
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    other = y[:, None] != y[None, :]
    assert agreement[same].mean() > agreement[other].mean() + 0.5


def test_fewer_samples_than_anchors_uses_every_sample(train):
    X, y = train
    X, y = X[::6][:60], y[::6][:60]
    assert len(np.unique(y)) > 5
    with pytest.warns(UserWarning, match="anchors"):
        model = FSSH(n_bits=16, n_anchors=500).fit(X, y)
    assert model.n_anchors_ == 60
    values = model.objective_
    assert np.all(np.isfinite(values)) and np.all(np.diff(values) <= 1e-9 * np.abs(values[:-1]))
