"""SDH: its own optimisation. The objective is written here from the paper's formula (plus the
P-ridge term of the reference's RRC.m, see methods/sdh.py) and computed with plain numpy from the
fitted state; it must match what the method records and never rise across outer iterations.
Also the shared discrete cyclic coordinate descent (the B-step) on its own sub-objective."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from methods.base import one_hot
from methods.sdh import SDH
from methods.shared_math import dcc_objective, discrete_cyclic_coordinate_descent

N_ITERATIONS = 5


def direct_kernel_features(model: SDH, X: np.ndarray) -> np.ndarray:
    """[exp(-||x/|x| - a||^2 / 2 sigma^2), 1] with plain numpy (no shared_math)."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = ((Xn[:, None, :] - model.anchors_[None, :, :]) ** 2).sum(axis=2)
    return np.hstack([np.exp(-D / (2 * model.sigma**2)), np.ones((len(X), 1))])


def paper_objective(model: SDH, X: np.ndarray, y: np.ndarray) -> float:
    """||Y - B W||^2 + lambda ||W||^2 + nu (||B - phi(X) P||^2 + lambda_P ||P||^2)."""
    Y = np.eye(y.max() + 1)[y]
    B = model.train_codes_.astype(float)
    W, P = model.classifier_, model.projection_
    phi = direct_kernel_features(model, X)
    return float(
        np.linalg.norm(Y - B @ W) ** 2
        + model.classifier_lambda * np.linalg.norm(W) ** 2
        + model.nu * (np.linalg.norm(B - phi @ P) ** 2 + model.projection_lambda * np.linalg.norm(P) ** 2)
    )


@pytest.fixture(scope="module")
def train(long_tail_train_float64):
    return long_tail_train_float64


@pytest.fixture(scope="module")
def runs(train):
    """Fits with 1..N_ITERATIONS outer iterations (same seed: run k ends in iteration k's state)."""
    X, y = train
    return [SDH(n_bits=16, n_anchors=80, n_iterations=k).fit(X, y) for k in range(1, N_ITERATIONS + 1)]


def test_recorded_objective_is_the_paper_objective(runs, train):
    X, y = train
    for k, model in enumerate(runs, start=1):
        assert len(model.objective_) == k + 1  # after the initial W/P steps, then per iteration
        assert model.training_log_["objective"] == pytest.approx(list(model.objective_))
        direct = paper_objective(model, X, y)
        assert model.objective_[-1] == pytest.approx(direct, rel=1e-9)
        # the shorter runs are prefixes of the longer ones (deterministic, seeded)
        np.testing.assert_allclose(runs[-1].objective_[: k + 1], model.objective_, rtol=1e-12)


def test_objective_never_rises_across_outer_iterations(runs, train):
    X, y = train
    direct = np.array([paper_objective(model, X, y) for model in runs])
    assert np.all(np.diff(direct) <= 1e-9 * np.abs(direct[:-1])), direct
    values = runs[-1].objective_
    assert np.all(np.diff(values) <= 1e-9 * np.abs(values[:-1])), values
    # the discrete steps do real work: from random codes to codes that fit the labels
    assert values[-1] < 0.5 * values[0], values
    Y = one_hot(y)
    fit_error = np.linalg.norm(Y - runs[-1].train_codes_ @ runs[-1].classifier_) ** 2 / len(y)
    assert fit_error < 0.5  # a one-hot row has squared norm 1: the codes predict the labels


def test_training_codes_match_the_hash_function_on_most_items(runs, train):
    """nu keeps B close to phi(X) P: the out-of-sample hash agrees with the learned codes."""
    X, _ = train
    model = runs[-1]
    agreement = np.mean(model.encode(X) == model.train_codes_)
    assert agreement > 0.9, agreement


# ---------------------------------------------------------------------------- shared DCC (B-step)


def random_dcc_problem(seed, n=40, n_bits=6, n_classes=4):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_bits, n_classes))
    Y = one_hot(rng.integers(0, n_classes, n), n_classes)
    Q = Y @ W.T + 0.3 * rng.standard_normal((n, n_bits))
    B = np.where(rng.standard_normal((n, n_bits)) >= 0, 1.0, -1.0)
    return B, W, Q


@pytest.mark.parametrize("seed", range(4))
def test_dcc_sweeps_never_raise_the_sub_objective(seed):
    B, W, Q = random_dcc_problem(seed)
    values = [dcc_objective(B, W, Q)]
    for _ in range(6):  # one sweep at a time, continuing from the last codes
        B = discrete_cyclic_coordinate_descent(B, W, Q, n_sweeps=1)
        values.append(dcc_objective(B, W, Q))
    assert np.all(np.diff(values) <= 1e-9), values
    assert values[-1] < values[0]
    assert set(np.unique(B)) <= {-1.0, 1.0}


@pytest.mark.parametrize("seed", range(4))
def test_dcc_reaches_a_bitwise_minimum(seed):
    B0, W, Q = random_dcc_problem(seed, n_bits=5)
    B = discrete_cyclic_coordinate_descent(B0, W, Q, n_sweeps=50)
    value = dcc_objective(B, W, Q)
    # converged: no single bit flip lowers the objective
    for i, k in itertools.product(range(B.shape[0]), range(B.shape[1])):
        flipped = B.copy()
        flipped[i, k] *= -1
        assert dcc_objective(flipped, W, Q) >= value - 1e-9
    # the objective separates over rows: brute force each row over all 2^K codes
    codes = np.array(list(itertools.product([-1.0, 1.0], repeat=B.shape[1])))
    WWt = W @ W.T
    per_row = np.einsum("ck,kl,cl->c", codes, WWt, codes)[None, :] - 2.0 * Q @ codes.T
    global_min = per_row.min(axis=1).sum()
    assert value >= global_min - 1e-9
    # the global minimiser is a fixed point of the bit-wise update (no sweep moves away from it)
    best = codes[per_row.argmin(axis=1)]
    np.testing.assert_array_equal(discrete_cyclic_coordinate_descent(best, W, Q, n_sweeps=3), best)
    # and DCC does far better than the random start
    assert value < dcc_objective(B0, W, Q) - 0.25 * abs(dcc_objective(B0, W, Q))
