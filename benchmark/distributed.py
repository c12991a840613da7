"""Run the benchmark grid on a Dask cluster (dask.distributed).

``dask_submit(scheduler)`` is a context manager yielding ``submit(fn, tasks)`` for
``benchmark.runner.run_grid(..., submit=submit)``:

- ``"tcp://host:port"`` connects to a running cluster (``dask scheduler`` plus ``dask worker``
  processes); the cluster is left running on exit.
- ``"local:N"`` starts a ``LocalCluster`` of N worker processes with one thread each, on
  loopback, dashboard disabled, and closes it on exit.

Each task is the runner's ``CellTask`` (cell, spec, store root, split data). The worker fits, evaluates and
writes its record into the result store itself (atomic writes), so records of all workers land in
the same store: the store root must be a path every worker sees (a shared filesystem for a remote
cluster; checked before any cell is sent). The data arrive already loaded (features from the
feature cache), so workers do not recompute features; each split's ``BenchmarkData`` is scattered
to the workers once instead of being pickled into every task.

Failures: a cell whose worker dies (``KilledWorker``, a closed connection) comes back as a
``failed`` outcome naming the cell and the cause, and the grid goes on; a re-run computes exactly
the missing cells (the store skips finished ones). If a dead worker held the last copy of a
scattered split, the split is scattered again and the affected cells are resubmitted. On a local
cluster each worker holds only the cell it runs (``worker-saturation`` 1.0) and a cell that kills
its worker is retried once (``allowed_failures``) before it is given up, so a worker death loses
at most that one cell. A remote cluster keeps its own scheduler settings.

Method classes that are not built into the package (``--plugin`` modules) are shipped to the
workers by value, so a user's plugin file need not be installed on them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import socket
import sys
import uuid
from concurrent.futures import CancelledError
from typing import Callable, Iterator, Sequence

from common.errors import BenchmarkError

from .specs import plugin_classes, register_shipped, ship_classes

SCHEDULER_FORMS = "'tcp://HOST:PORT' (a running `dask scheduler`) or 'local:N' (start N local worker processes)"
logger = logging.getLogger(__name__)

LOCAL_ALLOWED_FAILURES = 1  # one retry for a cell whose worker died, then the cell is reported failed
MAX_RESUBMITS = 2  # resubmissions of a cell whose scattered input was lost with its worker


class SchedulerError(BenchmarkError, ValueError, RuntimeError):
    """A scheduler address that is malformed or cannot be reached, or a cluster that cannot serve
    the grid; the message names the problem and the fix. (A ValueError: a bad --scheduler value.)"""


# ---------------------------------------------------------------------------- parsing


def parse_scheduler(scheduler: str) -> tuple[str, object]:
    """``("local", n_workers)`` or ``("tcp", (host, port))``; a clear error for anything else."""
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise SchedulerError(f"scheduler must be {SCHEDULER_FORMS}; got {scheduler!r}.")
    text = scheduler.strip()
    local = re.fullmatch(r"local:(\S*)", text)
    if local:
        count = local.group(1)
        if not count.isdigit() or int(count) < 1:
            raise SchedulerError(
                f"scheduler {scheduler!r}: the number of local workers must be a positive integer; "
                f"use {SCHEDULER_FORMS}.")
        return "local", int(count)
    tcp = re.fullmatch(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)/?", text)
    if tcp:
        host, port = tcp.group(1).strip("[]"), int(tcp.group(2))
        if not 0 < port < 65536:
            raise SchedulerError(f"scheduler {scheduler!r}: port {port} is out of range (1-65535); "
                                 f"use {SCHEDULER_FORMS}.")
        return "tcp", (host, port)
    raise SchedulerError(f"malformed scheduler {scheduler!r}: use {SCHEDULER_FORMS}.")


def _check_reachable(address: str, host: str, port: int, timeout: float) -> None:
    """Fail fast (refused at once, unreachable within ``timeout``) with the address and the fix."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {address} ({error.strerror or error}). Start one there "
            f"(`dask scheduler --port {port}`, then `dask worker {address}` on each machine), "
            "or use --scheduler local:N to start N workers on this machine."
        ) from error


