"""Result store: atomic records, round trip, clear errors on corrupt files."""
import json
import os

import numpy as np
import pytest

from benchmark.store import Cell, ResultStore, StoreError


def test_round_trip_and_listing(tmp_path):
    store = ResultStore(str(tmp_path))
    cell = Cell("digits", 50.0, 32, "LTHNet(k=3)", 1, "features", 0)
    assert not store.has(cell)
    store.write(cell, {"metrics": {"map_tie_aware": 0.5}}, {"ap_tie_aware": np.array([0.5, 0.25])})
    assert store.has(cell)
    record = store.load_record(cell)
    assert record["metrics"]["map_tie_aware"] == 0.5
    assert Cell.from_dict(record["cell"]) == cell
    np.testing.assert_array_equal(store.load_arrays(cell)["ap_tie_aware"], [0.5, 0.25])
    assert store.cells() == [cell]
    assert store.cells(dataset="other") == []
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if f.startswith(".tmp-")]
    assert leftovers == []


def test_distinct_cells_get_distinct_files(tmp_path):
    store = ResultStore(str(tmp_path))
    a = Cell("digits", 1.0, 32, "ITQ", 0)
    b = Cell("digits", 1.0, 32, "ITQ", 0, split_seed=1)
    assert store.record_path(a) != store.record_path(b)


def test_corrupt_record_names_the_file(tmp_path):
    store = ResultStore(str(tmp_path))
    cell = Cell("digits", 1.0, 16, "LSH")
    store.write(cell, {}, {"x": np.zeros(2)})
    with open(store.record_path(cell), "w") as handle:
        handle.write("{ truncated")
    with pytest.raises(StoreError, match="delete it and re-run"):
        list(store.records())
    with open(store.arrays_path(cell), "wb") as handle:
        handle.write(b"not a zip")
    with pytest.raises(StoreError, match="cannot read result arrays"):
        store.load_arrays(cell)


def test_failed_write_leaves_no_record(tmp_path, monkeypatch):
    store = ResultStore(str(tmp_path))
    cell = Cell("digits", 1.0, 16, "LSH")
    with pytest.raises(TypeError):
        store.write(cell, {"bad": object.__new__(type("Unserialisable", (), {"__repr__": None}))}, {"a": np.zeros(1)})
    assert not os.path.exists(store.record_path(cell))
    assert json.loads  # the store is still readable
    assert list(store.records()) == []
