"""SCDH: scalable supervised discrete hashing with an orthogonal, balanced latent factor.

Paper: "Scalable Supervised Discrete Hashing for Large-Scale Search" (Shi, Xu, Nie, Wu, Zhang & Li,
WWW 2018) -- the LTHNet authors' group. Reference code: keneeth/scdh (run_scdh.m, initialize.m,
solve.m; the same files are mirrored in the SSHBIR toolkit, SCDH/Loss.m gives the objective).

Model (n training items, b = ``n_bits``, X = kernel features with a bias column):

    min_{B, Z, P}  ||b S - Z B^T||^2 + alpha ||B - Z||^2 + lambda ||X P - B||^2 + beta ||P||^2
    s.t.  B in {-1, +1}^{n x b},  1^T Z = 0,  Z^T Z = n I,

with S = 2 Y_hat Y_hat^T - 1 1^T from row-L2-normalised labels Y_hat (s_ij = +1 same class, -1
otherwise for single labels). S is never formed: S M = 2 Y_hat (Y_hat^T M) - 1 (1^T M).
Each epoch (solve.m order) solves every block exactly, so the objective never rises:
  * P-step: P = (lambda X^T X + beta I)^-1 lambda X^T B (ridge with lam = beta/lambda; the Gram
    matrix is factored once, it does not change);
  * Z-step: maximise tr(Z^T C), C = b S B + alpha B, under the constraints: with the thin SVD
    J C = U Sigma V^T (J the centring matrix), Z = sqrt(n) U V^T; when J C is rank deficient the
    missing columns of U are filled with random centred vectors orthonormalised against U and 1
    (the reference's Gram-Schmidt fill);
  * B-step: B = sgn(b S Z + alpha Z + lambda X P) (||Z B^T||^2 = n^2 b is constant).
Hash function: h(x) = sgn(phi(x) P).

Hyperparameters and their sources:
  * alpha = 0.1, beta = 1, lambda = 10 (run_scdh.m); n_epochs = 10 (run_scdh.m ``epchos``);
  * the scale b of S is the code length (run_scdh.m ``params.b = bits``);
  * features L2-normalised per row (run_scdh.m ``normalize``); n_anchors = 2000 anchors drawn
    without replacement from the training rows (run_scdh.m: min(2000, Ntrain); also the LTHNet
    paper's setting for kernel methods); sigma = 0.4 "for normalized data" (run_scdh.m); kernel
    exp(-||x - a|| / (2 sigma^2)) with the *unsquared* distance (run_scdh.m takes sqrt(sqdist));
    a constant bias column is appended (run_scdh.m);
  * initial B = sgn(randn(n, b)) (initialize.m; its initial P and Z are overwritten before use).

Deliberate deviations:
  * The Z-step uses a thin SVD of J C instead of the eigen-decomposition of C^T J C (same solution,
    better conditioned); the rank is decided relative to the largest singular value, not with the
    reference's absolute 1e-5 eigenvalue threshold.
  * Fewer training items than anchors: the reference silently uses min(2000, n); we do the same but
    say so with a warning and record the number used in ``n_anchors_`` (the fallback shared with
    SDH and FSSH, ``shared_math.effective_anchor_count``).
  * The database is encoded out of sample with h(x) (methods.md pitfall 4); run_scdh.m uses the
    learned training codes B as the gallery, which only works when the database is the training
    set. The learned codes are kept as ``train_codes_``.
  * Encoding is done block by block so 60,000 items never hold a full kernel matrix.
The objective is recorded per epoch in ``objective_`` = ``training_log_["objective"]`` (and after every block
update in ``training_log_["objective_steps"]``); both are non-increasing.
"""
from __future__ import annotations

import contextlib

import numpy as np
from threadpoolctl import threadpool_limits

from common.checks import check_positive_int

from .registry import register

from .base import HashingMethod, InvalidInputError, one_hot
from .shared_math import (
    choose_anchors,
    effective_anchor_count,
    l2_normalize_rows,
    rbf_anchor_features,
    ridge_solver,
)

_ENCODE_BLOCK = 8192
_SMALL_PROBLEM_SIZE = 4_000_000  # entries of the kernel matrix below which one BLAS thread is faster


def signed_label_similarity_product(Y_hat: np.ndarray, M: np.ndarray) -> np.ndarray:
    """S M for S = 2 Y_hat Y_hat^T - 1 1^T, without forming the n x n matrix S."""
    return 2.0 * (Y_hat @ (Y_hat.T @ M)) - M.sum(axis=0, keepdims=True)


