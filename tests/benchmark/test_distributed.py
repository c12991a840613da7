"""The grid on a Dask cluster (loopback only): same records as the serial run, re-runs skip finished
cells, a killed worker loses only its own cell, clear errors for bad or unreachable schedulers."""
import os
import socket
import time

import numpy as np
import pytest

from methods import registry
from benchmark.distributed import SchedulerError, dask_submit, parse_scheduler
from benchmark.specs import expand_method_specs
from benchmark.runner import plan_grid, run_grid
from benchmark.store import ResultStore
from methods.base import HashingMethod

METHODS = ["LSH", "PCAH", "ITQ"]
IFS, BITS = [1, 50], [8, 16]


class WorkerKiller(HashingMethod):
    """LSH-like plugin whose 16-bit cell kills the Dask worker process running it while the flag
    file exists. Outside a Dask worker it raises instead (it must never end the test process)."""

    family = "shallow"
    uses_labels = False
    kill_flag = ""  # set by the test; shipped with the class to the workers

    def __init__(self, n_bits: int = 64, random_state: int | None = 0):
        super().__init__(n_bits=n_bits, random_state=random_state)

    def _fit(self, X, y):
        if self.n_bits == 16 and os.path.exists(type(self).kill_flag):
            from distributed import get_worker

            get_worker()  # raises ValueError outside a Dask worker
            os._exit(13)
        self.mean_ = X.mean(axis=0)
        self.projection_ = self._rng().standard_normal((X.shape[1], self.n_bits))

    def _encode(self, X):
        return (X - self.mean_) @ self.projection_


@pytest.fixture(scope="module")
def digits():
    from datasets import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="module")
def serial_store(digits, tmp_path_factory):
    specs = expand_method_specs(METHODS)
    store = ResultStore(str(tmp_path_factory.mktemp("serial")))
    outcomes = run_grid(digits, plan_grid(digits, IFS, BITS, specs, [0]), specs, store, jobs=1, progress=False)
    assert [o.status for o in outcomes] == ["done"] * 12
    return store


@pytest.fixture(scope="module")
def local_submit():
    with dask_submit("local:2") as submit:
        yield submit


def _same_records(store, reference, cells):
    for cell in cells:
        ours, theirs = store.load_record(cell), reference.load_record(cell)
        assert ours["metrics"]["map_tie_aware"] == pytest.approx(theirs["metrics"]["map_tie_aware"], abs=1e-12)
        assert ours["metrics"]["map_index_order"] == pytest.approx(theirs["metrics"]["map_index_order"], abs=1e-12)
        a, b = store.load_arrays(cell), reference.load_arrays(cell)
        np.testing.assert_array_equal(a["query_codes"], b["query_codes"])
        np.testing.assert_array_equal(a["database_codes"], b["database_codes"])
        np.testing.assert_array_equal(a["ap_tie_aware"], b["ap_tie_aware"])


def test_local_cluster_writes_the_serial_records_and_rerun_skips(digits, serial_store, local_submit, tmp_path):
    specs = expand_method_specs(METHODS)
    plan = plan_grid(digits, IFS, BITS, specs, [0])
    store = ResultStore(str(tmp_path))
    outcomes = run_grid(digits, plan, specs, store, progress=False, submit=local_submit)
    assert sorted(o.status for o in outcomes) == ["done"] * 12
    assert sorted(o.cell for o in outcomes) == sorted(plan.cells)
    assert sorted(store.cells()) == sorted(plan.cells)
    _same_records(store, serial_store, plan.cells)
    # the records were written by the worker processes, not by this one
    assert {o.cell.method for o in outcomes} == set(METHODS)
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith(".dask-probe")]

    before = {c: os.path.getmtime(store.record_path(c)) for c in plan.cells}
    again = run_grid(digits, plan, specs, store, progress=False, submit=local_submit)
    assert [o.status for o in again] == ["skipped"] * 12
    assert {c: os.path.getmtime(store.record_path(c)) for c in plan.cells} == before


