"""A user's features file (``features:PATH.npz``): every label set maps to 0..C-1 with its values as
class names, and every kind of bad input is one DatasetError that says what to change."""
from __future__ import annotations

import os
import time
import zipfile

import numpy as np
import pytest

from datasets import DatasetError, load_dataset, make_long_tail


def clusters(n_classes=3, per_class=20, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    return (rng.normal(0, 1, (n_classes, dim))[labels] + 0.1 * rng.normal(0, 1, (labels.size, dim))).astype(
        np.float32), labels


def write(path, **arrays):
    np.savez(path, **arrays)
    return f"features:{path}"


@pytest.mark.parametrize("values", [
    [0, 1000, 2000],  # sparse ids: once a bogus 'tail class empty' error
    [-5, -1, 3],  # negative ids
    [10**12, 10**12 + 1, 10**12 + 7],  # ids near 1e12: once a MemoryError
    ["dog", "ant", "cat"],  # strings
    [2.0, 7.0, 1.0],  # whole-number floats
])
def test_every_label_set_maps_to_0_to_c_minus_1_in_sorted_order(tmp_path, values):
    features, y = clusters()
    raw = np.asarray(values)[y]
    started = time.perf_counter()
    data = load_dataset(write(tmp_path / "f.npz", features=features, labels=raw))
    assert time.perf_counter() - started < 5  # no per-id allocation
    order = sorted(values)
    assert data.class_names == tuple(str(int(v)) if isinstance(v, float) else str(v) for v in order)
    np.testing.assert_array_equal(data.labels, [order.index(v) for v in raw])
    assert np.bincount(data.labels).tolist() == [20, 20, 20]
    split = make_long_tail(data, 2)  # the long-tail split and hence a table follow
    assert split.card["long_tail"]["n_max"] == 18 and split.card["long_tail"]["n_min"] == 9


def test_byte_string_labels_become_text_names(tmp_path):
    features, y = clusters()
    data = load_dataset(write(tmp_path / "f.npz", features=features, labels=np.asarray([b"b", b"a", b"c"])[y]))
    assert data.class_names == ("a", "b", "c")


def test_class_names_keep_labels_that_are_already_0_to_c_minus_1(tmp_path):
    features, y = clusters()
    data = load_dataset(write(tmp_path / "f.npz", features=features, labels=y, class_names=np.array(["z", "y", "x"])))
    assert data.class_names == ("z", "y", "x")
    np.testing.assert_array_equal(data.labels, y)


def test_a_file_of_random_bytes_is_not_an_npz(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DatasetError, match=r"is not an \.npz archive.*zip.*np\.savez"):
        load_dataset(f"features:{path}")


def test_a_single_npy_array_is_not_an_npz(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((3, 2)))
    with pytest.raises(DatasetError, match=r"single \.npy array"):
        load_dataset(f"features:{path}")


def test_a_truncated_zip_is_corrupt(tmp_path):
    features, y = clusters()
    path = tmp_path / "f.npz"
    write(path, features=features, labels=y)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"corrupt or truncated.*np\.savez"):
        load_dataset(f"features:{path}")


def test_a_damaged_member_is_corrupt(tmp_path):
    features, y = clusters()
    path = tmp_path / "f.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("features.npy", "w") as handle:
            np.save(handle, features)
        with archive.open("labels.npy", "w") as handle:
            np.save(handle, y)
    data = bytearray(path.read_bytes())
    data[200:260] = b"\x00" * 60  # inside the compressed features
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupt"):
        load_dataset(f"features:{path}")


def test_an_object_array_is_refused(tmp_path):
    features, y = clusters()
    path = tmp_path / "f.npz"
    np.savez(path, features=features, labels=np.asarray([str(v) for v in y], dtype=object))
    with pytest.raises(DatasetError, match=r"object array.*dtype=str"):
        load_dataset(f"features:{path}")


def test_a_missing_file_and_missing_keys(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"features:{tmp_path / 'absent.npz'}")
    with pytest.raises(DatasetError, match=r"lacks labels \(has: features\)"):
        load_dataset(write(tmp_path / "f.npz", features=clusters()[0]))


