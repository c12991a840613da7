"""Split manifests (index hashes, training class sizes, query/database/training checks), the
realised imbalance factor of a drawn split, and the data fingerprint."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from datasets import BenchmarkData, DatasetError, load_dataset, make_long_tail
from datasets.longtail import long_tail_class_sizes
from datasets.manifest import check_split, data_manifest, index_sha256


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_manifest_of_a_split_describes_its_index_lists(digits):
    split = make_long_tail(digits, 50, seed=1)
    manifest = split.card["long_tail"]["manifest"]
    for role, index in (("train", split.train), ("query", split.query_index), ("database", split.database_index)):
        assert manifest[f"{role}_sha256"] == hashlib.sha256(np.asarray(index, "<i8").tobytes()).hexdigest()
        assert manifest[f"n_{role}"] == len(index)
    assert manifest["train_class_sizes"] == np.bincount(digits.labels[split.train], minlength=10).tolist()
    assert manifest["query_database_disjoint"] and manifest["train_in_database"]
    assert manifest == data_manifest(split)  # recomputed from the split itself
    other_seed = make_long_tail(digits, 50, seed=2).card["long_tail"]["manifest"]
    assert other_seed["train_sha256"] != manifest["train_sha256"]
    assert other_seed["query_sha256"] == manifest["query_sha256"]
    assert other_seed["train_class_sizes"] == manifest["train_class_sizes"]


@pytest.mark.parametrize("factor", [1, 50, 100])
def test_realised_imbalance_factor_is_n_max_over_n_min_of_the_drawn_split(digits, factor):
    split = make_long_tail(digits, factor)
    sizes = np.bincount(digits.labels[split.train], minlength=10)
    card = split.card["long_tail"]
    assert card["realised_imbalance_factor"] == sizes.max() / sizes.min()
    # digits: s_1 is the smallest database class; the tail is floor(s_1 / IF) items
    s1 = int(np.bincount(digits.labels[digits.database_index]).min())
    assert (card["max_class_size"], card["n_max"], card["n_min"]) == (s1, s1, s1 // factor)
    assert card["realised_imbalance_factor"] == pytest.approx(s1 / (s1 // factor))


def test_digits_realised_factors_differ_from_the_requested_ones(digits):
    realised = {f: make_long_tail(digits, f).card["long_tail"]["realised_imbalance_factor"] for f in (50, 100)}
    assert realised == {50: 69.5, 100: 139.0}  # tails of 2 and 1 items out of s_1 = 139


def test_a_tail_too_small_names_the_real_limit(digits):
    s1 = int(np.bincount(digits.labels[digits.database_index]).min())
    make_long_tail(digits, s1)  # the largest IF that keeps one tail item
    with pytest.raises(DatasetError, match=rf"s_1 = {s1} \(the smallest class size in the database\).*"
                                           rf"only if IF <= s_1; use an IF <= {s1}\."):
        make_long_tail(digits, s1 + 1)


def test_a_class_without_database_items_is_named():
    labels = np.repeat(np.arange(3), 5)
    with pytest.raises(DatasetError, match="class 1 has no database items"):
        long_tail_class_sizes(labels[labels != 1], 3, 2)


def test_overlapping_query_and_database_are_refused_with_the_rows():
    with pytest.raises(DatasetError, match=r"12 rows are both queries and database items "
                                           r"\(rows 0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\)"):
        check_split(np.arange(12), np.arange(30))
    with pytest.raises(DatasetError, match=r"2 training rows are not database rows \(rows 3, 4\)"):
        check_split(np.arange(3), np.arange(5, 10), np.array([3, 4, 6]))
    with pytest.raises(DatasetError, match=r"1 training rows are also queries \(rows 2\)"):
        check_split(np.arange(3), np.arange(5, 10), np.array([2, 6]), train_outside_database_ok=True)
    with pytest.raises(DatasetError, match=r"appear more than once in the training list \(rows 6\)"):
        check_split(np.arange(3), np.arange(5, 10), np.array([6, 6]))
    assert check_split(np.arange(3), np.arange(5, 10), np.array([4, 6]), train_outside_database_ok=True) == 1
    assert index_sha256([1, 2]) != index_sha256([2, 1])


def test_fingerprint_is_cached_and_changes_with_split_seed_and_factor(digits):
    split = make_long_tail(digits, 50, seed=0)
    first = split.fingerprint()
    assert len(first) == 64 and split.fingerprint() is first  # computed once per instance
    assert make_long_tail(digits, 50, seed=0).fingerprint() == first
    assert make_long_tail(digits, 50, seed=1).fingerprint() != first
    assert make_long_tail(digits, 100, seed=0).fingerprint() != first
    assert make_long_tail(load_dataset("digits", seed=1), 50, seed=0).fingerprint() != first  # other queries
    assert digits.fingerprint() != first  # no split: the whole database trains


def test_fingerprint_hashes_the_arrays_not_the_card(digits):
    split = make_long_tail(digits, 50)
    features = np.array(split.features)
    features[split.query_index[0], 3] += 0.5  # a query row changes
    changed = dataclasses.replace(split, features=features)
    assert changed.fingerprint() != split.fingerprint()
    same_values = dataclasses.replace(split, features=split.features.astype(np.float64))
    assert same_values.fingerprint() == split.fingerprint()  # methods see float32 either way


def test_rows_no_cell_uses_do_not_change_the_fingerprint():
    rng = np.random.default_rng(0)
    features = rng.random((40, 3), dtype=np.float32)
    labels = np.repeat(np.arange(2), 20)
    data = BenchmarkData("toy", features, labels, query_index=np.array([0, 20]),
                         database_index=np.concatenate([np.arange(1, 15), np.arange(21, 35)]))
    split = make_long_tail(data, 2)
    edited = features.copy()
    edited[[15, 39]] = 7  # rows in no list
    assert make_long_tail(dataclasses.replace(data, features=edited), 2).fingerprint() == split.fingerprint()
    edited[split.train[0]] = 7
    assert make_long_tail(dataclasses.replace(data, features=edited), 2).fingerprint() != split.fingerprint()


def test_splits_of_one_dataset_share_the_row_hash(digits, monkeypatch):
    from datasets import manifest

    calls = []
    original = manifest.rows_sha256
    monkeypatch.setattr(manifest, "rows_sha256", lambda *args: calls.append(1) or original(*args))
    data = load_dataset("digits")
    prints = {make_long_tail(data, factor).fingerprint() for factor in (1, 50, 100)}
    assert len(prints) == 3 and calls == [1]