# ---------------------------------------------------------------------------- worker side


def _call(fn: Callable, args: tuple, shipped: bytes | None):
    if shipped:
        register_shipped(shipped)
    return fn(*args)


def _with_data(fn: Callable, task, data):
    """On the worker: the runner task with its (scattered) split data put back."""
    return fn(dataclasses.replace(task, data=data))


def _store_visible(root: str, probe: str) -> bool:
    return os.path.isfile(os.path.join(root, probe))


# ---------------------------------------------------------------------------- client side


def _failed(cell, why: str):
    from .runner import CellOutcome

    return CellOutcome(cell, "failed", f"{cell.describe()} failed: {why}")


def _check_store_shared(client, store_root: str) -> None:
    """Every worker must see the store root, or its records would land out of sight."""
    os.makedirs(store_root, exist_ok=True)
    probe = f".dask-probe-{uuid.uuid4().hex}"
    path = os.path.join(store_root, probe)
    with open(path, "w") as handle:
        handle.write("probe")
    try:
        seen = client.run(_store_visible, store_root, probe)
    finally:
        os.unlink(path)
    blind = sorted(worker for worker, ok in seen.items() if not ok)
    if blind:
        raise SchedulerError(
            f"the result store {store_root} is not visible from Dask worker(s) {', '.join(blind)}; "
            "records written there would be lost. Use a --results-dir on a filesystem shared by "
            "every worker (same path), or --scheduler local:N.")


def _runner_task(task):
    """The CellTask of a runner task (a 1-tuple holding it), else None (a generic call)."""
    from .runner import CellTask

    return task[0] if len(task) == 1 and isinstance(task[0], CellTask) else None


def _death_cause(error: BaseException) -> str:
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    if isinstance(error, KilledWorker):
        return (f"its Dask worker died while running it (KilledWorker: {error}); "
                "a re-run computes the missing cells")
    if isinstance(error, (CommClosedError, OSError)):
        return (f"the connection to its Dask worker or scheduler closed ({type(error).__name__}: {error}); "
                "a re-run computes the missing cells")
    return f"{type(error).__name__}: {error}"


