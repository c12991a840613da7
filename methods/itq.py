"""ITQ: iterative quantisation (Gong, Lazebnik, Gordo & Perronnin, TPAMI 2013; CVPR 2011).

Reference code: willard-yuan/hashing-baseline-for-image-retrieval, Method-ITQ (Gong's code).
Hyperparameters (reference): PCA to K = n_bits dimensions of mean-centred training features;
random orthogonal initial rotation; n_iterations = 50 alternations of B = sgn(VR) and the
orthogonal Procrustes update R = U W^T from the SVD of V^T B.
The quantisation loss ||B - VR||^2 is recorded in ``quantization_loss_`` and never rises (a public
PyTorch port transposes the SVD factors and breaks this; tests/methods/test_first_plugins.py checks it).
"""
from __future__ import annotations

from .registry import register

from .base import HashingMethod
from .shared_math import itq_rotation, pca_bit_limit, principal_directions


@register("ITQ")
class ITQ(HashingMethod):
    family = "shallow"
    uses_labels = False

    def __init__(self, n_bits: int = 64, n_iterations: int = 50, random_state: int | None = 0):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.n_iterations = n_iterations

    def _fit(self, X, y):
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        self.pca_ = principal_directions(Xc, self.n_bits)
        self.rotation_, self.quantization_loss_ = itq_rotation(Xc @ self.pca_, self.n_iterations, self._rng())

    def _encode(self, X):
        return (X - self.mean_) @ self.pca_ @ self.rotation_

    @classmethod
    def max_bits_for(cls, n_features, n_train):
        return pca_bit_limit(n_features, n_train)
