"""Image folders in the layout of the LTHNet authors' released data, with the training set given
by the folder (already long-tail) instead of drawn by the benchmark.

Conventions:
- Layout: ``<data_root>/images/{train,query,database}/<class>/*.png|jpg|jpeg`` (``data_root`` may
  also name the ``images`` folder itself; ``path`` is an alias of ``data_root``). Files directly under a split folder (readmes, snapshots) are
  ignored. Classes are the sorted union of class-folder names (the reference code sorts folder
  names); files are sorted by name within a class.
- Rows: query files first, then database files. A training file whose (class, file name) also
  appears in the database is that database row; other training files are appended after the
  database (rows in neither query nor database). ``train_index`` holds the training rows.
- Features: cached ResNet34 rows of ``BackboneTransform(image_size)`` (resize 256, centre crop 224,
  ImageNet mean/std); the benchmark's own long-tail draw does not apply (the folder fixes the IF).
- Row paths (exported split lists, datasets/lists.py): each file's path relative to the
  ``images`` folder, ``<split>/<class>/<file>`` (a training file that is a database row is named
  by its ``database/`` path). ``card["folder_split_manifest"]`` is the folder split's manifest, which
  counts training rows outside the database instead of refusing them.
"""
from __future__ import annotations

import os

import numpy as np

from common.io import file_slug

from .base import BenchmarkData, DatasetError
from .features import benchmark_from_images, takes_feature_options
from .manifest import split_manifest
from .images import BackboneTransform, ImageSource

SPLITS = ("train", "query", "database")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _images_folder(path: str) -> str:
    path = os.path.expanduser(path)
    for candidate in (os.path.join(path, "images"), path):
        if all(os.path.isdir(os.path.join(candidate, split)) for split in SPLITS):
            return candidate
    raise DatasetError(
        f"{path} is not in the LTHNet folder layout: expected {os.path.join(path, 'images')}/"
        "{train,query,database}/<class>/*.png|jpg."
    )


def scan_lthnet_folder(path: str) -> tuple[tuple[str, ...], dict[str, list[tuple[str, str]]]]:
    """(class names, {split: [(class, file path), ...]}) of an LTHNet-layout folder."""
    images = _images_folder(path)
    found = {}
    for split in SPLITS:
        split_dir = os.path.join(images, split)
        entries = []
        for class_name in sorted(os.listdir(split_dir)):
            class_dir = os.path.join(split_dir, class_name)
            if not os.path.isdir(class_dir):
                continue
            for file_name in sorted(os.listdir(class_dir)):
                if file_name.lower().endswith(IMAGE_EXTENSIONS):
                    entries.append((class_name, os.path.join(class_dir, file_name)))
        if not entries:
            raise DatasetError(f"{split_dir} holds no images in <class>/ folders (png or jpg).")
        found[split] = entries
    class_names = tuple(sorted({class_name for entries in found.values() for class_name, _ in entries}))
    return class_names, found


def lthnet_folder_rows(path: str):
    """(ImageSource items, labels, query rows, database rows, train rows, class names)."""
    class_names, found = scan_lthnet_folder(path)
    label_of = {name: i for i, name in enumerate(class_names)}
    files = [file for _, file in found["query"]] + [file for _, file in found["database"]]
    labels = [label_of[c] for c, _ in found["query"]] + [label_of[c] for c, _ in found["database"]]
    n_query = len(found["query"])
    database_row = {(c, os.path.basename(f)): n_query + i for i, (c, f) in enumerate(found["database"])}
    train_rows = []
    for class_name, file in found["train"]:
        row = database_row.get((class_name, os.path.basename(file)))
        if row is None:
            row = len(files)
            files.append(file)
            labels.append(label_of[class_name])
        train_rows.append(row)
    return (files, np.asarray(labels, dtype=np.int64), np.arange(n_query),
            np.arange(n_query, n_query + len(found["database"])), np.asarray(train_rows, dtype=np.int64),
            class_names)


@takes_feature_options
def load_lthnet_folder(data_root: str | None = None, path: str | None = None, image_size: int = 224,
                       feature_options: dict | None = None) -> BenchmarkData:
    """BenchmarkData of an LTHNet-layout folder (``data_root``, or its alias ``path``, required);
    features from the ResNet34 cache. Feature-cache options as for ``load_cifar100``."""
    def real(folder):
        return os.path.realpath(os.path.expanduser(folder))

    if data_root and path and real(data_root) != real(path):
        raise DatasetError(f"lthnet-folder got data_root={data_root!r} and path={path!r}; path is an alias of "
                           "data_root, give one of them.")
    root = data_root or path
    if not root:
        raise DatasetError("lthnet-folder needs its folder: --data-root DIR (data_root=DIR, or the alias path=DIR), "
                           "a folder with images/{train,query,database}/<class>/.")
    files, labels, query, database, train, class_names = lthnet_folder_rows(root)
    folder_name = os.path.basename(os.path.normpath(root))
    if folder_name == "images":
        folder_name = os.path.basename(os.path.dirname(os.path.normpath(root)))
    name = "lthnet-" + file_slug(folder_name)
    images = _images_folder(root)
    row_paths = tuple(os.path.relpath(file, images).replace(os.sep, "/") for file in files)
    source = ImageSource(files, labels, BackboneTransform(crop_size=image_size), name=name)
    n_appended = len(files) - len(query) - len(database)
    manifest = split_manifest(labels, len(class_names), query, database, train, name,
                              train_outside_database_ok=True)
    return benchmark_from_images(
        name, source, query_index=query, database_index=database, train_index=train, class_names=class_names,
        card={"source": f"LTHNet-layout image folder {os.path.abspath(root)}",
              "rows": "query files, then database files, then training files not found in the database",
              "n_query": int(len(query)), "n_database": int(len(database)), "n_train": int(len(train)),
              "train_files_not_in_database": int(n_appended), "train_split": "given by the folder",
              "folder_split_manifest": manifest},
        feature_options=feature_options, row_paths=row_paths,
    )
