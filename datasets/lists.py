"""Export any split as HashNet-style list files, and read such list files back as a dataset (the
same rows and labels of the source), so a split can be shared with code that reads HashNet lists.

Conventions:
- Files in the output folder: ``train.txt`` (training rows), ``test.txt`` (the queries) and
  ``database.txt``, one line per row in the split's order: ``<relative path> <C one-hot labels>``
  separated by single spaces, as HashNet's lists; beside them ``split.json`` with the split
  manifest (datasets/manifest.py), the split's parameters (``card["long_tail"]``), the class
  names, the sha256 and line count of each list, the data fingerprint and how the source was
  loaded (``card["loader"]``).
- Paths: a row's path in its source's convention (``BenchmarkData.row_paths``): ImageNet100 the
  HashNet list paths exactly; CIFAR-100 the LTHNet layout ``query|database/<class>/<file>.png``
  (``datasets.cifar100.extract_cifar100_images`` writes those PNGs); an LTHNet folder its paths
  relative to its ``images`` folder. Sources without paths get ``<dataset slug>/<row>`` plus
  ``.png`` when the exporter can draw the row (digits: its features are the 8x8 pixels), e.g.
  ``digits/17.png``, ``features-my/17`` (a features file: a row number, no image).
- ``write_images=True`` writes the PNGs of the listed rows under ``<out>/images/<path>`` when their
  pixels are in memory (digits, CIFAR-100); file-based sources already have their files.
- Import (``load_list_files``): every listed path must be a row path of the source and its one-hot
  label that row's label; the query, database and training lists must pass the manifest checks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from common.io import atomic_write, file_slug

from .base import BenchmarkData, DatasetError
from .manifest import data_manifest, split_manifest

LIST_FILES = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
MANIFEST_FILE = "split.json"
FORMAT = "HashNet list files: '<relative path> <C one-hot labels>' per line, single spaces"


# ---------------------------------------------------------------------------- paths


def _is_digits(data: BenchmarkData) -> bool:
    return data.name == "digits" and data.n_features == 64


def row_paths_of(data: BenchmarkData) -> tuple[str, ...]:
    """The relative path of every row (see the module docstring for each source's convention)."""
    if data.row_paths is not None:
        return tuple(data.row_paths)
    suffix = ".png" if _is_digits(data) else ""
    slug = file_slug(data.name)
    return tuple(f"{slug}/{row}{suffix}" for row in range(data.features.shape[0]))


def _row_images(data: BenchmarkData, rows: np.ndarray):
    """uint8 images of ``rows`` when the pixels are in memory, else None."""
    if _is_digits(data):
        pixels = np.asarray(data.features[rows], dtype=np.float64).reshape(-1, 8, 8)  # features = pixels / 16
        return np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
    source = data.image_source
    if source is not None and getattr(source, "in_memory", False):
        return source.items[rows]
    return None


# ---------------------------------------------------------------------------- export


def _list_text(paths: tuple[str, ...], labels: np.ndarray, rows: np.ndarray, n_classes: int) -> str:
    zeros = ["0"] * n_classes
    lines = []
    for row in rows:
        one_hot = list(zeros)
        one_hot[int(labels[row])] = "1"
        lines.append(paths[row] + " " + " ".join(one_hot) + "\n")
    return "".join(lines)


def _train_outside_database_ok(data: BenchmarkData) -> bool:
    """Whether training rows may lie outside the database: only when the source's own training set
    has such rows (an LTHNet folder whose training files are not all database files)."""
    return data.card.get("train_split") == "given by the folder" and data.train_index is not None


def export_split(data: BenchmarkData, out_dir: str, write_images: bool = False) -> list[str]:
    """Write ``data``'s split as ``train.txt``, ``test.txt``, ``database.txt`` and ``split.json`` in
    ``out_dir`` (and, with ``write_images``, the PNGs of in-memory rows); returns the files written."""
    paths = row_paths_of(data)
    spaced = [p for p in paths if not p or any(ch.isspace() for ch in p)]
    if spaced:
        raise DatasetError(f"{data.name}: row path {spaced[0]!r} is empty or contains whitespace; list files "
                           "separate the path from the labels by spaces.")
    manifest = data_manifest(data, _train_outside_database_ok(data))
    roles = {"train": np.asarray(data.train), "query": data.query_index, "database": data.database_index}
    written, files = [], {}
    for role, rows in roles.items():
        text = _list_text(paths, data.labels, rows, data.n_classes)
        path = atomic_write(os.path.join(out_dir, LIST_FILES[role]), text)
        files[LIST_FILES[role]] = {"role": role, "lines": int(len(rows)),
                                   "sha256": hashlib.sha256(text.encode()).hexdigest()}
        written.append(path)
    if write_images:
        written += _write_images(data, paths, np.unique(np.concatenate(list(roles.values()))), out_dir)
    card = {
        "format": FORMAT, "dataset": data.name, "loader": data.card.get("loader"),
        "n_classes": data.n_classes, "class_names": list(data.class_names), "files": files,
        "long_tail": {key: value for key, value in (data.card.get("long_tail") or {}).items() if key != "manifest"},
        "manifest": manifest, "fingerprint": data.fingerprint(),
        "images": "written under images/" if write_images else "not written",
    }
    written.append(atomic_write(os.path.join(out_dir, MANIFEST_FILE), json.dumps(card, indent=1, default=repr)))
    return written


def _write_images(data: BenchmarkData, paths: tuple[str, ...], rows: np.ndarray, out_dir: str) -> list[str]:
    from PIL import Image

    images = _row_images(data, rows)
    if images is None:
        raise DatasetError(f"{data.name}: its images are files, not pixels in memory; the list paths name them "
                           "already (relative to the source's root), so export without write_images.")
    written = []
    for row, image in zip(rows, images):
        target = os.path.join(out_dir, "images", *paths[row].split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Image.fromarray(image).save(target, format="PNG")
        written.append(target)
    return written


# ---------------------------------------------------------------------------- import


def parse_list_file(text: str, n_classes: int, where: str) -> tuple[list[str], np.ndarray]:
    """(paths, labels) of a list file: a path and ``n_classes`` one-hot labels per line."""
    paths, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        one_hot = tokens[1:]
        if len(one_hot) != n_classes or one_hot.count("1") != 1 or one_hot.count("0") != n_classes - 1:
            raise DatasetError(f"{where} line {number}: expected a path and {n_classes} one-hot labels (0 or 1, "
                               f"exactly one 1), got {len(one_hot)} values after the path.")
        paths.append(tokens[0])
        labels.append(one_hot.index("1"))
    return paths, np.asarray(labels, dtype=np.int64)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise DatasetError(f"list file {path} not found; a split folder holds {', '.join(LIST_FILES.values())} "
                           "(written by datasets.lists.export_split).") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read list file {path} ({error}); export the split again.") from error


def load_list_files(lists_dir: str, base: BenchmarkData) -> BenchmarkData:
    """``base`` (the source dataset, loaded as usual) with the query, database and training rows of
    the list files in ``lists_dir``: each path maps back to its row of ``base``, labels checked.

    ``split.json``, when present, restores the split's parameters (``card["long_tail"]``), so a
    round trip gives the same fingerprint as the exported split.
    """
    paths = row_paths_of(base)
    row_of = {path: row for row, path in enumerate(paths)}
    if len(row_of) != len(paths):
        raise DatasetError(f"{base.name}: its row paths repeat, so list paths cannot name rows uniquely.")
    indices = {}
    for role, file_name in LIST_FILES.items():
        where = os.path.join(lists_dir, file_name)
        listed, labels = parse_list_file(_read_text(where), base.n_classes, where)
        unknown = [path for path in listed if path not in row_of]
        if unknown:
            raise DatasetError(f"{where}: {len(unknown)} paths are not rows of {base.name} (e.g. {unknown[0]!r}); "
                               f"the lists belong to another dataset, or {base.name} was loaded from another "
                               "root.")
        rows = np.asarray([row_of[path] for path in listed], dtype=np.int64)
        wrong = np.flatnonzero(base.labels[rows] != labels)
        if wrong.size:
            raise DatasetError(f"{where}: {wrong.size} lines give a label other than the row's (line "
                               f"{wrong[0] + 1}: {listed[wrong[0]]!r} is class {int(labels[wrong[0]])}, the dataset "
                               f"says {int(base.labels[rows[wrong[0]]])}); the lists do not match this dataset.")
        indices[role] = rows
    if indices["query"].size == 0 or indices["database"].size == 0:
        raise DatasetError(f"{lists_dir}: test.txt and database.txt must both list rows.")
    train_outside_ok = _train_outside_database_ok(base) and bool(
        np.setdiff1d(base.train, base.database_index).size)
    manifest = split_manifest(base.labels, base.n_classes, indices["query"], indices["database"], indices["train"],
                              lists_dir, train_outside_database_ok=train_outside_ok)
    card = {**base.card, "lists": {"folder": os.path.abspath(lists_dir), "manifest": manifest},
            "train_split": "given by the list files"}
    card.pop("long_tail", None)
    exported = _read_manifest(lists_dir)
    if exported.get("long_tail"):
        card["long_tail"] = {**exported["long_tail"], "manifest": manifest}
    return dataclasses.replace(base, query_index=indices["query"], database_index=indices["database"],
                               train_index=indices["train"], card=card)


def _read_manifest(lists_dir: str) -> dict:
    path = os.path.join(lists_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {path} ({error}); export the split again or delete the file.") from error


def load_lists(data_root: str | None = None, source: str | None = None, source_root: str | None = None,
               cache_dir: str | None = None) -> BenchmarkData:
    """The ``lists`` dataset: the split in the list folder ``data_root``, on the rows of its source.

    ``source``: the source dataset's name (default: the loader recorded in ``split.json``), loaded
    with its recorded options; ``source_root`` replaces its ``data_root``, ``cache_dir`` its feature
    cache (both only where the source takes them).
    """
    from . import dataset_options, load_dataset

    if not data_root:
        raise DatasetError("the lists dataset needs the folder of train.txt, test.txt and database.txt: "
                           "--data-root DIR.")
    recorded = (_read_manifest(data_root).get("loader") or {})
    if source is None:
        source = recorded.get("name")
        if not source:
            raise DatasetError(f"{data_root} has no {MANIFEST_FILE} naming the source dataset; pass source=NAME.")
    options = dict(recorded.get("options") or {}) if source == recorded.get("name") else {}
    accepted = dataset_options(source)
    for key, value in (("data_root", source_root), ("cache_dir", cache_dir)):
        if value is not None and key in accepted:
            options[key] = value
    base = load_dataset(source, **{key: value for key, value in options.items() if key in accepted})
    return load_list_files(data_root, base)


__all__ = ["export_split", "load_list_files", "load_lists", "row_paths_of", "parse_list_file"]