def test_killed_worker_loses_only_its_cell_and_rerun_finishes(digits, serial_store, local_submit, tmp_path,
                                                              monkeypatch):
    flag = tmp_path / "kill-16-bits"
    flag.write_text("kill")
    monkeypatch.setattr(WorkerKiller, "kill_flag", str(flag))
    monkeypatch.setattr(WorkerKiller, "name", "WorkerKiller", raising=False)
    monkeypatch.setitem(registry._REGISTRY, "WorkerKiller", WorkerKiller)  # a plugin, for this test only

    specs = expand_method_specs(["LSH", "ITQ", "WorkerKiller"])
    plan = plan_grid(digits, [50], BITS, specs, [0])
    store = ResultStore(str(tmp_path / "run"))
    outcomes = run_grid(digits, plan, specs, store, progress=False, submit=local_submit)
    by_status = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(outcome)
    assert sorted(by_status) == ["done", "failed"]
    (lost,) = by_status["failed"]
    assert (lost.cell.method, lost.cell.n_bits) == ("WorkerKiller", 16)
    assert "WorkerKiller on digits IF=50 16 bits seed 0 (features mode) failed" in lost.message
    assert "worker died" in lost.message and "KilledWorker" in lost.message
    assert len(by_status["done"]) == 5
    assert sorted(store.cells()) == sorted(c for c in plan.cells if c != lost.cell)
    _same_records(store, serial_store, [c for c in plan.cells if c.method != "WorkerKiller"])

    flag.unlink()  # the cause is gone: a re-run computes exactly the lost cell
    again = run_grid(digits, plan, specs, store, progress=False, submit=local_submit)
    assert sorted((o.status, o.cell.method, o.cell.n_bits) for o in again if o.status != "skipped") == [
        ("done", "WorkerKiller", 16)]
    assert sum(o.status == "skipped" for o in again) == 5
    assert sorted(store.cells()) == sorted(plan.cells)


def test_tcp_address_of_a_running_cluster(digits, serial_store, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        specs = expand_method_specs(["LSH", "ITQ"])
        plan = plan_grid(digits, [1], [16], specs, [0])
        store = ResultStore(str(tmp_path))
        with dask_submit(address) as submit:
            outcomes = run_grid(digits, plan, specs, store, progress=False, submit=submit)
        assert [o.status for o in outcomes] == ["done", "done"]
        _same_records(store, serial_store, plan.cells)
        with Client(address, set_as_default=False) as client:  # the cluster outlives our connection
            assert len(client.scheduler_info()["workers"]) == 1


def test_unreachable_scheduler_fails_fast_with_the_fix():
    with socket.socket() as probe:  # a free port on loopback, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    start = time.perf_counter()
    with pytest.raises(SchedulerError) as error:
        with dask_submit(address):
            pass
    assert time.perf_counter() - start < 3
    message = str(error.value)
    assert f"cannot reach the Dask scheduler at {address}" in message
    assert "dask scheduler" in message and "--scheduler local:N" in message


@pytest.mark.parametrize("text, expected", [
    ("local:0", "number of local workers must be a positive integer"),
    ("local:two", "number of local workers must be a positive integer"),
    ("tcp://127.0.0.1", "malformed scheduler 'tcp://127.0.0.1'"),
    ("tcp://127.0.0.1:70000", "port 70000 is out of range"),
    ("127.0.0.1:8786", "malformed scheduler '127.0.0.1:8786': use 'tcp://HOST:PORT'"),
    ("", "scheduler must be 'tcp://HOST:PORT'"),
])
def test_malformed_scheduler_is_a_clear_error(text, expected):
    with pytest.raises(SchedulerError, match="local:N") as error:
        with dask_submit(text):
            pass
    assert expected in str(error.value)


def test_parse_scheduler():
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.5:8786") == ("tcp", ("10.0.0.5", 8786))
    assert parse_scheduler(" tcp://[::1]:8786 ") == ("tcp", ("::1", 8786))


def test_store_root_unseen_by_a_worker_is_refused(tmp_path):
    from benchmark.distributed import _check_store_shared

    class OneBlindWorker:  # stands for a remote worker without the shared filesystem
        def run(self, function, root, probe):
            return {"tcp://10.0.0.7:4000": False, "tcp://127.0.0.1:4001": function(root, probe)}

    with pytest.raises(SchedulerError) as error:
        _check_store_shared(OneBlindWorker(), str(tmp_path))
    message = str(error.value)
    assert f"the result store {tmp_path} is not visible from Dask worker(s) tcp://10.0.0.7:4000" in message
    assert "127.0.0.1:4001" not in message and "shared by every worker" in message
    assert os.listdir(str(tmp_path)) == []  # the probe file is removed again
