"""KNNH: K-Nearest Neighbors Hashing (Xiangyu He, Peisong Wang & Jian Cheng, CVPR 2019).

Reference code: HolmesShuan/K-Nearest-Neighbors-Hashing (``demo.m``, ``KNNH/trainKNNH.m``,
``KNNH/testKNNH.m``), read for facts only. The method, in the reference's order:

1. centre the features on the *training* mean and project them on the top K = n_bits principal
   directions of the training covariance (``demo.m``): V = (X - mean) W_pca;
2. find every training point's k nearest neighbours in that K-dimensional PCA space, excluding
   the point itself (``trainKNNH.m``: ``knnsearch(V, V, 'K', K+1)`` and drop the first column);
3. "kNN shrinkage": replace every point by the mean of its k neighbours, one pass
   (``KNNHparam.times = 1``);
4. ITQ on the shrunk points: random orthogonal R, then alternate B = sgn(V R) and the orthogonal
   Procrustes update R from the SVD of V^T B (``trainKNNH.m``: ``for iter = 0:1000``).

Out of sample (every item we encode, the training items included): code = [(x - mean) W_pca R >= 0].
Shrinkage is a training-time device for learning R; nothing is shrunk at encoding time.

Hyperparameters and their sources:
- ``n_neighbors = 20``: ``demo.m`` (``K = 20``; 200 only for Places205).
- ``n_shrinkage_passes = 1``: ``demo.m`` (``KNNHparam.times = 1``).
- ``n_iterations = 1001``: ``trainKNNH.m`` (``for iter = 0:1000``). We stop early at ITQ's fixed
  point (codes unchanged by an iteration), where every further iteration returns the same R, so
  the result equals running all of them (``shared_math.itq_rotation(..., stop_at_fixed_point=True)``); the
  quantisation loss ||B - V R||^2 per iteration is in ``quantization_loss_`` and never rises.
- ``shrinkage_update = "in_place"``: the reference loop ``V(i,:) = mean(V(idX(i,:),:))``
  overwrites rows in training order, so later rows average neighbours that were already shrunk;
  we follow it. ``"simultaneous"`` averages the unshrunk points for every row at once
  (``shared_math.neighbor_mean``), which makes the result independent of the training rows' order.
- ``neighbor_block_size = 1024``: query rows per block of the exact kNN search
  (``shared_math.k_nearest_neighbors``); it changes memory use (about 2 * block * n * 8 bytes),
  never the result. The reference calls MATLAB's ``knnsearch`` on all n points at once.

Deliberate deviations from the reference:
- The database is encoded out of sample with the learned hash function (the reference returns the
  learned training codes ``B`` of the *shrunk* training points as its gallery); in this benchmark
  the database is not the training set (methods.md, shared pitfall 4).
- Binarisation is ``>= 0 -> +1`` everywhere (``testKNNH.m`` uses ``> 0`` for queries).
- The point itself is excluded from its neighbour list by index, so with exact duplicate points a
  duplicate can be a neighbour but the point never is (the reference drops the first column of
  ``knnsearch``, which is another duplicate when ties are ordered before the point itself).
- The initial rotation is the Q factor of a seeded Gaussian matrix (the reference takes the left
  singular vectors of ``randn`` under ``rng('shuffle')``): the same distribution, seeded here.
"""
from __future__ import annotations

import numbers

import numpy as np

from common.checks import check_nonnegative_int, check_positive_int

from .registry import register

from .base import HashingMethod, InvalidInputError
from .shared_math import itq_rotation, k_nearest_neighbors, neighbor_mean, pca_bit_limit, principal_directions

SHRINKAGE_UPDATES = ("in_place", "simultaneous")


def knn_shrinkage(V: np.ndarray, neighbor_index: np.ndarray, update: str = "in_place", n_passes: int = 1) -> np.ndarray:
    """Replace each row of V by the mean of its neighbours' rows, ``n_passes`` times (a copy).

    ``update="in_place"`` visits rows 0..n-1 and overwrites each at once, as the reference MATLAB
    loop does (rows later in the order see already-shrunk neighbours); ``"simultaneous"`` averages
    the rows as they were before the pass.
    """
    if update not in SHRINKAGE_UPDATES:
        raise InvalidInputError(f"shrinkage_update must be one of {SHRINKAGE_UPDATES}, got {update!r}.")
    V = np.array(V, dtype=np.float64, copy=True)
    k = neighbor_index.shape[1]
    for _ in range(n_passes):
        if update == "simultaneous":
            V = neighbor_mean(V, neighbor_index)
            continue
        for i, neighbors in enumerate(neighbor_index):
            V[i] = V[neighbors].sum(axis=0) / k
    return V


@register("KNNH")
class KNNH(HashingMethod):
    family = "shallow"
    uses_labels = False

    def __init__(
        self,
        n_bits: int = 64,
        n_neighbors: int = 20,
        n_shrinkage_passes: int = 1,
        n_iterations: int = 1001,
        shrinkage_update: str = "in_place",
        neighbor_block_size: int = 1024,
        random_state: int | None = 0,
    ):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.n_neighbors = n_neighbors
        self.n_shrinkage_passes = n_shrinkage_passes
        self.n_iterations = n_iterations
        self.shrinkage_update = shrinkage_update
        self.neighbor_block_size = neighbor_block_size

    def _check_params(self, n_train: int) -> None:
        check_nonnegative_int(self.n_shrinkage_passes, "KNNH n_shrinkage_passes", error=InvalidInputError,
                              hint="reference: 1")
        check_positive_int(self.n_iterations, "KNNH n_iterations", error=InvalidInputError, hint="reference: 1001")
        if self.shrinkage_update not in SHRINKAGE_UPDATES:
            raise InvalidInputError(
                f"KNNH shrinkage_update must be one of {SHRINKAGE_UPDATES}, got {self.shrinkage_update!r}."
            )
        n_neighbors = self.n_neighbors
        if not isinstance(n_neighbors, numbers.Integral) or isinstance(n_neighbors, bool) or not 1 <= n_neighbors < n_train:
            raise InvalidInputError(
                f"KNNH needs an integer 1 <= n_neighbors < n_train, got n_neighbors={self.n_neighbors!r} with "
                f"{n_train} training samples; lower n_neighbors (reference: 20) or train on more samples."
            )

    def _fit(self, X, y):
        self._check_params(X.shape[0])
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        self.pca_ = principal_directions(Xc, self.n_bits)
        V = Xc @ self.pca_
        del Xc
        neighbors = k_nearest_neighbors(V, int(self.n_neighbors), block_size=self.neighbor_block_size)
        shrunk = knn_shrinkage(V, neighbors, self.shrinkage_update, int(self.n_shrinkage_passes))
        self.rotation_, self.quantization_loss_ = itq_rotation(shrunk, int(self.n_iterations), self._rng(),
                                                                    stop_at_fixed_point=True)
        self.n_iterations_ = len(self.quantization_loss_)
        self.training_log_ = {"quantization_loss": self.quantization_loss_.tolist()}

    def _encode(self, X):
        return (X - self.mean_) @ self.pca_ @ self.rotation_

    @classmethod
    def max_bits_for(cls, n_features, n_train):
        return pca_bit_limit(n_features, n_train)
