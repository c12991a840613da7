"""A user's own precomputed features as a benchmark dataset: ``--dataset features:PATH.npz``.

Conventions: the .npz holds ``features`` (n, d) numeric and ``labels`` (n,) class indices
0..C-1 (any other integer or string labels are mapped to 0..C-1 in sorted order, and their values
become the class names); optional ``class_names`` (C,) strings, ``query_index`` and
``database_index`` (int row indices; ``database_index`` defaults to every row not in
``query_index``). Without ``query_index``: a stratified split, ``query_fraction`` (default 10%) of
every class as queries, at least one per class, drawn with ``seed`` (default 0); the rest is the
database. Features are converted to float32; non-finite values are refused.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from .base import BenchmarkData, DatasetError, array_checksum
from .digits import stratified_query_split

REQUIRED_KEYS = ("features", "labels")


def _read_npz(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise DatasetError(f"features file {path!r} not found; pass features:PATH.npz with an existing file.")
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise DatasetError(f"{path} is a single .npy array, not an .npz archive; save it with "
                               "np.savez(path, features=..., labels=...).")
        with archive:
            return {key: archive[key] for key in archive.files}
    except DatasetError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise DatasetError(f"{path} stores an object array ({error}); save class names as a str array "
                               "(np.asarray(names, dtype=str)) and numbers as numeric arrays.") from error
        raise DatasetError(f"cannot read features file {path} ({error}); it is corrupt or not an .npz "
                           "written by np.savez. Re-create it.") from error
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise DatasetError(f"cannot read features file {path} ({type(error).__name__}: {error}); it is corrupt or "
                           "truncated. Re-create it with np.savez(path, features=..., labels=...).") from error


def _index(arrays: dict, key: str, n: int, path: str) -> np.ndarray:
    index = np.asarray(arrays[key])
    if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key} must be a non-empty 1-D integer array, got {index.dtype} {index.shape}.")
    if index.min() < 0 or index.max() >= n:
        raise DatasetError(f"{path}: {key} has rows outside 0..{n - 1}.")
    if np.unique(index).size != index.size:
        raise DatasetError(f"{path}: {key} lists some rows more than once.")
    return index.astype(np.int64)


def load_features_file(path: str, query_fraction: float = 0.1, seed: int = 0, **_ignored) -> BenchmarkData:
    """BenchmarkData from an .npz of features and labels (see the module docstring for the keys)."""
    path = os.path.expanduser(path)
    arrays = _read_npz(path)
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)} (has: {', '.join(sorted(arrays)) or 'nothing'}); "
                           "save it with np.savez(path, features=X, labels=y).")
    features, raw_labels = arrays["features"], arrays["labels"]
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0 or features.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: features must be a non-empty numeric (n, d) array, got {features.dtype} "
                           f"{features.shape}.")
    n = features.shape[0]
    if raw_labels.shape != (n,):
        raise DatasetError(f"{path}: labels have shape {raw_labels.shape} but features have {n} rows; "
                           "give one label per row, shape (n,).")
    features = np.ascontiguousarray(features, dtype=np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise DatasetError(f"{path}: {bad_rows.size} feature rows contain NaN or infinite values (first: row "
                           f"{bad_rows[0]}); clean or drop them before benchmarking.")

    if "class_names" in arrays:
        class_names = tuple(str(name) for name in np.asarray(arrays["class_names"]).ravel())
        if raw_labels.dtype.kind not in "iu" or raw_labels.min() < 0 or raw_labels.max() >= len(class_names):
            raise DatasetError(f"{path}: with class_names, labels must be integers in 0..{len(class_names) - 1}.")
        labels = raw_labels.astype(np.int64)
    elif raw_labels.dtype.kind in "iu" and raw_labels.min() >= 0:
        labels = raw_labels.astype(np.int64)
        class_names = tuple(str(c) for c in range(int(labels.max()) + 1))
    else:
        values, labels = np.unique(raw_labels, return_inverse=True)
        labels = labels.astype(np.int64)
        class_names = tuple(str(v) for v in values)

    if "query_index" in arrays:
        query = _index(arrays, "query_index", n, path)
        database = (_index(arrays, "database_index", n, path) if "database_index" in arrays
                    else np.setdiff1d(np.arange(n), query).astype(np.int64))
        split = "query_index/database_index from the file" if "database_index" in arrays else \
            "query_index from the file, database = the other rows"
    elif "database_index" in arrays:
        raise DatasetError(f"{path}: database_index without query_index; add query_index (or drop both for a "
                           "stratified split).")
    else:
        if not 0 < query_fraction < 1:
            raise DatasetError(f"query_fraction must be in (0, 1), got {query_fraction}.")
        query, database = stratified_query_split(labels, query_fraction, seed)
        split = f"stratified {query_fraction:.0%} per class as queries (at least 1), seed {seed}"
    if database.size == 0:
        raise DatasetError(f"{path}: the database is empty; give more rows per class or a query_index.")

    stem = os.path.splitext(os.path.basename(path))[0]
    return BenchmarkData(
        name=f"features-{stem}", features=features, labels=labels, query_index=query, database_index=database,
        class_names=class_names,
        card={"source": f"features file {os.path.abspath(path)}", "query": split,
              "checksum": array_checksum(features, labels)},
    )
