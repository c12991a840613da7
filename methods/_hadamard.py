"""Hadamard matrices of the orders that hashing needs (32, 48, 64, 96 bits...), not only powers of two.

``scipy.linalg.hadamard`` builds orders 2^a only, so 48- and 96-bit CSQ centres would be impossible
with it. Here ``hadamard(n)`` covers

* n = 2^a (Sylvester doubling from [[1]]; equal to ``scipy.linalg.hadamard(n)``),
* n = (q + 1) 2^a with q a prime, q = 3 (mod 4)  (Paley construction I, then Sylvester doublings),
* n = 2 (q + 1) 2^a with q a prime, q = 1 (mod 4) (Paley construction II, then doublings),

e.g. 12, 20, 24 (q = 23), 28 (q = 13, II), 36 (q = 17, II), 48 (q = 47), 96 (48 doubled).
Prime powers q = p^m (m > 1) would need finite-field arithmetic and are not implemented; any other
order raises ``HadamardOrderError`` (a subclass of ``InvalidInputError``), and callers such as CSQ
fall back to something else. Construction: J. E. Paley, "On orthogonal matrices", J. Math. Phys. 12
(1933); Sylvester (1867). Every result satisfies H H^T = n I with entries in {-1, +1}.
"""
from __future__ import annotations

import numpy as np

from .base import InvalidInputError


class HadamardOrderError(InvalidInputError):
    """No Hadamard matrix of the requested order is built by this module."""


def _is_prime(q: int) -> bool:
    if q < 2:
        return False
    if q % 2 == 0:
        return q == 2
    divisor = 3
    while divisor * divisor <= q:
        if q % divisor == 0:
            return False
        divisor += 2
    return True


def _quadratic_character(q: int) -> np.ndarray:
    """chi(a) for a = 0..q-1 over the prime field GF(q): 0, +1 (non-zero square) or -1."""
    character = -np.ones(q, dtype=np.int64)
    character[0] = 0
    squares = (np.arange(1, q, dtype=np.int64) ** 2) % q
    character[squares] = 1
    return character


def _jacobsthal_matrix(q: int) -> np.ndarray:
    """Q[i, j] = chi(j - i) over GF(q) (q prime); antisymmetric when q = 3 mod 4, symmetric when 1 mod 4."""
    character = _quadratic_character(q)
    index = np.arange(q)
    return character[(index[None, :] - index[:, None]) % q]


def paley_type_one(q: int) -> np.ndarray:
    """Hadamard matrix of order q + 1 for a prime q = 3 (mod 4): H = I + [[0, 1^T], [-1, Q]]."""
    if not (_is_prime(q) and q % 4 == 3):
        raise HadamardOrderError(f"Paley construction I needs a prime q = 3 mod 4, got q = {q}.")
    n = q + 1
    skew = np.zeros((n, n), dtype=np.int64)
    skew[0, 1:] = 1
    skew[1:, 0] = -1
    skew[1:, 1:] = _jacobsthal_matrix(q)
    return (skew + np.eye(n, dtype=np.int64)).astype(np.int64)


def paley_type_two(q: int) -> np.ndarray:
    """Hadamard matrix of order 2(q + 1) for a prime q = 1 (mod 4).

    The symmetric conference matrix C = [[0, 1^T], [1, Q]] gives
    H = C (x) [[1, -1], [-1, -1]] + I (x) [[1, 1], [1, -1]].
    """
    if not (_is_prime(q) and q % 4 == 1):
        raise HadamardOrderError(f"Paley construction II needs a prime q = 1 mod 4, got q = {q}.")
    n = q + 1
    conference = np.zeros((n, n), dtype=np.int64)
    conference[0, 1:] = 1
    conference[1:, 0] = 1
    conference[1:, 1:] = _jacobsthal_matrix(q)
    return (
        np.kron(conference, np.array([[1, -1], [-1, -1]]))
        + np.kron(np.eye(n, dtype=np.int64), np.array([[1, 1], [1, -1]]))
    ).astype(np.int64)


def sylvester_double(H: np.ndarray) -> np.ndarray:
    """[[H, H], [H, -H]]: a Hadamard matrix of twice the order."""
    return np.block([[H, H], [H, -H]])


def _core_matrix(core: int) -> np.ndarray | None:
    """A Hadamard matrix of order ``core`` from [[1]], [[1,1],[1,-1]] or one Paley construction."""
    if core == 1:
        return np.ones((1, 1), dtype=np.int64)
    if core == 2:
        return np.array([[1, 1], [1, -1]], dtype=np.int64)
    q = core - 1
    if _is_prime(q) and q % 4 == 3:
        return paley_type_one(q)
    if core % 2 == 0:
        q = core // 2 - 1
        if _is_prime(q) and q % 4 == 1:
            return paley_type_two(q)
    return None


def hadamard_construction(n: int) -> tuple[int, int] | None:
    """(core order, number of doublings) used to build order ``n``, or None when not covered."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        return None
    n = int(n)
    doublings = 0
    while n % (2 ** (doublings + 1)) == 0:
        doublings += 1
    # prefer the largest power of two (fewest Paley factors); fall back to smaller ones
    for a in range(doublings, -1, -1):
        core = n // (2 ** a)
        if _core_matrix(core) is not None:
            return core, a
    return None


def is_hadamard_order_supported(n: int) -> bool:
    return hadamard_construction(n) is not None


def hadamard(n: int) -> np.ndarray:
    """An (n, n) int64 Hadamard matrix (entries +-1, H H^T = n I).

    Raises ``HadamardOrderError`` for orders this module does not build (n not 1, 2 or a
    multiple of 4, or a multiple of 4 outside the Sylvester/Paley families above, e.g. 92).
    """
    construction = hadamard_construction(n)
    if construction is None:
        raise HadamardOrderError(
            f"no Hadamard matrix of order {n!r} is built here: supported orders are 2^a, "
            "(q+1)2^a for a prime q = 3 mod 4 and 2(q+1)2^a for a prime q = 1 mod 4 "
            "(e.g. 8, 12, 16, 20, 24, 28, 32, 36, 48, 64, 96); choose such an order or use "
            "random (Bernoulli) codes instead."
        )
    core, doublings = construction
    H = _core_matrix(core)
    for _ in range(doublings):
        H = sylvester_double(H)
    return H
