"""Seeded class-clustered synthetic features, for tests and speed benchmarks.

Each class has a Gaussian centre; items are centre + isotropic noise, passed through ReLU to look
like pooled CNN features (non-negative). Sizes up to CIFAR-100 (50,000 + 10,000 x 512) and
ImageNet100 (128,503 + 5,000 x 512).
"""
from __future__ import annotations

import numpy as np

from .base import BenchmarkData, LongTailProtocol, array_checksum

SYNTHETIC_PRESETS = {
    # name: (n_classes, query per class, database per class, dimension)
    "synthetic": (20, 20, 100, 128),
    "synthetic-cifar100": (100, 100, 500, 512),
    "synthetic-imagenet100": (100, 50, 1285, 512),
}


def make_class_clusters(
    n_classes: int, n_per_class: int, dim: int, seed: int, noise: float = 1.0, separation: float = 1.0
):
    """(features float32 (C*n, d), labels) of ReLU'd Gaussian clusters, class-major order."""
    rng = np.random.default_rng([int(seed), 7])
    centres = separation * rng.standard_normal((n_classes, dim)).astype(np.float32)
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    features = centres[labels] + noise * rng.standard_normal((labels.size, dim)).astype(np.float32)
    np.maximum(features, 0, out=features)
    return features, labels


def load_synthetic_benchmark(
    name: str = "synthetic", seed: int = 0, n_classes: int | None = None, query_per_class: int | None = None,
    database_per_class: int | None = None, dim: int | None = None, noise: float = 1.0,
) -> BenchmarkData:
    preset = SYNTHETIC_PRESETS[name]
    C = n_classes or preset[0]
    n_q = query_per_class or preset[1]
    n_db = database_per_class or preset[2]
    d = dim or preset[3]
    features, labels = make_class_clusters(C, n_q + n_db, d, seed, noise=noise)
    within = np.tile(np.arange(n_q + n_db), C)
    query = np.flatnonzero(within < n_q).astype(np.int64)
    database = np.flatnonzero(within >= n_q).astype(np.int64)
    return BenchmarkData(
        name=name, features=features, labels=labels, query_index=query, database_index=database,
        class_names=tuple(f"class{c}" for c in range(C)),
        card={"source": "synthetic class clusters", "seed": seed, "n_classes": C, "dim": d,
              "noise": noise, "checksum": array_checksum(features, labels)},
        default_bits=(32, 64, 96),
        long_tail_protocol=LongTailProtocol(),
    )
