"""Splits exported as HashNet-style list files and read back: the same rows, labels and
fingerprint, on digits (offline), HashNet's real ImageNet100 lists (paths and labels, no pixels)
and the LTHNet authors' demo folder; wrong lists are refused with the lines or rows named."""
from __future__ import annotations

import dataclasses
import gzip
import json
import os

import numpy as np
import pytest
from PIL import Image

from datasets import BenchmarkData, DatasetError, export_split, load_dataset, load_list_files, make_long_tail
from datasets.lists import row_paths_of


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def read_lines(path):
    with open(path) as handle:
        return handle.read().splitlines()


def assert_same_split(back, split):
    np.testing.assert_array_equal(back.train, split.train)
    np.testing.assert_array_equal(back.query_index, split.query_index)
    np.testing.assert_array_equal(back.database_index, split.database_index)
    np.testing.assert_array_equal(back.labels, split.labels)
    assert back.fingerprint() == split.fingerprint()


def test_digits_round_trip_with_images(digits, tmp_path):
    split = make_long_tail(digits, 50, seed=3)
    written = export_split(split, str(tmp_path), write_images=True)
    assert [os.path.basename(p) for p in written[:3]] == ["train.txt", "test.txt", "database.txt"]
    assert written[-1].endswith("split.json")
    train = read_lines(tmp_path / "train.txt")
    assert len(train) == len(split.train) and len(read_lines(tmp_path / "test.txt")) == len(split.query_index)
    row = int(split.train[0])
    assert train[0] == f"digits/{row}.png " + " ".join("1" if c == split.labels[row] else "0" for c in range(10))
    with Image.open(tmp_path / "images" / "digits" / f"{row}.png") as image:  # the 8x8 picture of that row
        pixels = np.asarray(image, dtype=np.float64)
    np.testing.assert_allclose(pixels.ravel() / 255, split.features[row], atol=0.5 / 255)
    card = json.loads((tmp_path / "split.json").read_text())
    assert card["manifest"] == split.card["long_tail"]["manifest"]
    assert card["long_tail"]["realised_imbalance_factor"] == split.card["long_tail"]["realised_imbalance_factor"]
    assert card["fingerprint"] == split.fingerprint()
    assert card["files"]["test.txt"]["lines"] == len(split.query_index)

    back = load_list_files(str(tmp_path), digits)
    assert_same_split(back, split)
    assert back.card["long_tail"]["split_seed"] == 3
    assert_same_split(load_dataset("lists", data_root=str(tmp_path)), split)  # the loader the CLI can name


