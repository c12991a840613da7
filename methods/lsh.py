"""LSH: random Gaussian projections of mean-centred features (Gionis, Indyk & Motwani, VLDB 1999).

Reference code: willard-yuan/hashing-baseline-for-image-retrieval, Method-LSH.
Hyperparameters: W ~ N(0, 1)^{d x K} (reference); code = [ (x - mean) W >= 0 ].
Deliberate deviation: features are centred on the training mean (the reference projects raw
features; ResNet features are non-negative after ReLU, so uncentred projections waste bits).
LSH learns nothing: report the mean over several seeds (``--seeds``).
"""
from __future__ import annotations

from .registry import register

from .base import HashingMethod


@register("LSH")
class LSH(HashingMethod):
    family = "shallow"
    uses_labels = False

    def __init__(self, n_bits: int = 64, random_state: int | None = 0):
        super().__init__(n_bits=n_bits, random_state=random_state)

    def _fit(self, X, y):
        self.mean_ = X.mean(axis=0)
        self.projection_ = self._rng().standard_normal((X.shape[1], self.n_bits))

    def _encode(self, X):
        return (X - self.mean_) @ self.projection_
