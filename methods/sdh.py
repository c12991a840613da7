"""SDH: supervised discrete hashing (Shen, Shen, Liu & Shen, CVPR 2015).

Reference code: bd622/DiscretHashing (SDH.m, demo_SDH.m, RRC.m).
Model: codes B in {-1,+1}^{n x K}, a linear classifier W (K x C) on the codes and a kernel hash
function F(x) = phi(x) P, learned by

    min  ||Y - B W||^2 + lambda ||W||^2 + nu (||B - phi(X) P||^2 + lambda_P ||P||^2)

(Y one-hot labels). The lambda_P term is the ridge that the reference's RRC.m puts on the P-step;
writing it into the objective makes every step an exact or descent step, so the recorded
objective (``objective_``, also ``training_log_["objective"]``) never rises.

Hyperparameters and their sources:
  * rows L2-normalised before the kernel (pitfall 2 of methods.md: sigma = 0.4 is "for normalized
    data" in demo_SDH.m); done inside the method, at fit and encode.
  * n_anchors = 2000 anchors drawn uniformly (seeded) from the training rows: the LTHNet paper
    (Sec. 5.1: "the number of anchors is all set to 2000" for SDH, FSSH, SCDH); demo_SDH.m uses 1000.
  * phi(x) = exp(-||x - a||^2 / (2 sigma^2)) plus a constant bias column; sigma = 0.4 (demo_SDH.m,
    fixed value, the data-driven sigma is commented out there).
  * B0 = sgn(randn(n, K)) (demo_SDH.m; seeded here from random_state).
  * W by ridge regression, lambda = 1 (gmap.lambda); P by ridge regression, lambda_P = 1e-2
    (Fmap.lambda); nu = 1e-5 (Fmap.nu); the L2 (not hinge) classification loss (gmap.loss = 'L2').
  * Order (SDH.m): W-step and P-step on B0, then n_iterations = 5 outer iterations (maxItr) of
    B-step -> W-step -> P-step.
  * B-step: discrete cyclic coordinate descent, bit by bit, at most 10 sweeps, stopping when a sweep
    changes no bit (SDH.m stops at a relative change < 1e-6, which for +-1 codes means no change).
  * Codes: sgn(phi(x) P) for every item, training and database alike (out of sample), with
    ``>= 0 -> +1``.

Deliberate deviations:
  * SDH.m also stops the outer loop when ||B - phi P|| or the change of P falls below tol = 1e-5
    (relative); with 5 iterations these never trigger on real data, so we always run 5.
  * MATLAB's sign(0) = 0 in the B-step; here a bit with zero gradient keeps its value (shared DCC).
  * Fewer training samples than anchors: every training sample becomes an anchor (warning;
    ``n_anchors_`` records the number used). demo_SDH.m's randsample would fail there.
  * The database is encoded out of sample with sgn(phi(x) P) (methods.md pitfall 4); demo_SDH.m
    also does this by default (AsymDist = 0), its learned training codes are kept only as
    ``train_codes_``.

Fitted attributes: ``anchors_``, ``n_anchors_``, ``projection_`` (P, (m + 1) x K), ``classifier_``
(W, K x C), ``train_codes_`` (final B, int8), ``objective_`` (the objective above after the
initial W/P steps and after each outer iteration: n_iterations + 1 values, non-increasing).
"""
from __future__ import annotations

import numpy as np

from common.checks import check_positive_int

from .registry import register

from .base import HashingMethod, InvalidInputError, one_hot
from .shared_math import (
    choose_anchors,
    discrete_cyclic_coordinate_descent,
    effective_anchor_count,
    l2_normalize_rows,
    map_row_blocks,
    rbf_anchor_features,
    ridge_regression,
    ridge_solver,
)


@register("SDH")
class SDH(HashingMethod):
    family = "shallow"
    uses_labels = True
    test_params = {"n_anchors": 100}

    def __init__(
        self,
        n_bits: int = 64,
        n_anchors: int = 2000,
        sigma: float = 0.4,
        classifier_lambda: float = 1.0,
        projection_lambda: float = 1e-2,
        nu: float = 1e-5,
        n_iterations: int = 5,
        n_dcc_sweeps: int = 10,
        random_state: int | None = 0,
    ):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.n_anchors = n_anchors
        self.sigma = sigma
        self.classifier_lambda = classifier_lambda
        self.projection_lambda = projection_lambda
        self.nu = nu
        self.n_iterations = n_iterations
        self.n_dcc_sweeps = n_dcc_sweeps

    # ------------------------------------------------------------------ features
    def _kernel_features(self, X: np.ndarray, block_size: int = 8192) -> np.ndarray:
        """[phi(x), 1] for L2-normalised rows, filled block by block into one (n, m + 1) array."""
        n, m = X.shape[0], self.anchors_.shape[0]
        phi = np.empty((n, m + 1))
        for start in range(0, n, block_size):
            block = l2_normalize_rows(X[start : start + block_size])
            phi[start : start + block_size, :m] = rbf_anchor_features(block, self.anchors_, self.sigma)
        phi[:, m] = 1.0
        return phi

    def _objective(self, Y, B, W, phi_P, P) -> float:
        return float(
            np.sum((Y - B @ W) ** 2)
            + self.classifier_lambda * np.sum(W**2)
            + self.nu * (np.sum((B - phi_P) ** 2) + self.projection_lambda * np.sum(P**2))
        )

    # ------------------------------------------------------------------ fit / encode
    def _fit(self, X, y):
        check_positive_int(self.n_iterations, "SDH n_iterations", error=InvalidInputError)
        n = X.shape[0]
        self.n_anchors_ = effective_anchor_count(self.n_anchors, n, "SDH")
        # anchors are drawn from the L2-normalised training rows (index choice is seeded)
        self.anchors_ = choose_anchors(l2_normalize_rows(X), self.n_anchors_, self._rng(1))
        phi = self._kernel_features(X)
        Y = one_hot(y)

        B = np.where(self._rng(2).standard_normal((n, self.n_bits)) >= 0, 1.0, -1.0)
        solve_projection = ridge_solver(phi, self.projection_lambda)  # phi fixed: factor once
        W = ridge_regression(B, Y, self.classifier_lambda)
        P = solve_projection(B)
        phi_P = phi @ P
        objective = [self._objective(Y, B, W, phi_P, P)]
        for _ in range(int(self.n_iterations)):
            # B-step: min ||BW||^2 - 2 tr(B^T (Y W^T + nu phi P)) bit by bit
            B = discrete_cyclic_coordinate_descent(B, W, Y @ W.T + self.nu * phi_P, self.n_dcc_sweeps)
            W = ridge_regression(B, Y, self.classifier_lambda)
            P = solve_projection(B)
            phi_P = phi @ P
            objective.append(self._objective(Y, B, W, phi_P, P))

        self.projection_ = P
        self.classifier_ = W
        self.train_codes_ = B.astype(np.int8)  # the learned training codes (not the gallery)
        self.objective_ = np.asarray(objective)
        self.training_log_ = {"objective": [float(v) for v in objective]}

    def _encode(self, X):
        return map_row_blocks(lambda block: self._kernel_features(block) @ self.projection_, X)
