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


@pytest.mark.parametrize("damage", ["truncated json", "empty json", "truncated npz", "not a zip"])
def test_a_broken_cell_is_set_aside_not_served(tmp_path, damage):
    """A record or arrays file that does not load is moved aside (never deleted), named, and its
    cell counts as not stored, so the next run recomputes it; the other cells stay served."""
    store = ResultStore(str(tmp_path))
    broken, intact = Cell("digits", 1.0, 16, "LSH"), Cell("digits", 1.0, 16, "ITQ")
    for cell in (broken, intact):
        store.write(cell, {"metrics": {"map_tie_aware": 0.5}}, {"x": np.arange(1000.0)})
    target = store.record_path(broken) if "json" in damage else store.arrays_path(broken)
    content = open(target, "rb").read()
    with open(target, "wb") as handle:
        handle.write({"truncated json": content[:20], "empty json": b"", "truncated npz": content[:-30],
                      "not a zip": b"not a zip"}[damage])
    assert [r["cell"]["method"] for r in store.records()] == ["ITQ"]
    assert not store.has(broken) and store.has(intact)
    assert not os.path.exists(store.record_path(broken)) and not os.path.exists(store.arrays_path(broken))
    moved = [path for path, _reason in store.set_aside]
    assert any(path.endswith(os.path.basename(target)) for path in moved)
    assert all(os.path.exists(path) and "set_aside" in path for path in moved)
    assert "not load" in store.set_aside[0][1]


def test_load_errors_name_the_file(tmp_path):
    store = ResultStore(str(tmp_path))
    cell = Cell("digits", 1.0, 16, "LSH")
    with pytest.raises(StoreError, match="cannot read result record"):
        store.load_record(cell)
    with pytest.raises(StoreError, match="cannot read result arrays"):
        store.load_arrays(cell)


def test_claims_split_the_work_and_stale_claims_do_not_block(tmp_path, monkeypatch):
    import benchmark.store as store_module

    store = ResultStore(str(tmp_path))
    cell = Cell("digits", 1.0, 16, "LSH")
    assert store.claim(cell)
    assert not store.claim(cell)  # held by a live process (this one)
    holder = store.claim_holder(cell)
    assert holder["pid"] == os.getpid() and not holder["stale"]
    store.release(cell)
    assert store.claim_holder(cell) is None
    # a claim left by a dead process on this host is taken over
    with open(store.claim_path(cell), "w") as handle:
        json.dump({"host": __import__("socket").gethostname(), "pid": 2 ** 22 + 12345, "started": 0}, handle)
    assert store.claim_holder(cell)["stale"]
    assert store.claim(cell)
    store.release(cell)
    # a claim of another host whose heartbeat stopped long ago is taken over too
    with open(store.claim_path(cell), "w") as handle:
        json.dump({"host": "elsewhere", "pid": 1, "started": 0}, handle)
    old = __import__("time").time() - store_module.CLAIM_STALE_SECONDS - 5
    os.utime(store.claim_path(cell), (old, old))
    assert store.claim(cell)
    # ... while a fresh one of another host is respected
    store.release(cell)
    with open(store.claim_path(cell), "w") as handle:
        json.dump({"host": "elsewhere", "pid": 1, "started": 0}, handle)
    assert not store.claim(cell)


def test_files_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        store = ResultStore(str(tmp_path))
        cell = Cell("digits", 1.0, 16, "LSH")
        store.write(cell, {}, {"x": np.zeros(2)})
        for path in (store.record_path(cell), store.arrays_path(cell)):
            assert os.stat(path).st_mode & 0o777 == 0o644
    finally:
        os.umask(previous)


def test_unwritable_folder_fails_before_training(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/self/no-such-store"  # root ignores permission bits: use a folder nobody can create
    else:
        os.chmod(tmp_path, 0o500)
        target = str(tmp_path / "store")
    with pytest.raises(StoreError, match="not writable"):
        ResultStore(target).check_writable()


def test_failed_write_leaves_no_record(tmp_path, monkeypatch):
    store = ResultStore(str(tmp_path))
    cell = Cell("digits", 1.0, 16, "LSH")
    with pytest.raises(TypeError):
        store.write(cell, {"bad": object.__new__(type("Unserialisable", (), {"__repr__": None}))}, {"a": np.zeros(1)})
    assert not os.path.exists(store.record_path(cell))
    assert json.loads  # the store is still readable
    assert list(store.records()) == []
