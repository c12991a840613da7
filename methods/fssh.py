"""FSSH: fast scalable supervised hashing (Luo, Nie, He, Wu, Chen & Xu, SIGIR 2018), variant FSSH_ts.

Reference code: SDU-MIMA/FSSH (FSSH-TS/train_FSSH.m, FSSH-TS/FSSH.m, normEqualVariance.m).
Model, with X the z-scored kernel features of the training rows (n x m), Y one-hot labels (n x c),
S = Y Y^T the pairwise label similarity and r its scale:

    min_{B, G, W}  ||r S - (X W)(Y G)^T||^2 + mu ||B - Y G||^2 + theta ||B - X W||^2,  B in {-1,+1}

S (n x n) is never formed: only S Y = Y (Y^T Y) (n x c) enters, through A = X^T (r S Y) (m x c).
Each iteration (FSSH.m) solves each block exactly:
    B = sgn(mu Y G + theta X W)
    G = (Y^T Y)^-1 (mu Y^T B + A^T W) (mu I + W^T X^T X W)^-1
    W = (X^T X)^+ (theta X^T B + A G) (theta I + G^T Y^T Y G)^-1
so the objective (recorded in ``objective_`` / ``training_log_["objective"]`` after every
iteration, evaluated with S only through Y) never rises.
Out of sample: P = (X^T X + I)^-1 X^T B (ridge, lambda = 1, FSSH.m); code = sgn(x P).

Hyperparameters and their sources:
  * rows L2-normalised before the kernel (methods.md pitfall 2: sigma = 0.4 is set for normalised
    data); done inside the method at fit and encode.
  * n_anchors = 2000 (LTHNet paper Sec. 5.1; train_FSSH.m uses 1000), drawn uniformly (seeded)
    from the training rows; phi(x) = exp(-||x - a||^2 / (2 sigma^2)), sigma = 0.4, no bias column
    (train_FSSH.m); then every kernel feature is z-scored (normEqualVariance.m; std with n - 1,
    constant features only centred).
  * mu = 1e4, theta = 0.01, n_iterations = 5 (FSSH.m); G and W start as randn, the first B-step
    uses them (FSSH.m; the initial random B there is overwritten unused).
  * similarity: the reference ships pre_computed.mat with SY = Y (Y^T Y) (entries n_c for the item's
    own class, 0 elsewhere), i.e. S = Y Y^T in {0, 1} and r = 1. We recompute it for our labels
    with the same definition; ``similarity_scale`` (r) defaults to 1 accordingly.
  * out-of-sample ridge lambda = 1 (FSSH.m).

Deliberate deviations:
  * z-score statistics come from the training rows only (train_FSSH.m computes them over training
    and test rows together, which is transductive); database and queries reuse them.
  * inv(X^T X) is replaced by the pseudo-inverse (scipy.linalg.pinvh): with centred features
    X^T X is singular when n <= m (e.g. the fewer-samples-than-anchors fallback) and the inverse
    would be garbage; where X^T X is invertible the two agree. The G and W updates remain exact
    minimisers (the right-hand side lies in the range of X^T).
  * class labels are compacted to the classes present in training (Y^T Y must be invertible).
  * Fewer training samples than anchors: every training sample becomes an anchor (warning;
    ``n_anchors_`` records the number used).
  * normEqualVariance.m adds back the column means after scaling; those means are ~0 after the
    centring it just did, so the result is the plain z-score used here.
  * The database is encoded out of sample with sgn(x P) (methods.md pitfall 4); FSSH.m also
    encodes its test set this way, and the learned training codes are kept only as ``train_codes_``.

Fitted attributes: ``anchors_``, ``n_anchors_``, ``feature_mean_``/``feature_scale_`` (z-score),
``feature_projection_`` (W, m x K), ``codes_label_projection_`` (G, c x K), ``projection_``
(out-of-sample P, m x K), ``train_codes_`` (final B, int8), ``objective_`` (after each iteration).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from common.checks import check_positive_int

from .registry import register

from .base import HashingMethod, InvalidInputError, one_hot
from .shared_math import (
    choose_anchors,
    effective_anchor_count,
    l2_normalize_rows,
    map_row_blocks,
    rbf_anchor_features,
)


@register("FSSH")
class FSSH(HashingMethod):
    family = "shallow"
    uses_labels = True
    test_params = {"n_anchors": 100}

    def __init__(
        self,
        n_bits: int = 64,
        n_anchors: int = 2000,
        sigma: float = 0.4,
        mu: float = 1e4,
        theta: float = 0.01,
        similarity_scale: float = 1.0,
        n_iterations: int = 5,
        out_of_sample_lambda: float = 1.0,
        random_state: int | None = 0,
    ):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.n_anchors = n_anchors
        self.sigma = sigma
        self.mu = mu
        self.theta = theta
        self.similarity_scale = similarity_scale
        self.n_iterations = n_iterations
        self.out_of_sample_lambda = out_of_sample_lambda

    # ------------------------------------------------------------------ features
    def _raw_kernel_features(self, X: np.ndarray) -> np.ndarray:
        return rbf_anchor_features(l2_normalize_rows(X), self.anchors_, self.sigma)

    def _kernel_features(self, X: np.ndarray) -> np.ndarray:
        phi = self._raw_kernel_features(X)
        phi -= self.feature_mean_
        phi /= self.feature_scale_
        return phi

    # ------------------------------------------------------------------ objective (S never formed)
    def _objective(self, X, Y, class_counts, B, G, W) -> float:
        r = self.similarity_scale
        U = X @ W  # (n, K) feature side
        V = Y @ G  # (n, K) label side
        # ||rS||^2 with S = Y Y^T:  r^2 sum_c n_c^2
        similarity_norm = r * r * float(np.sum(class_counts**2))
        # tr(U^T S V) = tr((Y^T U)^T (Y^T V)),  Y^T V = diag(n_c) G
        cross = float(np.sum((Y.T @ U) * (class_counts[:, None] * G)))
        low_rank_norm = float(np.sum((U.T @ U) * (V.T @ V)))
        return (
            similarity_norm - 2.0 * r * cross + low_rank_norm
            + self.mu * float(np.sum((B - V) ** 2)) + self.theta * float(np.sum((B - U) ** 2))
        )

    # ------------------------------------------------------------------ fit / encode
    def _fit(self, X, y):
        check_positive_int(self.n_iterations, "FSSH n_iterations", error=InvalidInputError)
        n, K = X.shape[0], self.n_bits
        self.n_anchors_ = effective_anchor_count(self.n_anchors, n, "FSSH")
        self.anchors_ = choose_anchors(l2_normalize_rows(X), self.n_anchors_, self._rng(1))

        phi = self._raw_kernel_features(X)
        self.feature_mean_ = phi.mean(axis=0)
        phi -= self.feature_mean_
        # std with n - 1 (MATLAB's std), without a second (n, m) temporary
        scale = np.sqrt(np.einsum("ij,ij->j", phi, phi) / max(n - 1, 1))
        scale[~(scale > 0)] = 1.0  # constant features: centred only (normEqualVariance.m)
        self.feature_scale_ = scale
        phi /= scale
        X = phi  # from here on X is the z-scored kernel feature matrix (n, m)

        self.classes_, y_compact = np.unique(y, return_inverse=True)
        Y = one_hot(y_compact, len(self.classes_))
        class_counts = Y.sum(axis=0)  # Y^T Y is diag(class_counts)
        m, c = X.shape[1], Y.shape[1]

        gram = X.T @ X  # (m, m)
        gram_pinv = scipy.linalg.pinvh(gram)
        # A = X^T (r S Y) with S Y = Y (Y^T Y)
        A = self.similarity_scale * ((X.T @ Y) * class_counts[None, :])

        rng = self._rng(2)
        G = rng.standard_normal((c, K))
        W = rng.standard_normal((m, K))
        identity = np.eye(K)
        objective = []
        for _ in range(int(self.n_iterations)):
            XW = X @ W
            B = np.where(self.mu * (Y @ G) + self.theta * XW >= 0, 1.0, -1.0)
            right = self.mu * identity + W.T @ gram @ W
            G = scipy.linalg.solve(right, (self.mu * (Y.T @ B) + A.T @ W).T, assume_a="pos").T
            G /= class_counts[:, None]
            right = self.theta * identity + (G.T * class_counts[None, :]) @ G
            rhs = gram_pinv @ (self.theta * (X.T @ B) + A @ G)
            W = scipy.linalg.solve(right, rhs.T, assume_a="pos").T
            objective.append(self._objective(X, Y, class_counts, B, G, W))

        gram[np.diag_indices_from(gram)] += self.out_of_sample_lambda
        self.projection_ = scipy.linalg.solve(gram, X.T @ B, assume_a="pos")
        self.codes_label_projection_ = G
        self.feature_projection_ = W
        self.train_codes_ = B.astype(np.int8)  # the learned training codes (not the gallery)
        self.objective_ = np.asarray(objective)
        self.training_log_ = {"objective": [float(v) for v in objective]}

    def _encode(self, X):
        return map_row_blocks(lambda block: self._kernel_features(block) @ self.projection_, X)
