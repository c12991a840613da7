"""LTHNet-layout image folders, on the authors' real demo zip (extracted to tmp_path) and on a
small folder whose training files are partly outside the database."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from datasets import DatasetError, load_dataset
from datasets.lthnet_folder import lthnet_folder_rows


def test_real_demo_layout_rows(demo_folder):
    files, labels, query, database, train, class_names = lthnet_folder_rows(str(demo_folder))
    assert class_names == ("apple",)
    assert (len(query), len(database), len(train), len(files)) == (100, 500, 500, 600)
    # the demo's training files are exactly its database files: matched by name, nothing appended
    np.testing.assert_array_equal(np.sort(train), database)
    assert all(f.endswith(".png") for f in files) and not any("snapshot" in f or "readme" in f for f in files)
    assert os.path.basename(files[train[0]]) == "apple_s_000027.png"
    assert (labels == 0).all()
    # the images folder itself is accepted too
    assert lthnet_folder_rows(str(demo_folder / "images"))[5] == ("apple",)


def test_loader_on_a_reduced_copy_of_the_demo(demo_folder, tmp_path):
    """Features for 2 query + 3 database images of the demo, one training file not in the database."""
    images = tmp_path / "mini" / "images"
    for split, keep in (("query", 2), ("database", 3), ("train", 2)):
        source = demo_folder / "images" / split / "apple"
        (images / split / "apple").mkdir(parents=True)
        for name in sorted(os.listdir(source))[:keep]:
            shutil.copy(source / name, images / split / "apple" / name)
    extra = images / "train" / "apple" / "only_in_train.png"
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(extra)

    data = load_dataset("lthnet-folder", path=str(tmp_path / "mini"), image_size=32, weights="random",
                        cache_dir=str(tmp_path / "cache"), progress=False)
    assert data.name == "lthnet-mini"
    assert data.features.shape == (6, 512) and np.isfinite(data.features).all()
    assert data.query_index.tolist() == [0, 1] and data.database_index.tolist() == [2, 3, 4]
    assert data.train_index.tolist() == [2, 3, 5]  # two training files are database rows; one appended
    assert data.image_source.path(5) == str(extra)
    assert data.card["train_files_not_in_database"] == 1
    tensor, label = data.image_source[5]
    assert tuple(tensor.shape) == (3, 32, 32) and label == 0


def test_wrong_layout_is_explained(tmp_path):
    with pytest.raises(DatasetError, match=r"images/\{train,query,database\}"):
        lthnet_folder_rows(str(tmp_path))
    with pytest.raises(DatasetError, match="path=DIR"):
        load_dataset("lthnet-folder")
    for split in ("train", "query", "database"):
        (tmp_path / "images" / split).mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        lthnet_folder_rows(str(tmp_path))


def test_the_cli_options_reach_the_folder(small_demo_data, small_demo_folder):
    data = small_demo_data
    assert data.name == "lthnet-cifar-100-IF1"
    assert data.features.shape == (16, 512) and np.isfinite(data.features).all() and data.features.std() > 0
    assert data.query_index.tolist() == list(range(6)) and data.database_index.tolist() == list(range(6, 16))
    np.testing.assert_array_equal(data.train_index, data.database_index)  # the demo's train = database
    # rows are named by their path under images/, as the folder holds them
    query_files = sorted(os.listdir(small_demo_folder / "images" / "query" / "apple"))
    assert data.row_paths[0] == f"query/apple/{query_files[0]}"
    assert all((small_demo_folder / "images" / path).is_file() for path in data.row_paths)
    manifest = data.card["folder_split_manifest"]
    assert manifest["train_class_sizes"] == [10] and manifest["train_in_database"]
    assert data.card["loader"]["options"]["data_root"] == str(small_demo_folder)


def test_path_is_an_alias_of_data_root(small_demo_folder, tmp_path):
    with pytest.raises(DatasetError, match="alias"):
        load_dataset("lthnet-folder", data_root=str(small_demo_folder), path=str(tmp_path))


def test_the_cli_runs_an_lthnet_folder(small_demo_folder, tmp_path, capsys):
    """--dataset lthnet-folder --data-root DIR from the command line: the folder's own training
    split (train/), its own imbalance factor, the table printed."""
    from benchmark.cli import main

    argv = ["--dataset", "lthnet-folder", "--data-root", str(small_demo_folder), "--weights", "random",
            "--cache-dir", str(tmp_path / "cache"), "--methods", "LSH", "ITQ", "--bits", "8", "--no-progress",
            "--results-dir", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cells: 2 computed" in out and "| LSH |" in out and "IF=1 8 bits" in out
    from benchmark.store import ResultStore

    records = list(ResultStore(str(tmp_path / "run")).records())
    assert {r["dataset"]["n_train"] for r in records} == {10}  # the folder's train/, not a redrawn split
