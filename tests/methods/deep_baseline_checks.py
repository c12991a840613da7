"""Helpers shared by the deep-baseline tests (DPSH, HashNet, DSDH, CSQ): exact MAP and an LSH baseline."""
from __future__ import annotations

import numpy as np


def mean_average_precision(query_codes, query_labels, database_codes, database_labels) -> float:
    """Exact MAP over the whole ranking by Hamming distance; ties broken by database index (stable)."""
    query_codes = np.asarray(query_codes, dtype=np.int64)
    database_codes = np.asarray(database_codes, dtype=np.int64)
    distances = 0.5 * (query_codes.shape[1] - query_codes @ database_codes.T)
    average_precisions = []
    for row, label in zip(distances, query_labels):
        relevant = (database_labels[np.argsort(row, kind="stable")] == label).astype(np.float64)
        if relevant.sum() == 0:
            continue
        hits = np.cumsum(relevant)
        positions = np.arange(1, len(relevant) + 1)
        average_precisions.append(float(np.sum(relevant * hits / positions) / relevant.sum()))
    return float(np.mean(average_precisions))


def benchmark_map(method, benchmark) -> float:
    """Fit on the long-tail training split, encode query and database, return MAP."""
    X, y = benchmark.features, benchmark.labels
    method.fit(X[benchmark.train_index], y[benchmark.train_index])
    return mean_average_precision(
        method.encode(X[benchmark.query_index]), y[benchmark.query_index],
        method.encode(X[benchmark.database_index]), y[benchmark.database_index],
    )


def lsh_map(benchmark, n_bits: int, seeds=(0, 1, 2)) -> float:
    from methods.lsh import LSH

    return float(np.mean([benchmark_map(LSH(n_bits=n_bits, random_state=seed), benchmark) for seed in seeds]))
