"""Math shared by several hashing methods, in one place: centring/PCA, ITQ rotation, RBF anchor
features, ridge solves, discrete cyclic coordinate descent (DCC) and blockwise distances.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from common.checks import check_positive_int

from .base import InvalidInputError

# ---------------------------------------------------------------------------- projections


def pca_bit_limit(n_features: int, n_train: int) -> int:
    """Most principal directions n centred rows of dimension d have: min(d, n - 1) (centring
    removes one degree of freedom; beyond it the directions are arbitrary noise)."""
    return max(min(n_features, n_train - 1), 0)


def principal_directions(X_centered: np.ndarray, n_components: int) -> np.ndarray:
    """Top ``n_components`` eigenvectors (d, K) of the covariance of centred rows, largest first.

    Signs are fixed (largest-magnitude entry of each vector positive) so results are deterministic.
    """
    n, d = X_centered.shape
    rank_limit = pca_bit_limit(d, n)
    if n_components > rank_limit:
        raise InvalidInputError(
            f"cannot take {n_components} principal directions from {n} samples of dimension {d} "
            f"(at most {rank_limit}); use n_bits <= {rank_limit} for PCA-based methods."
        )
    covariance = X_centered.T @ X_centered / max(n - 1, 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:n_components]
    W = eigenvectors[:, order]
    flip = np.sign(W[np.abs(W).argmax(axis=0), np.arange(W.shape[1])])
    flip[flip == 0] = 1
    return W * flip


def random_rotation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal (n, n) matrix (QR of a Gaussian matrix)."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return Q


def itq_rotation(V: np.ndarray, n_iterations: int, rng: np.random.Generator, *,
                 stop_at_fixed_point: bool = False):
    """Iterative quantisation (Gong & Lazebnik): find orthogonal R minimising ||B - V R||_F^2.

    Each iteration: B = sgn(V R), then the orthogonal Procrustes update max tr(R^T V^T B):
    V^T B = U S Wt  ->  R = U Wt. Returns (R, losses) where ``losses[t]`` is the quantisation loss
    after iteration t (non-increasing).

    ``stop_at_fixed_point``: when an iteration leaves B unchanged, the update returns the same R
    again and every further iteration is the identity, so stopping there gives exactly the result
    of running all ``n_iterations`` (KNNH's reference runs 1001); ``losses`` is then shorter.
    """
    R = random_rotation(V.shape[1], rng)
    B = np.where(V @ R >= 0, 1.0, -1.0)
    losses = []
    for _ in range(n_iterations):
        U, _, Wt = np.linalg.svd(V.T @ B)
        R = U @ Wt
        projected = V @ R
        new_B = np.where(projected >= 0, 1.0, -1.0)
        losses.append(float(np.sum((new_B - projected) ** 2)))
        if stop_at_fixed_point and np.array_equal(new_B, B):
            break
        B = new_B
    return R, np.asarray(losses)


# ---------------------------------------------------------------------------- distances & kernels


def squared_distances(X: np.ndarray, A: np.ndarray, block_size: int = 8192) -> np.ndarray:
    """Squared Euclidean distances (n, m) between rows of X and rows of A, computed blockwise."""
    out = np.empty((X.shape[0], A.shape[0]), dtype=np.float64)
    a_norms = np.einsum("ij,ij->i", A, A)
    for start in range(0, X.shape[0], block_size):
        block = X[start : start + block_size]
        d = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * block @ A.T + a_norms[None, :]
        np.maximum(d, 0.0, out=d)
        out[start : start + block_size] = d
    return out


def choose_anchors(X: np.ndarray, n_anchors: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n_anchors`` distinct training rows as RBF anchors (uniformly, seeded)."""
    if n_anchors > X.shape[0]:
        raise InvalidInputError(
            f"{n_anchors} RBF anchors requested but only {X.shape[0]} training samples; "
            f"use n_anchors <= {X.shape[0]} or a larger training split."
        )
    return X[np.sort(rng.choice(X.shape[0], size=n_anchors, replace=False))].copy()


def rbf_anchor_features(
    X: np.ndarray, anchors: np.ndarray, sigma: float, *, squared: bool = True, block_size: int = 8192
) -> np.ndarray:
    """Kernel features phi(x) = exp(-D(x, a)/(2 sigma^2)) for every anchor a.

    ``squared=True`` uses the squared Euclidean distance (SDH, FSSH); ``squared=False`` the plain
    distance (SCDH's reference code).
    """
    if not sigma > 0:
        raise InvalidInputError(f"RBF bandwidth sigma must be positive, got {sigma}.")
    D = squared_distances(X, anchors, block_size)
    if not squared:
        np.sqrt(D, out=D)
    D *= -1.0 / (2.0 * sigma * sigma)
    np.exp(D, out=D)
    return D


def l2_normalize_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------------------- solves


def ridge_regression(X: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    """W = argmin ||X W - Y||^2 + lam ||W||^2 = (X^T X + lam I)^-1 X^T Y (Cholesky)."""
    G = X.T @ X
    G[np.diag_indices_from(G)] += lam
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(G, check_finite=False), X.T @ Y)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(G, X.T @ Y)[0]


def discrete_cyclic_coordinate_descent(
    B: np.ndarray, W: np.ndarray, Q: np.ndarray, n_sweeps: int = 10
) -> np.ndarray:
    """Minimise  ||B W||_F^2 - 2 tr(B^T Q)  over B in {-1,+1}^{n x K}, one bit (column) at a time.

    This is the B-step of SDH (Q = Y W^T + nu F), DSDH and related methods. With the other
    columns fixed, column k has the closed form  b_k = sgn(q_k - B_{-k} W_{-k} w_k^T), so the
    objective never rises. Stops early when a full sweep changes no bit.
    B: (n, K) initial codes; W: (K, C); Q: (n, K).
    """
    B = np.where(np.asarray(B) >= 0, 1.0, -1.0)
    K = B.shape[1]
    WWt = W @ W.T  # (K, K)
    for _ in range(n_sweeps):
        changed = False
        for k in range(K):
            others = np.arange(K) != k
            grad = Q[:, k] - B[:, others] @ WWt[others, k]
            new = np.where(grad >= 0, 1.0, -1.0)
            # keep the current bit where the objective is indifferent (grad == 0)
            new = np.where(grad == 0, B[:, k], new)
            if not changed and np.any(new != B[:, k]):
                changed = True
            B[:, k] = new
        if not changed:
            break
    return B


def dcc_objective(B: np.ndarray, W: np.ndarray, Q: np.ndarray) -> float:
    """The objective that ``discrete_cyclic_coordinate_descent`` minimises."""
    return float(np.sum((B @ W) ** 2) - 2.0 * np.sum(B * Q))


def ridge_solver(X: np.ndarray, lam: float):
    """Factor (X^T X + lam I) once; return ``solve(Y) -> argmin_W ||X W - Y||^2 + lam ||W||^2``.

    For alternating methods whose design matrix X is fixed across iterations (SCDH's and SDH's
    P-step): the O(n d^2) Gram product and the Cholesky factorisation are paid once.
    """
    G = X.T @ X
    G[np.diag_indices_from(G)] += lam
    try:
        factor = scipy.linalg.cho_factor(G, check_finite=False)

        def solve(Y: np.ndarray) -> np.ndarray:
            return scipy.linalg.cho_solve(factor, X.T @ Y, check_finite=False)
    except np.linalg.LinAlgError:

        def solve(Y: np.ndarray) -> np.ndarray:
            return scipy.linalg.lstsq(G, X.T @ Y)[0]

    return solve


# ---------------------------------------------------------------------------- neighbours, anchors, blocks
# (appended for KNNH, SDH and FSSH)


def _sorted_smallest(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest entries of every row, smallest first (ties: lower index)."""
    nearest = np.argpartition(scores, k - 1, axis=1)[:, :k]
    nearest_scores = np.take_along_axis(scores, nearest, axis=1)
    order = np.lexsort((nearest, nearest_scores), axis=1)
    return np.take_along_axis(nearest, order, axis=1)


def k_nearest_neighbors(X: np.ndarray, n_neighbors: int, block_size: int = 1024, n_threads: int = 2) -> np.ndarray:
    """Indices (n, k) of each row's ``n_neighbors`` nearest *other* rows (Euclidean), nearest first.

    Exact and blockwise: ``block_size`` query rows at a time are compared with all n rows through
    one matrix product (||x_j||^2 - 2 x_i.x_j; the row-constant ||x_i||^2 does not change the
    ranking), and ``np.argpartition`` keeps the k smallest, so no (n, n) distance matrix is ever
    held: peak extra memory is about 2 * block_size * n * 8 bytes (0.8 GB for n = 50,000).
    The selection of a block is split over ``n_threads`` threads (NumPy releases the GIL there);
    the result does not depend on ``block_size`` or ``n_threads``.
    A row is never its own neighbour, even when it has exact duplicates (those may be neighbours).
    Exact ties are broken deterministically by argpartition, then by lower index.
    """
    from concurrent.futures import ThreadPoolExecutor

    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or not 1 <= n_neighbors < n:
        raise InvalidInputError(
            f"cannot find {n_neighbors!r} nearest neighbours among {n} samples (each sample excludes "
            f"itself); use an integer 1 <= n_neighbors <= {n - 1} or more training samples."
        )
    for name, value in (("block_size", block_size), ("n_threads", n_threads)):
        check_positive_int(value, name, error=InvalidInputError)
    k = int(n_neighbors)
    squared_norms = np.einsum("ij,ij->i", X, X)
    neighbors = np.empty((n, k), dtype=np.int64)
    buffer = np.empty((min(block_size, n), n), dtype=np.float64)
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        for start in range(0, n, block_size):
            stop = min(n, start + block_size)
            rows = np.arange(stop - start)
            scores = buffer[: stop - start]
            np.matmul(X[start:stop], X.T, out=scores)
            scores *= -2.0
            scores += squared_norms
            scores[rows, rows + start] = np.inf  # never the row itself
            cuts = np.linspace(0, stop - start, min(n_threads, stop - start) + 1).astype(int)
            parts = pool.map(lambda a, b: _sorted_smallest(scores[a:b], k), cuts[:-1], cuts[1:])
            neighbors[start:stop] = np.concatenate(list(parts))
    return neighbors


def neighbor_mean(X: np.ndarray, neighbor_index: np.ndarray) -> np.ndarray:
    """Row i -> mean of ``X[neighbor_index[i]]`` (all rows at once, from the unshrunk X).

    Uses a sparse (n, n) averaging matrix with k entries per row, never the (n, k, d) gather.
    """
    import scipy.sparse

    n, k = neighbor_index.shape
    averaging = scipy.sparse.csr_matrix(
        (np.full(n * k, 1.0 / k), neighbor_index.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, X.shape[0]),
    )
    return np.asarray(averaging @ X)


def effective_anchor_count(n_anchors: int, n_train: int, method_name: str) -> int:
    """Number of RBF anchors to use: ``n_anchors``, or every training sample when there are fewer.

    The fallback is announced with a warning (never silent); callers record the result in
    ``n_anchors_``.
    """
    import warnings

    check_positive_int(n_anchors, f"{method_name} n_anchors", error=InvalidInputError)
    if n_anchors > n_train:
        warnings.warn(
            f"{method_name}: {n_anchors} RBF anchors requested but only {n_train} training samples; "
            f"using all {n_train} training samples as anchors (n_anchors_ = {n_train}).",
            UserWarning,
            stacklevel=3,
        )
        return int(n_train)
    return int(n_anchors)


def map_row_blocks(function, X: np.ndarray, block_size: int = 8192) -> np.ndarray:
    """``function`` applied to consecutive row blocks of X, results stacked along rows.

    Caps temporary memory when encoding many items (e.g. (block, n_anchors) kernel features
    instead of (n, n_anchors)).
    """
    if X.shape[0] <= block_size:
        return function(X)
    return np.concatenate([function(X[start : start + block_size]) for start in range(0, X.shape[0], block_size)])

