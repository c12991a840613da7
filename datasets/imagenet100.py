"""ImageNet100 with the standard HashNet split: 5,000 validation images as queries, the 128,503
training images of the same 100 classes as the database (LTHNet paper, Table 2).

Conventions:
- Split lists: ``database0..7.txt`` and ``test0..7.txt`` of thuml/HashNet, commit
  85387b814fcf95daff887bd325cbaa0e8def7323, ``caffe/data/imagenet/``. ``lists`` names a local
  directory holding them (``.txt`` or ``.txt.gz``); otherwise they are fetched once from that
  commit's raw GitHub URLs into ``lists_dir`` (default ``data/imagenet100-lists``). Every file is
  sha256-checked (of its uncompressed text) against the checksums embedded below.
- A list line is ``./data/imagenet/image/<wnid>_<n>.JPEG`` (database) or
  ``./data/imagenet/val_image/ILSVRC2012_val_<8 digits>.JPEG`` (queries), then 100 one-hot labels.
  The label index order is HashNet's; class names are the WordNet ids (taken from the database
  file names).
- Images come from a user's ILSVRC-2012 copy, ``data_root``:
  ``<root>/train/<wnid>/<wnid>_<n>.JPEG`` (the standard train layout) and the validation images
  either flat, ``<root>/val/ILSVRC2012_val_<8 digits>.JPEG``, or in class folders,
  ``<root>/val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG`` (detected from the first query image).
- Rows: the 5,000 queries first (list order test0..7), then the 128,503 database images
  (database0..7). Features: cached ResNet34 rows of ``BackboneTransform(image_size)`` (resize 256,
  centre crop 224, ImageNet mean/std).
- Long-tail protocol (paper §6.1): s_1 = 1,300 with mu = 0.845, 0.99 for IF = 50, 100, and a
  balanced 100 images per class at IF = 1.
- Row paths (exported split lists, datasets/lists.py): the HashNet list paths exactly as written
  (``./data/imagenet/image/...``, ``./data/imagenet/val_image/...``), so an exported
  ``database.txt`` and ``test.txt`` are HashNet's lists themselves.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request

import numpy as np

from common.io import atomic_write

from .base import BenchmarkData, DatasetError, LongTailProtocol
from .features import benchmark_from_images, takes_feature_options
from .images import BackboneTransform, ImageSource, TrainingAugmentation
from .lists import parse_list_file

IMAGENET100_PROTOCOL = LongTailProtocol(
    max_class_size=1300, mu_by_imbalance_factor={1.0: 0.0, 50.0: 0.845, 100.0: 0.99}, balanced_class_size=100,
)
HASHNET_COMMIT = "85387b814fcf95daff887bd325cbaa0e8def7323"
HASHNET_LIST_URL = f"https://raw.githubusercontent.com/thuml/HashNet/{HASHNET_COMMIT}/caffe/data/imagenet/{{name}}"
DEFAULT_LISTS_DIR = os.path.join("data", "imagenet100-lists")
DATABASE_LISTS = tuple(f"database{i}.txt" for i in range(8))
QUERY_LISTS = tuple(f"test{i}.txt" for i in range(8))
N_CLASSES = 100

# sha256 of the uncompressed list files as served at HASHNET_COMMIT.
HASHNET_LIST_SHA256 = {
    "database0.txt": "4b4d8c96d5770795a18c1d651dde961094c0d7485f21d7e28b03123526bff1ba",
    "database1.txt": "13a6701ccb0ddec038a8d8e5a5321d0cf28667b3473193625e077c10df17c988",
    "database2.txt": "e55aaef56a62fa79dfc92cc9d5c738db0dd5e051ba9e93437b939058a8536a05",
    "database3.txt": "b42b99cbaa5107243e6f91a9f99dc0bf262229d64330f8a1f72008ce71812dc8",
    "database4.txt": "8aaa316eaa3d1c57d75a71b55868344131ecdffc75abc7b22ceb228e1e592414",
    "database5.txt": "7a70fb3df9f76d0759b7660e503474833fa2986636dd795ac852e82e463c094f",
    "database6.txt": "399d29e4f9b8790c4496a09fdbc2b9c0e69433f818e31f8332fd672edd0caeb7",
    "database7.txt": "62442bcab33fa422ce5f6551295dbce14ce374ae2b068d2a2b8ce11a5f43f8fb",
    "test0.txt": "2590239da09f8770d82aae7b9e578d8391e1e1389b2732fcf8c036f4f6d34ae9",
    "test1.txt": "f5261ff045b7009b6118199d9c23554978bed1748b014687198584c0ed734455",
    "test2.txt": "de2f5514414c59fa86f9bf07a4fb00bd964e6f11f06baf2867eadfa81f34b0b9",
    "test3.txt": "354e037d928738579c0dacd1bbb7f98324ef7dd9b62146460f5430114712e3f9",
    "test4.txt": "eea8eaf42b4436d0fd736f84e9e53f3a89de1719a6d4359709fc6a56824360f1",
    "test5.txt": "7c2686f54c8716fe748fe816c060ea282002f1fa44695d480040472410441a23",
    "test6.txt": "cd452e6c6154307fde1bd6b0263bf767e7b02bd91d08656750c259eba06f1966",
    "test7.txt": "eaa84e8387fe7f38cc0f136870fd72743a7af6a4ef6766166f2bd229fa9fc192",
}


# ---------------------------------------------------------------------------- split lists


def read_list_file(name: str, lists: str | None = None, lists_dir: str | None = None,
                   download: bool = True) -> str:
    """Text of one HashNet list file, sha256-verified: from ``lists`` (a directory), else fetched.

    Fetched files are stored (atomically) in ``lists_dir`` and read from there next time.
    """
    expected = HASHNET_LIST_SHA256[name]
    if lists is not None:
        candidates = [os.path.join(lists, name), os.path.join(lists, name + ".gz")]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is None:
            raise DatasetError(f"ImageNet100 list {name} (or {name}.gz) not found in {lists}; point the option "
                               "lists=DIR at a directory with HashNet's caffe/data/imagenet lists (commit "
                               f"{HASHNET_COMMIT}).")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            if path.endswith(".gz"):
                data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise DatasetError(f"cannot read {path} ({error}); replace it with a fresh copy.") from error
        _check_sha256(data, expected, path)
        return data.decode()

    lists_dir = lists_dir or DEFAULT_LISTS_DIR
    path = os.path.join(lists_dir, name)
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() == expected:
            return data.decode()
    if not download:
        raise DatasetError(f"ImageNet100 list {name} is not in {lists_dir} and download is off; pass the option "
                           "lists=DIR with HashNet's lists or allow the download from "
                           f"{HASHNET_LIST_URL.format(name=name)}.")
    url = HASHNET_LIST_URL.format(name=name)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except Exception as error:  # URLError, timeouts
        raise DatasetError(f"cannot download {url} ({type(error).__name__}: {error}); download HashNet's "
                           "caffe/data/imagenet lists by hand and pass the option lists=DIR.") from error
    _check_sha256(data, expected, url)
    atomic_write(path, data)
    return data.decode()


def _check_sha256(data: bytes, expected: str, where: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DatasetError(f"{where}: sha256 checksum failure ({actual[:12]}... != {expected[:12]}...); the file "
                           f"is not HashNet's list at commit {HASHNET_COMMIT[:10]} (truncated or edited). Delete "
                           "it and fetch it again.")


def parse_hashnet_list(text: str, where: str = "list") -> tuple[list[str], np.ndarray]:
    """(image paths as written, labels) of a HashNet list: path + one-hot labels per line."""
    return parse_list_file(text, N_CLASSES, where)


def load_imagenet100_lists(lists: str | None = None, lists_dir: str | None = None, download: bool = True):
    """Parsed HashNet split: dict with query/database paths and labels and the class wnids."""
    parsed = {}
    for part, names in (("query", QUERY_LISTS), ("database", DATABASE_LISTS)):
        paths, labels = [], []
        for name in names:
            p, y = parse_hashnet_list(read_list_file(name, lists, lists_dir, download), name)
            paths += p
            labels.append(y)
        parsed[part + "_paths"], parsed[part + "_labels"] = paths, np.concatenate(labels)
    wnids = [""] * N_CLASSES
    for path, label in zip(parsed["database_paths"], parsed["database_labels"]):
        wnid = os.path.basename(path).split("_")[0]
        if not wnids[label]:
            wnids[label] = wnid
        elif wnids[label] != wnid:
            raise DatasetError(f"database list mixes wnids {wnids[label]} and {wnid} under label {label}.")
    parsed["wnids"] = tuple(wnids)
    return parsed


# ---------------------------------------------------------------------------- images


def imagenet_file_paths(parsed: dict, data_root: str) -> tuple[list[str], list[str]]:
    """(query files, database files) under an ILSVRC-2012 root; val layout flat or per class."""
    wnids = parsed["wnids"]
    database = [os.path.join(data_root, "train", os.path.basename(p).split("_")[0], os.path.basename(p))
                for p in parsed["database_paths"]]
    query_names = [os.path.basename(p) for p in parsed["query_paths"]]
    flat = [os.path.join(data_root, "val", name) for name in query_names]
    per_class = [os.path.join(data_root, "val", wnids[label], name)
                 for name, label in zip(query_names, parsed["query_labels"])]
    if os.path.isfile(flat[0]):
        query = flat
    elif os.path.isfile(per_class[0]):
        query = per_class
    else:
        raise DatasetError(
            f"ImageNet100 validation image {query_names[0]} not found as {flat[0]} nor {per_class[0]}; "
            "--data-root must be an ILSVRC-2012 root with train/<wnid>/<wnid>_<n>.JPEG and "
            "val/ILSVRC2012_val_<n>.JPEG (flat) or val/<wnid>/ILSVRC2012_val_<n>.JPEG."
        )
    return query, database


def imagenet100_row_paths(parsed: dict) -> tuple[str, ...]:
    """The HashNet list path of every row: the queries (test0..7), then the database (database0..7)."""
    return tuple(parsed["query_paths"]) + tuple(parsed["database_paths"])


@takes_feature_options
def load_imagenet100(
    data_root: str | None = None, lists: str | None = None, lists_dir: str | None = None, download: bool = True,
    image_size: int = 224, feature_options: dict | None = None,
) -> BenchmarkData:
    """ImageNet100 BenchmarkData (features from the ResNet34 cache; ``image_source`` and ``row_paths`` set).

    ``data_root``: the ILSVRC-2012 root (required). Feature-cache options (keyword-only):
    cache_dir, weights, device, batch_size, num_workers, progress, random_seed, verify.
    """
    if not data_root:
        raise DatasetError("ImageNet100 needs the ILSVRC-2012 images: pass --data-root DIR with train/ and val/ "
                           "(see datasets/imagenet100.py), or run --dataset digits offline.")
    parsed = load_imagenet100_lists(lists, lists_dir, download)
    query_files, database_files = imagenet_file_paths(parsed, os.path.expanduser(data_root))
    labels = np.concatenate([parsed["query_labels"], parsed["database_labels"]])
    source = ImageSource(query_files + database_files, labels, BackboneTransform(crop_size=image_size),
                         name="imagenet100")
    source.check_files()
    n_query = len(query_files)
    return benchmark_from_images(
        "imagenet100", source,
        query_index=np.arange(n_query), database_index=np.arange(n_query, len(source)),
        class_names=parsed["wnids"],
        card={"source": f"ILSVRC-2012 images at {data_root}; HashNet lists (thuml/HashNet@{HASHNET_COMMIT[:10]}, "
                        "sha256-checked)",
              "rows": f"queries 0..{n_query - 1} (test0..7), database {n_query}..{len(source) - 1} (database0..7)",
              "n_query": n_query, "n_database": len(database_files)},
        long_tail_protocol=IMAGENET100_PROTOCOL, feature_options=feature_options,
        row_paths=imagenet100_row_paths(parsed), training_transform=TrainingAugmentation(crop_size=image_size),
    )
