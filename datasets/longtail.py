"""Zipf long-tail training splits (eq. 1 of the LTHNet paper): s_i = floor(s_1 * i^-mu).

Splits are pure functions of (labels, parameters, seed). With the paper's exponents (Table 2)
they reproduce its n_train, n_max and n_min exactly for CIFAR-100 and ImageNet100. Each split's
card (``card["long_tail"]``) holds its parameters, the realised n_max / n_min and its manifest
(datasets/manifest.py: index-list hashes, training class sizes, query/database/training checks).
"""
from __future__ import annotations

import math

import numpy as np

from .base import BenchmarkData, DatasetError, LongTailProtocol
from .manifest import split_manifest


def zipf_exponent(imbalance_factor: float, n_classes: int) -> float:
    """mu such that s_1 / s_C = IF under s_i = s_1 i^-mu: mu = ln(IF) / ln(C)."""
    check_imbalance_factor(imbalance_factor)
    if n_classes < 2 or imbalance_factor == 1:
        return 0.0
    return math.log(imbalance_factor) / math.log(n_classes)


def check_imbalance_factor(imbalance_factor: float) -> None:
    if not isinstance(imbalance_factor, (int, float)) or not math.isfinite(imbalance_factor) or imbalance_factor < 1:
        raise DatasetError(
            f"imbalance factor must be a number >= 1 (1 = balanced), got {imbalance_factor!r}; "
            "the paper uses --if 1 50 100."
        )


def zipf_class_sizes(n_classes: int, max_class_size: int, mu: float) -> np.ndarray:
    """Class sizes s_i = floor(s_1 * i^-mu), i = 1..C (largest first)."""
    ranks = np.arange(1, n_classes + 1, dtype=np.float64)
    sizes = np.floor(max_class_size * ranks ** (-mu) + 1e-9).astype(np.int64)
    return sizes


def long_tail_class_sizes(
    database_labels: np.ndarray, n_classes: int, imbalance_factor: float,
    protocol: LongTailProtocol = LongTailProtocol(),
) -> tuple[np.ndarray, float, int]:
    """(sizes indexed by class, mu, s_1) for a database and an IF under a protocol.

    Classes are ranked by database size, largest first, ties by class index (so on a balanced
    database such as CIFAR-100, class 0 is the head and class C-1 the tail). The order is fixed:
    head and tail classes are the same across seeds and IFs, and on ImageNet100 (1,029 to 1,300
    database images per class) the head ranks go to classes that can supply s_1 = 1,300 images.
    """
    check_imbalance_factor(imbalance_factor)
    available = np.bincount(database_labels, minlength=n_classes)
    if imbalance_factor == 1 and protocol.balanced_class_size is not None:
        s1 = protocol.balanced_class_size
    else:
        s1 = protocol.max_class_size if protocol.max_class_size is not None else int(available.min())
    mu = protocol.mu_by_imbalance_factor.get(float(imbalance_factor))
    if mu is None:
        mu = zipf_exponent(imbalance_factor, n_classes)
    if s1 < 1:
        empty = np.flatnonzero(available == 0)
        raise DatasetError(
            f"class {int(empty[0])} has no database items ({empty.size} classes have none), so no long-tail "
            "split can give it training items; every class needs database items (drop empty classes, or "
            "give them database rows)."
        )
    rank_sizes = zipf_class_sizes(n_classes, s1, mu)
    if rank_sizes.min() < 1:
        where = ("the protocol's max_class_size" if protocol.max_class_size is not None or
                 (imbalance_factor == 1 and protocol.balanced_class_size is not None)
                 else "the smallest class size in the database")
        raise DatasetError(
            f"imbalance factor {imbalance_factor} leaves the tail class empty: s_C = floor(s_1 * C^-mu) = 0 "
            f"with s_1 = {s1} ({where}), C = {n_classes}, mu = {mu:.4g}. The tail class keeps at least one "
            f"item only if IF <= s_1; use an IF <= {s1}."
        )
    order = np.lexsort((np.arange(n_classes), -available))  # class of rank 1, 2, ...
    sizes = np.empty(n_classes, dtype=np.int64)
    sizes[order] = rank_sizes
    short = np.flatnonzero(available < sizes)
    if short.size:
        c = int(short[0])
        raise DatasetError(
            f"class {c} has {available[c]} database items but the long-tail split needs {sizes[c]}; "
            "lower max_class_size or use a dataset with more items per class."
        )
    return sizes, float(mu), int(s1)


def long_tail_train_index(
    database_index: np.ndarray, database_labels: np.ndarray, n_classes: int,
    imbalance_factor: float, seed: int, protocol: LongTailProtocol = LongTailProtocol(),
) -> tuple[np.ndarray, dict]:
    """Draw the long-tail training rows from the database, deterministically per seed.

    Returns (sorted row indices, split card with mu, s_1, sizes and n_train, and the realised
    imbalance factor n_max / n_min of the drawn classes, which floor() makes differ from the
    requested IF when s_1 / IF is small: tails of 2 or 1 items).
    """
    sizes, mu, s1 = long_tail_class_sizes(database_labels, n_classes, imbalance_factor, protocol)
    rng = np.random.default_rng([int(seed), 20210711])
    chosen = []
    for c in range(n_classes):
        members = database_index[database_labels == c]
        chosen.append(rng.choice(members, size=int(sizes[c]), replace=False))
    index = np.sort(np.concatenate(chosen)).astype(np.int64)
    drawn = np.array([len(rows) for rows in chosen], dtype=np.int64)  # training items per class
    card = {
        "imbalance_factor": float(imbalance_factor), "mu": mu, "max_class_size": s1,
        "n_max": int(drawn.max()), "n_min": int(drawn.min()), "n_train": int(drawn.sum()),
        "realised_imbalance_factor": float(drawn.max() / drawn.min()), "split_seed": int(seed),
    }
    return index, card


def given_split_factor(data: BenchmarkData) -> float | None:
    """The imbalance factor of a training split the dataset fixes itself (an LTHNet folder's
    train/, imported list files), or None when splits are drawn by ``make_long_tail``.

    It is the factor the split was exported with (``card["long_tail"]["imbalance_factor"]``) when
    known, else the split's realised n_max / n_min.
    """
    if not str(data.card.get("train_split", "")).startswith("given") or data.train_index is None:
        return None
    declared = (data.card.get("long_tail") or {}).get("imbalance_factor")
    if declared is not None:
        return float(declared)
    sizes = data.train_class_sizes()
    sizes = sizes[sizes > 0]
    return float(sizes.max() / sizes.min())


def make_long_tail(data: BenchmarkData, imbalance_factor: float, seed: int = 0) -> BenchmarkData:
    """The dataset with its long-tail training split for one IF and seed (database and query unchanged).

    A dataset that brings its own training split (``given_split_factor``: an LTHNet folder's train/,
    imported list files) keeps it at that split's factor; other factors are drawn from its database.
    """
    given = given_split_factor(data)
    if given is not None and math.isclose(float(imbalance_factor), given, rel_tol=1e-6):
        return data
    db_labels = data.labels[data.database_index]
    index, card = long_tail_train_index(
        data.database_index, db_labels, data.n_classes, imbalance_factor, seed, data.long_tail_protocol
    )
    card["manifest"] = split_manifest(data.labels, data.n_classes, data.query_index, data.database_index, index,
                                      f"{data.name} IF {imbalance_factor:g} split seed {seed}")
    return data.with_train(index, long_tail=card)
