"""A user's own precomputed features as a benchmark dataset: ``--dataset features:PATH.npz``.

Conventions: the .npz holds ``features`` (n, d) numeric and ``labels`` (n,) integer, boolean or
string class labels. Every label set is mapped to 0..C-1 in sorted order of the distinct values
(``np.unique``), and the values become the class names (sparse ids such as 0, 1000, 2000, negative
ids, ids near 1e12 and strings all work). Optional ``class_names`` (C,) strings: then labels must
already be integers 0..C-1, each used by some row, and are kept as they are. Optional
``query_index`` and ``database_index`` (int row indices, each row at most once, disjoint;
``database_index`` defaults to every row not in ``query_index``). Without ``query_index``: a
stratified split, ``query_fraction`` (default 10%) of every class as queries, at least one per
class but never a class's last row, drawn with ``seed`` (default 0); the rest is the database.
Features are converted to float32; non-finite values are refused. Every bad input is a
DatasetError that says what to change.
"""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from .base import BenchmarkData, DatasetError, array_checksum
from .digits import stratified_query_split
from .manifest import check_split

REQUIRED_KEYS = ("features", "labels")
SAVE_HINT = "np.savez(path, features=X, labels=y)"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip
_NPY_SIGNATURE = b"\x93NUMPY"


def _read_npz(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise DatasetError(f"features file {path!r} not found; pass features:PATH.npz with an existing file.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(_NPY_SIGNATURE):
        raise DatasetError(f"{path} is a single .npy array, not an .npz archive; save it with {SAVE_HINT}.")
    if not head.startswith(_ZIP_SIGNATURES):
        raise DatasetError(f"{path} is not an .npz archive (an .npz is a zip file; this one starts with bytes "
                           f"{head[:4]!r}, the zip signature is b'PK\\x03\\x04'); save it with {SAVE_HINT}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise DatasetError(f"{path} stores an object array ({error}); save class names as a str array "
                               "(np.asarray(names, dtype=str)) and numbers as numeric arrays.") from error
        raise DatasetError(f"cannot read features file {path} ({error}); it is corrupt or not an .npz "
                           f"written by np.savez. Re-create it with {SAVE_HINT}.") from error
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as error:
        raise DatasetError(f"cannot read features file {path} ({type(error).__name__}: {error}); it is corrupt or "
                           f"truncated. Re-create it with {SAVE_HINT}.") from error


def _index(arrays: dict, key: str, n: int, path: str) -> np.ndarray:
    index = np.asarray(arrays[key])
    if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key} must be a non-empty 1-D integer array of row numbers, got {index.dtype} "
                           f"{index.shape}; save it with np.asarray(rows, dtype=np.int64).")
    outside = index[(index < 0) | (index >= n)]
    if outside.size:
        raise DatasetError(f"{path}: {key} has {outside.size} rows outside 0..{n - 1} (e.g. {int(outside[0])}); "
                           "row numbers count from 0 and must be below the number of feature rows.")
    values, counts = np.unique(index, return_counts=True)
    repeated = values[counts > 1]
    if repeated.size:
        raise DatasetError(f"{path}: {key} lists {repeated.size} rows more than once (e.g. {int(repeated[0])}); "
                           "list every row once.")
    return index.astype(np.int64)


def _integer_labels(raw: np.ndarray, path: str) -> np.ndarray:
    """Float labels as int64 if they are whole numbers (else DatasetError); other kinds unchanged."""
    if raw.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))
        if bad.size:
            raise DatasetError(f"{path}: {bad.size} labels are not whole numbers (row {bad[0]}: {raw[bad[0]]!r}); "
                               "class labels must be integers or strings.")
        return raw.astype(np.int64)
    return raw