WORKER_PRELOAD = ("benchmark.runner", "methods")  # imported once in the fork server, not per worker
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _start_fork_server() -> None:
    """Local workers fork from one server process that has already imported the benchmark and
    every method (torch included), so starting or restarting a worker costs a fork, not seconds
    of imports. The server starts with one BLAS/OpenMP thread, as single-threaded workers should
    (the variables Dask's nanny would set before a spawn)."""
    from multiprocessing import forkserver

    from distributed.utils import get_mp_context

    context = get_mp_context()  # sets distributed's own preload list once per process
    preload = list(getattr(forkserver._forkserver, "_preload_modules", []) or [])
    context.set_forkserver_preload(preload + [m for m in WORKER_PRELOAD if m not in preload])
    saved = {name: os.environ.get(name) for name in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        forkserver.ensure_running()  # no-op when this process's fork server already runs
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _make_submit(client) -> Callable:
    def submit(fn: Callable, tasks: Sequence[tuple]) -> Iterator:
        tasks = [tuple(task) for task in tasks]
        if not tasks:
            return iter(())
        runner_tasks = all(_runner_task(task) is not None for task in tasks)
        if runner_tasks:
            cell_tasks = [task[0] for task in tasks]
            for root in sorted({task.store_root for task in cell_tasks}):
                _check_store_shared(client, root)
            classes = plugin_classes({task.spec.key: task.spec for task in cell_tasks}.values())
            shipped = ship_classes(classes) if classes else None
        else:
            shipped = None
        return _run(client, fn, tasks, shipped, runner_tasks)

    return submit


def _run(client, fn, tasks, shipped, runner_tasks) -> Iterator:
    from distributed import as_completed

    scattered: dict[int, object] = {}  # id(split data) -> its Future on the cluster

    def data_future(index):
        data = tasks[index][0].data
        future = scattered.get(id(data))
        if future is None or future.status != "finished":
            # one copy per worker, sent once; hash=False: a fresh key even for equal data
            future = client.scatter(data, broadcast=True, hash=False)
            scattered[id(data)] = future
        return future

    def send(index):
        task = tasks[index]
        if runner_tasks:  # the split travels as a scattered future beside the task
            call, args = _with_data, (fn, dataclasses.replace(task[0], data=None), data_future(index))
        else:
            call, args = fn, task
        return client.submit(_call, call, args, shipped, pure=False, key=f"cell-{index}-{uuid.uuid4().hex[:8]}")

    futures = {}
    for index in range(len(tasks)):
        futures[send(index)] = index
    resubmits = [0] * len(tasks)
    pending = as_completed(list(futures), loop=client.loop)
    try:
        for future in pending:
            index = futures.pop(future)
            try:
                result = future.result()
            except CancelledError as error:
                # its scattered input was lost with a dead worker: scatter again and resubmit
                if runner_tasks and resubmits[index] < MAX_RESUBMITS:
                    resubmits[index] += 1
                    logger.warning("resubmitting %s: %s", tasks[index][0].cell.describe(), error)
                    retry = send(index)
                    futures[retry] = index
                    pending.add(retry)
                    continue
                if not runner_tasks:
                    raise
                result = _failed(tasks[index][0].cell, f"cancelled on the Dask cluster ({error}); "
                                                  "a re-run computes the missing cells")
            except Exception as error:  # noqa: BLE001 - a worker's death must not end the grid
                if not runner_tasks:
                    raise
                result = _failed(tasks[index][0].cell, _death_cause(error))
            finally:
                future.release()
            yield result
    finally:
        for future in list(futures):
            future.cancel()
        for future in scattered.values():
            future.release()


@contextlib.contextmanager
def dask_submit(scheduler: str, *, connect_timeout: float = 5.0, memory_limit="auto"):
    """Yield ``submit(fn, tasks)`` running ``fn(*task)`` on a Dask cluster, results in completion order.

    ``scheduler``: ``"tcp://host:port"`` (a running cluster; an unreachable address fails within
    ``connect_timeout`` seconds) or ``"local:N"`` (a LocalCluster of N single-threaded worker
    processes on 127.0.0.1, no dashboard, closed on exit).
    """
    kind, target = parse_scheduler(scheduler)
    if kind == "tcp":
        host, port = target
        address = f"tcp://{scheduler.strip()[len('tcp://'):].rstrip('/')}"
        _check_reachable(address, host, port, connect_timeout)  # before the slow imports below
    import dask
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if kind == "tcp":
            try:
                client = Client(address, timeout=connect_timeout, set_as_default=False)
            except Exception as error:  # refused handshake, timeout, or not a Dask scheduler at all
                raise SchedulerError(
                    f"cannot connect to a Dask scheduler at {address}: something answers there, but the "
                    f"Dask handshake failed ({type(error).__name__}: {error}). Check that `dask scheduler` "
                    "runs at that address, or use --scheduler local:N.") from error
        else:
            # Each worker holds only the cell it runs (saturation 1.0), so a dying worker takes no
            # other cell with it; workers, restarted ones included, fork from a preloaded server
            # (the setting stays for the cluster's life: the nanny reads it at every restart).
            stack.enter_context(dask.config.set({"distributed.scheduler.worker-saturation": 1.0,
                                                 "distributed.worker.multiprocessing-method": "forkserver"}))
            _start_fork_server()
            cluster = LocalCluster(
                n_workers=target, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, memory_limit=memory_limit,
                # no dashboard; the scheduler's health/metrics endpoint on a free loopback port
                scheduler_kwargs={"allowed_failures": LOCAL_ALLOWED_FAILURES, "dashboard": False,
                                  "dashboard_address": "127.0.0.1:0"})
            stack.callback(cluster.close)
            client = Client(cluster, set_as_default=False)
        stack.callback(client.close)
        yield _make_submit(client)