def bad_case(case, features, y):
    n = len(y)
    return {
        "1-D features": ({"features": features[:, 0], "labels": y}, r"non-empty numeric \(n, d\)"),
        "empty features": ({"features": np.zeros((0, 4), np.float32), "labels": y[:0]}, r"non-empty numeric"),
        "zero columns": ({"features": np.zeros((n, 0), np.float32), "labels": y}, r"non-empty numeric"),
        "string features": ({"features": np.full((n, 2), "a"), "labels": y}, r"non-empty numeric"),
        "NaN": ({"features": np.where(np.arange(n)[:, None] == 7, np.nan, features), "labels": y},
                r"1 feature rows contain NaN.*row 7"),
        "inf": ({"features": np.where(np.arange(n)[:, None] == 3, np.inf, features), "labels": y}, r"row 3"),
        "short labels": ({"features": features, "labels": y[:-1]}, r"labels have shape \(59,\).*60 rows"),
        "one-hot labels": ({"features": features, "labels": np.eye(3)[y]}, r"argmax"),
        "fractional labels": ({"features": features, "labels": y + 0.5}, r"not whole numbers"),
        "NaN labels": ({"features": features, "labels": np.where(np.arange(n) == 2, np.nan, y)}, r"row 2"),
        "complex labels": ({"features": features, "labels": y.astype(complex)}, r"integers or strings"),
        "labels beyond class_names": ({"features": features, "labels": y + 1, "class_names": np.array(["a", "b", "c"])},
                                      r"integers in 0\.\.2"),
        "string labels with class_names": ({"features": features, "labels": np.array(["a", "b", "c"])[y],
                                            "class_names": np.array(["a", "b", "c"])}, r"integers in 0\.\.2"),
        "unused class name": ({"features": features, "labels": y, "class_names": np.array(["a", "b", "c", "d"])},
                              r"have no row \(e\.g\. 'd'"),
        "repeated class name": ({"features": features, "labels": y, "class_names": np.array(["a", "b", "a"])},
                                r"repeats 'a'"),
        "2-D class_names": ({"features": features, "labels": y, "class_names": np.array([["a", "b", "c"]])},
                            r"1-D array of strings"),
        "query rows out of range": ({"features": features, "labels": y, "query_index": np.array([0, 60, -1])},
                                    r"2 rows outside 0\.\.59"),
        "repeated query rows": ({"features": features, "labels": y, "query_index": np.array([0, 1, 1])},
                                r"more than once \(e\.g\. 1\)"),
        "float query rows": ({"features": features, "labels": y, "query_index": np.array([0.0, 1.0])},
                             r"integer array of row numbers"),
        "empty query": ({"features": features, "labels": y, "query_index": np.array([], np.int64)},
                        r"non-empty 1-D integer"),
        "database without query": ({"features": features, "labels": y, "database_index": np.arange(10)},
                                   r"without query_index"),
        "empty database": ({"features": features, "labels": y, "query_index": np.arange(n)}, r"database is empty"),
        "class without database rows": ({"features": features, "labels": y, "query_index": np.arange(20)},
                                        r"no database row \(e\.g\. '0'\)"),
        "overlap": ({"features": features, "labels": y, "query_index": np.array([0, 1, 20, 40]),
                     "database_index": np.arange(1, 60)},
                    r"3 rows are both queries and database items \(rows 1, 20, 40\)"),
    }[case]


@pytest.mark.parametrize("case", [
    "1-D features", "empty features", "zero columns", "string features", "NaN", "inf", "short labels",
    "one-hot labels", "fractional labels", "NaN labels", "complex labels", "labels beyond class_names",
    "string labels with class_names", "unused class name", "repeated class name", "2-D class_names",
    "query rows out of range", "repeated query rows", "float query rows", "empty query",
    "database without query", "empty database", "class without database rows", "overlap",
])
def test_bad_input_is_one_clear_error(tmp_path, case):
    arrays, message = bad_case(case, *clusters())
    with pytest.raises(DatasetError, match=message):
        load_dataset(write(tmp_path / "bad.npz", **arrays))


def test_bad_split_options(tmp_path):
    name = write(tmp_path / "f.npz", features=clusters()[0], labels=clusters()[1])
    with pytest.raises(DatasetError, match=r"query_fraction must be a number in \(0, 1\)"):
        load_dataset(name, query_fraction=1.0)
    with pytest.raises(DatasetError, match="seed must be an integer >= 0"):
        load_dataset(name, seed=-1)


def test_singleton_classes_stay_in_the_database(tmp_path):
    features, y = clusters()
    labels = np.concatenate([y[:-1], [7]])  # class '7' has one row: it cannot also be a query
    data = load_dataset(write(tmp_path / "f.npz", features=features, labels=labels))
    singleton = data.class_names.index("7")
    assert singleton not in data.labels[data.query_index]
    assert (data.labels[data.database_index] == singleton).sum() == 1


def test_rewritten_contents_under_the_same_name_change_the_fingerprint(tmp_path):
    features, y = clusters()
    path = tmp_path / "mine.npz"
    name = write(path, features=features, labels=y)
    first = make_long_tail(load_dataset(name), 2, seed=0).fingerprint()
    assert make_long_tail(load_dataset(name), 2, seed=0).fingerprint() == first  # same contents, same print
    changed = features.copy()
    changed[5, 0] += 1e-3  # one value of one row
    write(path, features=changed, labels=y)
    assert make_long_tail(load_dataset(name), 2, seed=0).fingerprint() != first
    relabelled = y.copy()
    relabelled[[0, 25]] = relabelled[[25, 0]]  # two rows swap classes
    write(path, features=features, labels=relabelled)
    assert make_long_tail(load_dataset(name), 2, seed=0).fingerprint() != first
    write(path, features=features, labels=y)  # written again as at first
    assert make_long_tail(load_dataset(name), 2, seed=0).fingerprint() == first
    assert os.path.basename(path) == "mine.npz"
