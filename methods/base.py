"""The contract every hashing method follows (scikit-learn style estimator).

A method stores its parameters in ``__init__``, learns in ``fit(X, y)`` and returns
{-1, +1} int8 codes of shape (n, n_bits) from ``encode(X)``.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from common.checks import check_positive_int
from common.errors import InvalidValueError


class InvalidInputError(InvalidValueError):
    """Input data that a method cannot use; the message says what is wrong and what to do."""


def check_features(X, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Validate a feature matrix: 2-D, numeric, finite; returns a float64 C-contiguous copy view."""
    if not hasattr(X, "shape") and not isinstance(X, (list, tuple)):
        raise InvalidInputError(
            f"{name} must be a 2-D feature matrix (n_samples, n_features), got {type(X).__name__}."
        )
    X = np.asarray(X)
    if X.ndim != 2:
        raise InvalidInputError(
            f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}; "
            "reshape single samples with X.reshape(1, -1)."
        )
    if X.shape[0] == 0:
        raise InvalidInputError(f"{name} has no rows; pass at least one sample.")
    if not np.issubdtype(X.dtype, np.number):
        raise InvalidInputError(f"{name} must be numeric, got dtype {X.dtype}.")
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise InvalidInputError(
            f"{name} contains NaN or infinite values in {bad} row(s); clean or impute the features "
            "(e.g. recompute the feature cache) before hashing."
        )
    if n_features is not None and X.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {X.shape[1]} features but the method was fitted on {n_features}; "
            "encode data from the same feature extractor used for fit."
        )
    return X


def check_labels(y, n_samples: int, *, name: str = "y") -> np.ndarray:
    """Validate integer class labels in 0..C-1, one per sample; returns int64."""
    if y is None:
        raise InvalidInputError(f"this method is supervised: pass class labels {name} to fit(X, y).")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise InvalidInputError(
            f"{name} must be a 1-D array of {n_samples} class labels, got shape {y.shape}."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise InvalidInputError(f"{name} must hold integer class indices, got dtype {y.dtype}.")
    if y.min() < 0:
        raise InvalidInputError(
            f"{name} holds negative labels (min {y.min()}); labels must be class indices 0..C-1."
        )
    return y.astype(np.int64)


def binarize(values: np.ndarray) -> np.ndarray:
    """Map real values to {-1, +1} int8 codes with ``>= 0 -> +1`` (sign(0) would break Hamming identities)."""
    return np.where(np.asarray(values) >= 0, 1, -1).astype(np.int8)


def one_hot(y: np.ndarray, n_classes: int | None = None, dtype=np.float64) -> np.ndarray:
    """One-hot label matrix (n, C)."""
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
    Y = np.zeros((y.shape[0], n_classes), dtype=dtype)
    Y[np.arange(y.shape[0]), y] = 1
    return Y


class HashingMethod(BaseEstimator):
    """Base class of every registered hashing method.

    Subclasses implement ``_fit(X, y)`` and ``_encode(X) -> real-valued (n, n_bits) array``
    (binarised here with ``>= 0 -> +1``), or override ``encode`` when they produce codes directly.
    ``__init__`` must only store its arguments (scikit-learn rule), so ``clone`` and
    ``get_params``/``set_params`` work; ``validate_params()`` checks their values without data.

    Class attributes:
        name: the registry name (set by ``@register``).
        family: "shallow" or "deep".
        uses_labels: whether ``fit`` needs class labels.
        table_variants: parameter sets that are separate rows of the paper's tables
            (e.g. LTHNet k=0 and k=3); ``--methods all`` expands the method into these.
        test_params: parameters that make a quick run for the shared contract tests
            (e.g. few epochs or anchors); never used by the benchmark itself.

    Fitted methods may expose ``training_log_`` (dict of per-epoch/iteration lists, e.g.
    ``{"loss": [...]}``); the runner stores it in the cell's record.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "shallow"
    uses_labels: ClassVar[bool] = False
    table_variants: ClassVar[tuple[dict, ...]] = ()
    test_params: ClassVar[dict] = {}

    def __init__(self, n_bits: int = 64, random_state: int | None = 0):
        self.n_bits = n_bits
        self.random_state = random_state

    # ------------------------------------------------------------------ public API
    def validate_params(self) -> None:
        """Check the parameter values without data (InvalidInputError naming the parameter); the
        runner calls it when it reads a method spec, before any training. The base checks
        ``n_bits``; a method extends it (``super().validate_params()`` first) with its own."""
        self._check_n_bits()

    def fit(self, X, y=None):
        self._check_n_bits()
        X = check_features(X)
        if self.uses_labels:
            y = check_labels(y, X.shape[0])
        elif y is not None:
            y = np.asarray(y)
        self.n_features_in_ = X.shape[1]
        self._fit(X, y)
        self.is_fitted_ = True
        return self

    def encode(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_features(X, n_features=self.n_features_in_)
        codes = binarize(self._encode(X))
        if codes.shape != (X.shape[0], self.n_bits):
            raise RuntimeError(
                f"{type(self).__name__} produced codes of shape {codes.shape}, "
                f"expected {(X.shape[0], self.n_bits)}."
            )
        return codes

    def fit_encode(self, X, y=None) -> np.ndarray:
        return self.fit(X, y).encode(X)

    # ------------------------------------------------------------------ hooks
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _rng(self, offset: int = 0) -> np.random.Generator:
        """A fresh generator derived from ``random_state`` (never the global RNG)."""
        seed = self.random_state
        if seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(seed), int(offset)])

    def _check_n_bits(self) -> None:
        check_positive_int(self.n_bits, "n_bits", error=InvalidInputError)

    def _check_fitted(self) -> None:
        if not getattr(self, "is_fitted_", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first.")

    @classmethod
    def max_bits_for(cls, n_features: int, n_train: int) -> int | None:
        """Largest code length the method can produce for this data (None: unlimited)."""
        return None
