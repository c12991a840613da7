"""PCAH: sign of the top-K principal components (Gong & Lazebnik, CVPR 2011, the PCA baseline).

Reference code: willard-yuan/hashing-baseline-for-image-retrieval, Method-PCAH.
Hyperparameters: K = n_bits principal directions of the training covariance; code = [(x - mean) W >= 0].
K cannot exceed min(d, n_train - 1) (the rank of centred data): such a request is an error that names the limit.
"""
from __future__ import annotations

from .registry import register

from .base import HashingMethod
from .shared_math import pca_bit_limit, principal_directions


@register("PCAH")
class PCAH(HashingMethod):
    family = "shallow"
    uses_labels = False

    def __init__(self, n_bits: int = 64, random_state: int | None = 0):
        super().__init__(n_bits=n_bits, random_state=random_state)

    def _fit(self, X, y):
        self.mean_ = X.mean(axis=0)
        self.projection_ = principal_directions(X - self.mean_, self.n_bits)

    def _encode(self, X):
        return (X - self.mean_) @ self.projection_

    @classmethod
    def max_bits_for(cls, n_features, n_train):
        return pca_bit_limit(n_features, n_train)