def _labels_and_names(arrays: dict, n: int, path: str) -> tuple[np.ndarray, tuple[str, ...]]:
    raw = np.asarray(arrays["labels"])
    if raw.ndim == 2 and raw.shape[0] == n:
        raise DatasetError(f"{path}: labels have shape {raw.shape}; give one class label per row, shape (n,) "
                           "(one-hot labels: labels.argmax(axis=1)).")
    if raw.shape != (n,):
        raise DatasetError(f"{path}: labels have shape {raw.shape} but features have {n} rows; "
                           "give one label per row, shape (n,).")
    if raw.dtype.kind not in "biufUS":
        raise DatasetError(f"{path}: labels are {raw.dtype}; class labels must be integers or strings.")
    if raw.dtype.kind == "S":
        raw = np.char.decode(raw, "utf-8", errors="replace")
    raw = _integer_labels(raw, path)

    if "class_names" not in arrays:
        values, inverse = np.unique(raw, return_inverse=True)
        return inverse.reshape(-1).astype(np.int64), tuple(str(v) for v in values)

    names = np.asarray(arrays["class_names"])
    if names.ndim != 1 or names.size == 0 or names.dtype.kind not in "iuUS":
        raise DatasetError(f"{path}: class_names must be a non-empty 1-D array of strings, got {names.dtype} "
                           f"{names.shape}; save them with np.asarray(names, dtype=str).")
    if names.dtype.kind == "S":
        names = np.char.decode(names, "utf-8", errors="replace")
    class_names = tuple(str(name) for name in names)
    if len(set(class_names)) != len(class_names):
        repeated = sorted({name for name in class_names if class_names.count(name) > 1})
        raise DatasetError(f"{path}: class_names repeats {', '.join(map(repr, repeated[:5]))}; give each class "
                           "one distinct name.")
    C = len(class_names)
    if raw.dtype.kind not in "iu" or raw.min() < 0 or raw.max() >= C:
        raise DatasetError(f"{path}: with class_names ({C} names), labels must be integers in 0..{C - 1}; drop "
                           "class_names to have any labels mapped to 0..C-1 (their values become the names).")
    labels = raw.astype(np.int64)
    unused = np.flatnonzero(np.bincount(labels, minlength=C) == 0)
    if unused.size:
        raise DatasetError(f"{path}: {unused.size} of the {C} class_names have no row (e.g. "
                           f"{class_names[unused[0]]!r}, label {unused[0]}); drop the unused names and renumber "
                           "the labels, or drop "
                           "class_names to have the labels mapped to 0..C-1.")
    return labels, class_names


def load_features_file(path: str, query_fraction: float = 0.1, seed: int = 0) -> BenchmarkData:
    """BenchmarkData from an .npz of features and labels (see the module docstring for the keys)."""
    path = os.path.expanduser(path)
    arrays = _read_npz(path)
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)} (has: {', '.join(sorted(arrays)) or 'nothing'}); "
                           f"save it with {SAVE_HINT}.")
    features = arrays["features"]
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0 or features.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: features must be a non-empty numeric (n, d) array, got {features.dtype} "
                           f"{features.shape}; save one row of d numbers per item.")
    n = features.shape[0]
    labels, class_names = _labels_and_names(arrays, n, path)
    features = np.ascontiguousarray(features, dtype=np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise DatasetError(f"{path}: {bad_rows.size} feature rows contain NaN or infinite values (first: row "
                           f"{bad_rows[0]}); clean or drop them before benchmarking.")

    if "query_index" in arrays:
        query = _index(arrays, "query_index", n, path)
        database = (_index(arrays, "database_index", n, path) if "database_index" in arrays
                    else np.setdiff1d(np.arange(n), query).astype(np.int64))
        split = "query_index/database_index from the file" if "database_index" in arrays else \
            "query_index from the file, database = the other rows"
        check_split(query, database, where=path)
    elif "database_index" in arrays:
        raise DatasetError(f"{path}: database_index without query_index; add query_index (or drop both for a "
                           "stratified split).")
    else:
        query, database = stratified_query_split(labels, query_fraction, seed)
        split = (f"stratified {query_fraction:.0%} per class as queries (at least 1, never a class's last row), "
                 f"seed {seed}")
    if database.size == 0:
        raise DatasetError(f"{path}: the database is empty; give more rows per class or a query_index.")
    if query.size == 0:
        raise DatasetError(f"{path}: no row can be a query (every class has a single row); give classes at least "
                           "2 rows or a query_index.")
    missing_classes = np.flatnonzero(np.bincount(labels[database], minlength=len(class_names)) == 0)
    if missing_classes.size:
        c = int(missing_classes[0])
        raise DatasetError(f"{path}: {missing_classes.size} classes have no database row (e.g. {class_names[c]!r}); "
                           "the long-tail training set is drawn from the database, so every class needs "
                           "database rows. Move some of its rows out of query_index.")

    stem = os.path.splitext(os.path.basename(path))[0]
    return BenchmarkData(
        name=f"features-{stem}", features=features, labels=labels, query_index=query, database_index=database,
        class_names=class_names,
        card={"source": f"features file {os.path.abspath(path)}", "query": split,
              "checksum": array_checksum(features, labels)},
    )
