"""Hadamard matrices beyond powers of two (Sylvester + Paley I/II), as CSQ's hash centres need."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from methods._hadamard import (
    HadamardOrderError,
    hadamard,
    hadamard_construction,
    paley_type_one,
    paley_type_two,
)
from methods.base import InvalidInputError


def assert_hadamard(H: np.ndarray) -> None:
    n = H.shape[0]
    assert H.shape == (n, n)
    assert set(np.unique(H).tolist()) <= {-1, 1}
    np.testing.assert_array_equal(H @ H.T, n * np.eye(n, dtype=np.int64))


@pytest.mark.parametrize("n", [1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 64, 96, 128])
def test_orders_are_hadamard(n):
    assert_hadamard(hadamard(n))


def test_powers_of_two_equal_scipy():
    for n in (2, 8, 32, 64):
        np.testing.assert_array_equal(hadamard(n), scipy.linalg.hadamard(n))


@pytest.mark.parametrize("q", [3, 7, 11, 19, 23, 31, 43, 47])
def test_paley_one(q):
    H = paley_type_one(q)
    assert H.shape == (q + 1, q + 1)
    assert_hadamard(H)


@pytest.mark.parametrize("q", [5, 13, 17, 29])
def test_paley_two(q):
    H = paley_type_two(q)
    assert H.shape == (2 * (q + 1), 2 * (q + 1))
    assert_hadamard(H)


def test_constructions_used_for_hashing_lengths():
    # 24 = Paley I (q=11) doubled, 48 = 12 * 4, 96 = 12 * 8: all multiples of a Paley core
    assert hadamard_construction(24) == (12, 1)
    assert hadamard_construction(96) == (12, 3)
    assert hadamard_construction(64) == (1, 6)
    # the order 48 also comes straight from q = 47 (both are valid Hadamard matrices)
    assert_hadamard(paley_type_one(47))


@pytest.mark.parametrize("n", [0, 3, 6, 10, 52, 92, 100, -4])
def test_unsupported_orders_raise_clear_error(n):
    assert hadamard_construction(n) is None
    with pytest.raises(HadamardOrderError, match="order"):
        hadamard(n)
    assert issubclass(HadamardOrderError, InvalidInputError)


def test_paley_rejects_wrong_q():
    with pytest.raises(HadamardOrderError, match="3 mod 4"):
        paley_type_one(13)
    with pytest.raises(HadamardOrderError, match="1 mod 4"):
        paley_type_two(7)
    with pytest.raises(HadamardOrderError):
        paley_type_one(15)  # not prime
