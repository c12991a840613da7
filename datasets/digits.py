"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes, 64 pixel features): offline demo data.

Query/database: a stratified split, 20% of each class as queries (seeded), the rest the database.
Features: pixel intensities scaled to [0, 1]. 64 features cap PCA-based methods at 64 bits, so the
default code lengths are 16/32/48 bits instead of the paper's 32/64/96 (tables say so).
"""
from __future__ import annotations

import numpy as np

from common.checks import check_nonnegative_int

from .base import BenchmarkData, DatasetError, array_checksum

DIGITS_DEFAULT_BITS = (16, 32, 48)


def stratified_query_split(labels: np.ndarray, query_fraction: float, seed: int):
    """(query rows, database rows): ``query_fraction`` of every class as queries (at least one, but
    never a class's last row, so every class keeps database rows), seeded."""
    if isinstance(query_fraction, bool) or not isinstance(query_fraction, (int, float)) or not 0 < query_fraction < 1:
        raise DatasetError(f"query_fraction must be a number in (0, 1), got {query_fraction!r}.")
    check_nonnegative_int(seed, "seed", error=DatasetError)
    rng = np.random.default_rng([int(seed), 1797])
    query = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_query = min(max(1, int(round(query_fraction * members.size))), members.size - 1)
        query.append(rng.choice(members, size=n_query, replace=False))
    query = np.sort(np.concatenate(query))
    database = np.setdiff1d(np.arange(labels.size), query)
    return query.astype(np.int64), database.astype(np.int64)


def load_digits_benchmark(query_fraction: float = 0.2, seed: int = 0) -> BenchmarkData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    features = (bunch.data / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    query, database = stratified_query_split(labels, query_fraction, seed)
    return BenchmarkData(
        name="digits",
        features=features,
        labels=labels,
        query_index=query,
        database_index=database,
        class_names=tuple(str(c) for c in range(10)),
        card={
            "source": "sklearn.datasets.load_digits", "features": "8x8 pixels / 16 (64-d)",
            "query": f"stratified {query_fraction:.0%} per class, seed {seed}",
            "checksum": array_checksum(features, labels),
        },
        default_bits=DIGITS_DEFAULT_BITS,
    )
