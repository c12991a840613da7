"""LSH, PCAH and ITQ do what their papers say (beyond the shared contract tests)."""
from __future__ import annotations

import numpy as np
import pytest

from methods.base import InvalidInputError
from methods.itq import ITQ
from methods.lsh import LSH
from methods.pcah import PCAH
from methods.shared_math import itq_rotation


def _data(n=300, d=24, seed=0):
    rng = np.random.default_rng(seed)
    # non-negative, uncentred (like ReLU features) with an anisotropic covariance
    return np.abs(rng.standard_normal((n, d)) @ rng.standard_normal((d, d))) + 3.0


def test_lsh_is_a_centred_gaussian_projection():
    X = _data()
    model = LSH(n_bits=16, random_state=5).fit(X)
    assert np.allclose(model.mean_, X.mean(axis=0))
    W = np.random.default_rng(5).standard_normal((X.shape[1], 16))
    assert np.allclose(model.projection_, W)
    expected = np.where((X - X.mean(axis=0)) @ W >= 0, 1, -1)
    np.testing.assert_array_equal(model.encode(X), expected)
    # centring balances the bits; an uncentred projection of positive data would not be
    assert np.abs(model.encode(X).mean(axis=0)).mean() < 0.35


def test_pcah_projects_on_the_top_principal_directions():
    X = _data()
    model = PCAH(n_bits=6).fit(X)
    Xc = X - X.mean(axis=0)
    _, singular, Vt = np.linalg.svd(Xc, full_matrices=False)
    # the same subspace, direction by direction (up to sign)
    cosines = np.abs(np.sum(model.projection_ * Vt[:6].T, axis=0))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-8)
    variances = np.var(Xc @ model.projection_, axis=0)
    assert np.all(np.diff(variances) <= 1e-9)  # largest first
    np.testing.assert_array_equal(model.encode(X), np.where(Xc @ model.projection_ >= 0, 1, -1))


def test_pca_methods_name_their_bit_limit():
    X = _data(n=10, d=24)
    for cls in (PCAH, ITQ):
        assert cls.max_bits_for(24, 10) == 9  # centred rows: rank <= n - 1
        with pytest.raises(InvalidInputError, match="n_bits <= 9"):
            cls(n_bits=10).fit(X)
        cls(n_bits=9).fit(X)


def test_itq_quantisation_loss_never_rises_and_reaches_a_fixed_point():
    X = _data(n=400, d=16, seed=1)
    model = ITQ(n_bits=8, n_iterations=50).fit(X)
    losses = model.quantization_loss_
    assert losses.shape == (50,)
    assert np.all(np.diff(losses) <= 1e-9 * losses[0])
    assert losses[-1] < losses[0]
    R = model.rotation_
    np.testing.assert_allclose(R @ R.T, np.eye(8), atol=1e-10)
    # the recorded loss is ||sgn(VR) - VR||^2 of the returned rotation
    V = (X - model.mean_) @ model.pca_
    B = np.where(V @ R >= 0, 1.0, -1.0)
    assert np.isclose(np.sum((B - V @ R) ** 2), losses[-1])
    # R solves the Procrustes problem for its own codes: another update leaves it unchanged
    U, _, Wt = np.linalg.svd(V.T @ B)
    np.testing.assert_allclose(U @ Wt, R, atol=1e-8)


def test_itq_rotation_beats_the_random_start_and_early_stop_is_exact():
    rng = np.random.default_rng(2)
    V = rng.standard_normal((500, 8)) * np.linspace(3, 1, 8)
    R_full, losses_full = itq_rotation(V, 200, np.random.default_rng(0))
    R_stop, losses_stop = itq_rotation(V, 200, np.random.default_rng(0), stop_at_fixed_point=True)
    np.testing.assert_allclose(R_stop, R_full, atol=1e-12)
    assert len(losses_stop) < len(losses_full) == 200
    np.testing.assert_allclose(losses_stop, losses_full[: len(losses_stop)])
    R0 = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))[0]
    start_loss = np.sum((np.where(V @ R0 >= 0, 1.0, -1.0) - V @ R0) ** 2)
    assert losses_full[-1] < 0.97 * start_loss