def centred_orthogonal_factor(C: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Z = argmax tr(Z^T C) s.t. 1^T Z = 0, Z^T Z = n I  (n x b), by the thin SVD of J C.

    Rank-deficient J C: the missing left singular vectors are any orthonormal vectors orthogonal
    to 1 and to the kept ones; they are drawn at random (seeded) and orthonormalised.
    """
    n, b = C.shape
    JC = C - C.mean(axis=0, keepdims=True)
    U, singular_values, Vt = np.linalg.svd(JC, full_matrices=False)
    tolerance = max(singular_values.max(initial=0.0), 1e-300) * max(n, b) * np.finfo(float).eps * 10
    rank = int(np.sum(singular_values > tolerance))
    U = U[:, :rank]
    if rank < b:
        fill = rng.standard_normal((n, b - rank))
        for _ in range(2):  # project twice: one pass of classical Gram-Schmidt loses orthogonality
            fill -= fill.mean(axis=0, keepdims=True)
            fill -= U @ (U.T @ fill)
        fill, _ = np.linalg.qr(fill)
        U = np.hstack([U, fill])
    if Vt.shape[0] < b:  # n < b cannot happen after the n_bits check; kept for safety
        raise InvalidInputError(f"SCDH needs more than n_bits={b} training items, got {n}.")
    return np.sqrt(n) * (U @ Vt)


@register("SCDH")
class SCDH(HashingMethod):
    family = "shallow"
    uses_labels = True
    test_params = {"n_anchors": 200, "n_epochs": 5}

    def __init__(
        self,
        n_bits: int = 64,
        alpha: float = 0.1,
        beta: float = 1.0,
        lambda_: float = 10.0,
        n_epochs: int = 10,
        n_anchors: int = 2000,
        sigma: float = 0.4,
        random_state: int | None = 0,
    ):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.alpha = alpha
        self.beta = beta
        self.lambda_ = lambda_
        self.n_epochs = n_epochs
        self.n_anchors = n_anchors
        self.sigma = sigma

    # ------------------------------------------------------------------ helpers
    def _kernel_features(self, X: np.ndarray) -> np.ndarray:
        phi = rbf_anchor_features(l2_normalize_rows(X), self.anchors_, self.sigma, squared=False)
        return np.hstack([phi, np.ones((phi.shape[0], 1))])

    def _check_params(self, n_train: int) -> None:
        for name in ("alpha", "beta", "lambda_", "sigma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating, np.integer)) and value > 0):
                raise InvalidInputError(f"SCDH {name} must be a positive number, got {value!r}.")
        for name in ("n_epochs", "n_anchors"):
            check_positive_int(getattr(self, name), f"SCDH {name}", error=InvalidInputError)
        if n_train <= self.n_bits:
            raise InvalidInputError(
                f"SCDH needs more training items than bits (Z^T Z = nI with 1^T Z = 0 requires "
                f"n_bits <= n - 1): got {n_train} items for n_bits={self.n_bits}; use n_bits <= {n_train - 1}."
            )

    def _objective(self, Y_hat, B, Z, P, XP, squared_norm_S) -> float:
        b = float(self.n_bits)
        cross = 2.0 * np.sum((Y_hat.T @ Z) * (Y_hat.T @ B)) - float(Z.sum(axis=0) @ B.sum(axis=0))
        fit_similarity = b * b * squared_norm_S - 2.0 * b * cross + np.sum((Z.T @ Z) * (B.T @ B))
        return float(
            fit_similarity
            + self.alpha * np.sum((B - Z) ** 2)
            + self.lambda_ * np.sum((XP - B) ** 2)
            + self.beta * np.sum(P**2)
        )

    # ------------------------------------------------------------------ fit / encode
    def _fit(self, X, y):
        n = X.shape[0]
        self._check_params(n)
        # the reference's min(2000, n), announced with a warning (shared with SDH and FSSH)
        n_anchors = effective_anchor_count(self.n_anchors, n, "SCDH")
        self.n_anchors_ = n_anchors
        Xn = l2_normalize_rows(X)
        self.anchors_ = choose_anchors(Xn, n_anchors, self._rng(1))
        phi = rbf_anchor_features(Xn, self.anchors_, self.sigma, squared=False)
        del Xn
        phi = np.hstack([phi, np.ones((n, 1))])

        Y_hat = one_hot(y)  # one label per item: rows already have unit L2 norm
        # ||S||^2 = 4 ||Y^T Y||^2 - 4 ||Y^T 1||^2 + n^2  (= n^2 for one-hot rows: every s_ij = +-1)
        squared_norm_S = float(4.0 * np.sum((Y_hat.T @ Y_hat) ** 2) - 4.0 * np.sum(Y_hat.sum(axis=0) ** 2) + n * n)
        b = float(self.n_bits)
        rng = self._rng(2)
        B = np.where(rng.standard_normal((n, self.n_bits)) >= 0, 1.0, -1.0)
        solve_P = ridge_solver(phi, self.beta / self.lambda_)
        objective, steps = [], []
        # Small problems run on one BLAS thread (thread start-up dominates them, badly so on a busy
        # machine); at scale only the products with the n x (m+1) kernel matrix use all threads.
        small_problem = phi.size < _SMALL_PROBLEM_SIZE
        with threadpool_limits(limits=1, user_api="blas") if small_problem else contextlib.nullcontext():
            for epoch in range(self.n_epochs):
                P = solve_P(B)
                XP = phi @ P
                with threadpool_limits(limits=1, user_api="blas"):
                    if epoch > 0:
                        steps.append(self._objective(Y_hat, B, Z, P, XP, squared_norm_S))
                    C = b * signed_label_similarity_product(Y_hat, B) + self.alpha * B
                    Z = centred_orthogonal_factor(C, rng)
                    steps.append(self._objective(Y_hat, B, Z, P, XP, squared_norm_S))
                    field = b * signed_label_similarity_product(Y_hat, Z) + self.alpha * Z + self.lambda_ * XP
                    B = np.where(field >= 0, 1.0, -1.0)
                    value = self._objective(Y_hat, B, Z, P, XP, squared_norm_S)
                steps.append(value)
                objective.append(value)
        self.projection_ = P
        self.train_codes_ = B.astype(np.int8)  # the learned training codes (not the gallery)
        self.objective_ = np.asarray(objective)
        self.training_log_ = {"objective": objective, "objective_steps": steps}

    def _encode(self, X):
        out = np.empty((X.shape[0], self.n_bits))
        for start in range(0, X.shape[0], _ENCODE_BLOCK):
            out[start : start + _ENCODE_BLOCK] = self._kernel_features(X[start : start + _ENCODE_BLOCK]) @ self.projection_
        return out

    @classmethod
    def max_bits_for(cls, n_features, n_train):
        return n_train - 1
