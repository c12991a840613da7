"""Split manifests (index-list hashes, training class sizes, the query/database/training checks) and
the data fingerprint of the rows a benchmark cell trains and evaluates on.

Conventions:
- An index list's hash is the sha256 of its row numbers as little-endian int64 bytes, in list
  order (``np.asarray(index, "<i8").tobytes()``); training lists are sorted, query and database
  lists keep the loader's order.
- Checks: no row twice in a list, query ∩ database = ∅, training ∩ query = ∅ and
  training ⊆ database. A failure is a
  DatasetError naming the first few offending rows and their count. Splits whose training set is
  given by the data (an LTHNet folder, imported list files) may have training rows outside the
  database; their manifest counts them instead of refusing them.
- Fingerprint: sha256 over (a) the features (as float32) and labels of the sorted union of the
  query, database and training rows, hashed straight from the arrays (no card is trusted), (b) the
  three index-list hashes (which row plays which role) and (c) the split parameters of
  ``card["long_tail"]`` (IF, mu, s_1, split seed). The content hash of the union is shared by the
  splits of one dataset (``BenchmarkData.with_train``), so a grid of IFs hashes the rows once.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from .base import DatasetError

MANIFEST_VERSION = 1
FINGERPRINT_VERSION = 1
SPLIT_PARAMETERS = ("imbalance_factor", "mu", "max_class_size", "split_seed")
_SHOWN = 8  # offending rows named in an error
_CHUNK_ROWS = 32_768  # rows gathered and hashed at a time


def index_sha256(index) -> str:
    """sha256 of an index list: its rows as little-endian int64 bytes, in list order."""
    return hashlib.sha256(np.ascontiguousarray(index, dtype="<i8").tobytes()).hexdigest()


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN])
    return shown + (", ..." if rows.size > _SHOWN else "")


def check_split(query: np.ndarray, database: np.ndarray, train: np.ndarray | None = None, where: str = "split",
                train_outside_database_ok: bool = False) -> int:
    """Raise DatasetError unless query ∩ database = ∅, no list repeats a row and (unless allowed)
    training ⊆ database. Returns the number of training rows outside the database."""
    for role, index in (("query", query), ("database", database), ("training", train)):
        if index is None:
            continue
        values, counts = np.unique(index, return_counts=True)
        repeated = values[counts > 1]
        if repeated.size:
            raise DatasetError(f"{where}: {repeated.size} rows appear more than once in the {role} list (rows "
                               f"{_rows_text(repeated)}); list every row once.")
    overlap = np.intersect1d(query, database)
    if overlap.size:
        raise DatasetError(
            f"{where}: {overlap.size} rows are both queries and database items (rows {_rows_text(overlap)}); a "
            "query would retrieve itself. Make query_index and database_index disjoint (e.g. drop the "
            "database_index and let the database be every row not in query_index)."
        )
    if train is None:
        return 0
    leaked = np.intersect1d(train, query)
    if leaked.size:
        raise DatasetError(f"{where}: {leaked.size} training rows are also queries (rows {_rows_text(leaked)}); "
                           "a method must never train on the queries it is scored on.")
    outside = np.setdiff1d(train, database)
    if outside.size and not train_outside_database_ok:
        raise DatasetError(
            f"{where}: {outside.size} training rows are not database rows (rows {_rows_text(outside)}); the "
            "long-tail protocol draws the training set from the database, so training ⊆ database."
        )
    return int(outside.size)


def split_manifest(labels: np.ndarray, n_classes: int, query: np.ndarray, database: np.ndarray,
                   train: np.ndarray, where: str = "split", train_outside_database_ok: bool = False) -> dict:
    """The manifest card of one split (see the module docstring); raises DatasetError on a failed check."""
    outside = check_split(query, database, train, where, train_outside_database_ok)
    manifest = {
        "version": MANIFEST_VERSION,
        "index_hash": "sha256 of the row numbers as little-endian int64, in list order",
        "train_sha256": index_sha256(train), "query_sha256": index_sha256(query),
        "database_sha256": index_sha256(database),
        "n_train": int(len(train)), "n_query": int(len(query)), "n_database": int(len(database)),
        "train_class_sizes": np.bincount(labels[train], minlength=n_classes).tolist(),
        "query_database_disjoint": True, "train_in_database": outside == 0,
    }
    if outside:
        manifest["train_rows_outside_database"] = outside
    return manifest


def data_manifest(data, train_outside_database_ok: bool = False) -> dict:
    """``split_manifest`` of a BenchmarkData's current query, database and training rows."""
    return split_manifest(data.labels, data.n_classes, data.query_index, data.database_index, data.train,
                          data.name, train_outside_database_ok)


def rows_sha256(features: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> str:
    """sha256 of the features (as float32) and labels of ``rows`` (sorted, unique), chunk by chunk."""
    digest = hashlib.sha256()
    digest.update(str((int(rows.size), int(features.shape[1]))).encode())
    whole = rows.size == features.shape[0]  # sorted unique rows of all n: every row, in order
    for start in range(0, rows.size, _CHUNK_ROWS):
        if whole:
            chunk = features[start:start + _CHUNK_ROWS]
        else:
            chunk = features[rows[start:start + _CHUNK_ROWS]]
        digest.update(memoryview(np.ascontiguousarray(chunk, dtype="<f4")).cast("B"))
    digest.update(np.ascontiguousarray(labels[rows], dtype="<i8").tobytes())
    return digest.hexdigest()


def data_fingerprint(data) -> str:
    """The fingerprint of ``data`` (see the module docstring); ``BenchmarkData.fingerprint()`` caches it."""
    train = np.asarray(data.train)
    rows = np.unique(np.concatenate([data.query_index, data.database_index, train]))
    rows_key = index_sha256(rows)
    shared = data._memo.setdefault("rows", {})
    if rows_key not in shared:
        shared[rows_key] = rows_sha256(data.features, data.labels, rows)
    long_tail = data.card.get("long_tail") or {}
    payload = {
        "version": FINGERPRINT_VERSION, "rows": shared[rows_key],
        "train": index_sha256(train), "query": index_sha256(data.query_index),
        "database": index_sha256(data.database_index),
        "split": {key: long_tail.get(key) for key in SPLIT_PARAMETERS},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