def test_features_file_rows_get_a_row_number_path(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", features=rng.random((30, 3)), labels=np.repeat(["a", "b", "c"], 10))
    data = load_dataset(f"features:{tmp_path / 'mine.npz'}")
    assert row_paths_of(data)[:2] == ("features-mine/0", "features-mine/1")
    split = make_long_tail(data, 2)
    export_split(split, str(tmp_path / "lists"))
    assert_same_split(load_dataset("lists", data_root=str(tmp_path / "lists")), split)
    with pytest.raises(DatasetError, match="pixels in memory"):
        export_split(split, str(tmp_path / "other"), write_images=True)


def test_imagenet100_lists_round_trip(hashnet_lists, tmp_path):
    from datasets.imagenet100 import DATABASE_LISTS, IMAGENET100_PROTOCOL, QUERY_LISTS, imagenet100_row_paths

    folder, parsed = hashnet_lists
    labels = np.concatenate([parsed["query_labels"], parsed["database_labels"]])
    n_query = len(parsed["query_labels"])
    base = BenchmarkData("imagenet100", np.zeros((labels.size, 1), np.float32), labels,
                         query_index=np.arange(n_query), database_index=np.arange(n_query, labels.size),
                         class_names=parsed["wnids"], long_tail_protocol=IMAGENET100_PROTOCOL,
                         row_paths=imagenet100_row_paths(parsed))
    split = make_long_tail(base, 100, seed=0)
    export_split(split, str(tmp_path))

    def hashnet_text(names):
        return b"".join(gzip.open(os.path.join(folder, name + ".gz")).read() for name in names)

    # queries and database are HashNet's lists themselves, byte for byte
    assert (tmp_path / "test.txt").read_bytes() == hashnet_text(QUERY_LISTS)
    assert (tmp_path / "database.txt").read_bytes() == hashnet_text(DATABASE_LISTS)
    train = read_lines(tmp_path / "train.txt")
    assert len(train) == 6834 and set(train) <= set(read_lines(tmp_path / "database.txt"))
    assert train[0].startswith("./data/imagenet/image/n")
    assert_same_split(load_list_files(str(tmp_path), base), split)


def test_lthnet_demo_round_trip(small_demo_data, small_demo_folder, tmp_path):
    split = make_long_tail(small_demo_data, 2)  # one class: the whole database (mu = 0 for C = 1)
    export_split(split, str(tmp_path))
    train = read_lines(tmp_path / "train.txt")
    assert len(train) == 10 and all(line.startswith("database/apple/") and line.endswith(" 1") for line in train)
    for line in train + read_lines(tmp_path / "test.txt"):
        assert (small_demo_folder / "images" / line.split()[0]).is_file()  # the listed files exist
    assert_same_split(load_list_files(str(tmp_path), small_demo_data), split)
    # the folder's own split (train = database) also travels
    export_split(small_demo_data, str(tmp_path / "folder-split"))
    back = load_list_files(str(tmp_path / "folder-split"), small_demo_data)
    np.testing.assert_array_equal(back.train, small_demo_data.train_index)


def test_training_files_outside_the_database_travel_only_for_folder_sources(tmp_path):
    rng = np.random.default_rng(1)
    folder_data = BenchmarkData("lthnet-x", rng.random((8, 2), dtype=np.float32), np.zeros(8, np.int64),
                                query_index=np.arange(2), database_index=np.arange(2, 6),
                                train_index=np.array([2, 3, 6, 7]), card={"train_split": "given by the folder"},
                                row_paths=tuple(f"{s}/a/{i}.png" for i, s in enumerate("qqddddtt")))
    export_split(folder_data, str(tmp_path))
    card = json.loads((tmp_path / "split.json").read_text())
    assert card["manifest"]["train_rows_outside_database"] == 2 and not card["manifest"]["train_in_database"]
    np.testing.assert_array_equal(load_list_files(str(tmp_path), folder_data).train, [2, 3, 6, 7])
    plain = dataclasses.replace(folder_data, card={})
    with pytest.raises(DatasetError, match=r"2 training rows are not database rows \(rows 6, 7\)"):
        load_list_files(str(tmp_path), plain)


@pytest.fixture
def exported(digits, tmp_path):
    split = make_long_tail(digits, 10)
    export_split(split, str(tmp_path))
    return split, tmp_path


def test_a_query_listed_in_the_database_is_refused_with_its_row(exported, digits):
    split, folder = exported
    database = read_lines(folder / "database.txt")
    query = read_lines(folder / "test.txt")
    (folder / "database.txt").write_text("\n".join(database + query[:2]) + "\n")
    rows = ", ".join(str(r) for r in sorted(split.query_index[:2]))
    with pytest.raises(DatasetError, match=rf"2 rows are both queries and database items \(rows {rows}\)"):
        load_list_files(str(folder), digits)


@pytest.mark.parametrize("edit, message", [
    (lambda line: "digits/99999.png" + line[line.index(" "):], r"1 paths are not rows of digits.*99999"),
    (lambda line: line.rsplit(" ", 1)[0], r"line 1: expected a path and 10 one-hot labels.*got 9"),
    (lambda line: line.replace(" 0", " 1", 1) if line.split()[1] == "0" else line.replace(" 1", " 0", 1)
     .replace(" 0", " 1", 2), r"line 1"),
])
def test_broken_lines_are_named(exported, digits, edit, message):
    _, folder = exported
    lines = read_lines(folder / "train.txt")
    (folder / "train.txt").write_text("\n".join([edit(lines[0])] + lines[1:]) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_list_files(str(folder), digits)


def test_a_wrong_label_is_named(exported, digits):
    split, folder = exported
    lines = read_lines(folder / "test.txt")
    path, *one_hot = lines[3].split()
    one_hot = one_hot[1:] + one_hot[:1]  # the 1 moves to another class
    (folder / "test.txt").write_text("\n".join(lines[:3] + [" ".join([path] + one_hot)] + lines[4:]) + "\n")
    with pytest.raises(DatasetError, match=rf"1 lines give a label other than the row's \(line 4: '{path}'"):
        load_list_files(str(folder), digits)


def test_a_missing_list_file_says_what_a_split_folder_holds(exported, digits):
    _, folder = exported
    (folder / "train.txt").unlink()
    with pytest.raises(DatasetError, match="train.txt not found.*test.txt, database.txt"):
        load_list_files(str(folder), digits)
    with pytest.raises(DatasetError, match="--data-root DIR"):
        load_dataset("lists")
