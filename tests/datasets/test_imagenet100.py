"""ImageNet100: the real HashNet lists (read from ../shared/data, never copied) parse to the
standard split, their checksums are enforced, Table 2 follows from the real database counts, and
list paths map onto an ILSVRC-2012 root (flat or per-class validation folder)."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from datasets import DatasetError
from datasets.imagenet100 import (
    HASHNET_LIST_SHA256, IMAGENET100_PROTOCOL, imagenet_file_paths, load_imagenet100,
    read_list_file,
)
from datasets.longtail import long_tail_class_sizes


def test_real_lists_give_the_standard_split(hashnet_lists):
    folder, parsed = hashnet_lists
    assert len(parsed["database_paths"]) == 128_503 and len(parsed["query_paths"]) == 5_000
    database_counts = np.bincount(parsed["database_labels"], minlength=100)
    assert database_counts.size == 100 and (database_counts.min(), database_counts.max()) == (1029, 1300)
    assert np.bincount(parsed["query_labels"]).tolist() == [50] * 100
    with open(os.path.join(folder, "class_index_to_wnid.txt")) as handle:
        expected_wnids = [line.split()[1] for line in handle if line.strip()]
    assert list(parsed["wnids"]) == expected_wnids
    assert parsed["database_paths"][0].startswith("./data/imagenet/image/n")
    assert parsed["query_paths"][0].startswith("./data/imagenet/val_image/ILSVRC2012_val_")


@pytest.mark.parametrize("factor, n_train, n_max, n_min", [(1, 10000, 100, 100), (50, 9437, 1300, 26),
                                                           (100, 6834, 1300, 13)])
def test_table2_imagenet100_from_real_database_labels(hashnet_lists, factor, n_train, n_max, n_min):
    _, parsed = hashnet_lists
    sizes, _, _ = long_tail_class_sizes(parsed["database_labels"], 100, factor, IMAGENET100_PROTOCOL)
    assert (int(sizes.sum()), int(sizes.max()), int(sizes.min())) == (n_train, n_max, n_min)


def test_checksums_are_enforced(hashnet_lists, tmp_path):
    folder, _ = hashnet_lists
    with gzip.open(os.path.join(folder, "test0.txt.gz"), "rb") as handle:
        text = handle.read()
    (tmp_path / "test0.txt").write_bytes(text)  # uncompressed copy in a temporary folder
    assert read_list_file("test0.txt", lists=str(tmp_path)).encode() == text
    (tmp_path / "test0.txt").write_bytes(text[:-40])  # truncated
    with pytest.raises(DatasetError, match="sha256 checksum failure"):
        read_list_file("test0.txt", lists=str(tmp_path))
    with pytest.raises(DatasetError, match="not found"):
        read_list_file("test1.txt", lists=str(tmp_path))
    assert len(HASHNET_LIST_SHA256) == 16


def test_fetched_lists_need_download_or_a_local_folder(tmp_path):
    with pytest.raises(DatasetError, match="download is off"):
        read_list_file("test0.txt", lists_dir=str(tmp_path), download=False)


def test_image_paths_map_onto_an_ilsvrc_root(hashnet_lists, tmp_path):
    _, parsed = hashnet_lists
    first_query = os.path.basename(parsed["query_paths"][0])
    first_wnid = parsed["wnids"][parsed["query_labels"][0]]
    with pytest.raises(DatasetError, match="train/<wnid>"):
        imagenet_file_paths(parsed, str(tmp_path))
    (tmp_path / "val" / first_wnid).mkdir(parents=True)
    (tmp_path / "val" / first_wnid / first_query).write_bytes(b"")
    query, database = imagenet_file_paths(parsed, str(tmp_path))  # class-folder validation layout
    assert query[0] == os.path.join(str(tmp_path), "val", first_wnid, first_query)
    name = os.path.basename(parsed["database_paths"][0])
    assert database[0] == os.path.join(str(tmp_path), "train", name.split("_")[0], name)
    (tmp_path / "val" / first_query).write_bytes(b"")
    query, _ = imagenet_file_paths(parsed, str(tmp_path))  # flat layout
    assert query[0] == os.path.join(str(tmp_path), "val", first_query)
    folder, _ = hashnet_lists
    with pytest.raises(DatasetError, match="image file.*not found"):  # the train images are absent
        load_imagenet100(data_root=str(tmp_path), lists=folder, weights="random", cache_dir=str(tmp_path / "c"))


def test_imagenet100_needs_a_data_root():
    with pytest.raises(DatasetError, match="--data-root"):
        load_imagenet100(data_root=None)
