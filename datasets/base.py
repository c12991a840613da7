"""The benchmark data container shared by every method and the runner.

A ``BenchmarkData`` is plain data: features, labels, index arrays for query, database and train,
class names and a card that records where it came from (source, split, seed, checksums), plus the
data fingerprint of the rows a cell trains and evaluates on (``fingerprint()``).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.errors import BenchmarkError


class DatasetError(BenchmarkError, RuntimeError):
    """Data that cannot be loaded or used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class LongTailProtocol:
    """How long-tail training sets are drawn from a dataset's database (eq. 1 of the paper).

    ``max_class_size`` is s_1 (None: the smallest database class, so every class can supply it);
    ``mu_by_imbalance_factor`` pins the paper's Table 2 exponents; other IFs use
    mu = ln(IF) / ln(C). ``balanced_class_size`` overrides s_1 at IF = 1 (ImageNet100 uses 100).
    """

    max_class_size: int | None = None
    mu_by_imbalance_factor: dict[float, float] = field(default_factory=dict)
    balanced_class_size: int | None = None


@dataclass(frozen=True)
class BenchmarkData:
    name: str
    features: np.ndarray  # (n, d) float32, possibly a read-only memmap
    labels: np.ndarray  # (n,) int64 in 0..C-1
    query_index: np.ndarray  # int64 rows of features used as queries
    database_index: np.ndarray  # int64 rows used as the retrieval database
    train_index: np.ndarray | None = None  # subset of the database; None means the whole database
    class_names: tuple[str, ...] = ()
    card: dict[str, Any] = field(default_factory=dict)
    default_bits: tuple[int, ...] = (32, 64, 96)
    long_tail_protocol: LongTailProtocol = field(default_factory=LongTailProtocol)
    image_source: Any = None  # ImageSource aligned with features rows, for end-to-end fine-tuning
    # The transform of training images when fine-tuning (e.g. ImageNet100's random resized crop and
    # flip, as the LTHNet reference trains); None: training images get the source's own transform.
    training_transform: Any = None
    # Relative image path of every row in its source's convention (datasets/lists.py), or None:
    # rows then get a synthetic path ``<dataset>/<row>.png`` when a split is exported.
    row_paths: tuple[str, ...] | None = None
    # Per-instance memo (the fingerprint); never passed to __init__, fresh in dataclasses.replace.
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        n = self.features.shape[0]
        if self.features.ndim != 2:
            raise DatasetError(f"{self.name}: features must be 2-D, got shape {self.features.shape}.")
        if self.labels.shape != (n,):
            raise DatasetError(
                f"{self.name}: {self.labels.shape[0] if self.labels.ndim else 0} labels for {n} feature rows; "
                "they must match one to one."
            )
        for label, index in (("query", self.query_index), ("database", self.database_index),
                             ("train", self.train_index)):
            if index is None:
                continue
            if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= n)):
                raise DatasetError(f"{self.name}: {label} indices must be 1-D rows within 0..{n - 1}.")
        if len(self.query_index) == 0 or len(self.database_index) == 0:
            raise DatasetError(f"{self.name}: query and database must both be non-empty.")
        if self.row_paths is not None and len(self.row_paths) != n:
            raise DatasetError(f"{self.name}: {len(self.row_paths)} row paths for {n} feature rows; "
                               "they must match one to one.")

    # --------------------------------------------------------------- derived views
    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.labels.max()) + 1

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def train(self) -> np.ndarray:
        return self.database_index if self.train_index is None else self.train_index

    def subset(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features as float32 array, labels) for the given rows."""
        return np.asarray(self.features[index], dtype=np.float32), self.labels[index]

    def with_train(self, train_index: np.ndarray, **card_updates) -> "BenchmarkData":
        split = dataclasses.replace(
            self, train_index=np.asarray(train_index, dtype=np.int64), card={**self.card, **card_updates}
        )
        # Same features, labels, query and database: the content hashes of their rows are shared,
        # so the splits of one dataset hash its (large) query and database rows once.
        split._memo["rows"] = self._memo.setdefault("rows", {})
        return split

    def fingerprint(self) -> str:
        """sha256 (hex) of the data a cell trains and evaluates on: the features and labels of its
        training, query and database rows, the three index lists and the split's parameters.

        Computed once per instance (see ``datasets.manifest.data_fingerprint`` for what it covers).
        """
        if "fingerprint" not in self._memo:
            from .manifest import data_fingerprint

            self._memo["fingerprint"] = data_fingerprint(self)
        return self._memo["fingerprint"]

    def train_class_sizes(self) -> np.ndarray:
        return np.bincount(self.labels[self.train], minlength=self.n_classes)


def array_checksum(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' bytes (shapes and dtypes included), for cards and cache keys."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()
