"""The benchmark runner: a grid of cells (dataset x IF x bits x method x seed), each fitted on its
long-tail training split, encoded, evaluated and written to the result store.

``plan_grid`` draws every long-tail split once and names every cell (with the fingerprint of the
data it uses); ``run_grid`` skips cells already stored, claims each cell before computing it (so
concurrent runs share the work) and runs the rest in worker processes (``jobs``) or on a
distributed backend (``submit``); a failing cell is reported by name and writes nothing.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import multiprocessing
import os
import pickle
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

import common
from common.errors import BenchmarkError
from common.modes import MODES
from datasets import BenchmarkData, make_long_tail

from .metrics import evaluate_packed, metric_card, pack_codes
from .specs import MethodSpec, plugin_classes, register_shipped, ship_classes
from .store import Cell, ResultStore

__all__ = ["MODES", "CellTask", "CellOutcome", "GridPlan", "plan_grid", "run_grid", "run_cell",
           "recompute_metrics", "class_groups", "default_jobs"]


class CellError(BenchmarkError, RuntimeError):
    """A cell that could not be computed; names the cell and the cause."""


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "done", "skipped" (already in store), "claimed" (another run computes it), "unsupported", "failed"
    message: str = ""
    seconds: float = 0.0


@dataclass
class GridPlan:
    """The cells of a grid, the cells a method cannot produce, and each long-tail split, drawn once."""

    cells: list[Cell] = field(default_factory=list)
    unsupported: list[tuple[Cell, str]] = field(default_factory=list)
    splits: dict[tuple[float, int], BenchmarkData] = field(default_factory=dict)

    def split_of(self, cell: Cell) -> BenchmarkData:
        return self.splits[(cell.imbalance_factor, cell.split_seed)]

    @property
    def fingerprints(self) -> list[str]:
        return sorted({data_fingerprint(split) for split in self.splits.values()})


@dataclass
class CellTask:
    """One cell to compute: what a worker (a local process or a Dask worker) receives."""

    cell: Cell
    spec: MethodSpec
    store_root: str
    data: BenchmarkData  # the cell's long-tail split, or a _SharedSplit reference for local workers
    threads: int | None = None  # BLAS/torch threads for this cell (None: leave as they are)
    force: bool = False  # recompute even if stored (the new record replaces the old one atomically)
    run_id: str = ""  # the run_grid call this task belongs to (recorded; tells its own earlier attempts apart)

    def split(self) -> BenchmarkData:
        return self.data.load() if isinstance(self.data, _SharedSplit) else self.data


# ---------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """Versions of what this process actually runs: the modules as imported (``torch.__version__``
    ...), not the installed package metadata, plus the project's version and git commit."""
    versions = {"python": platform.python_version(), "longtail-hashing-benchmark": common.__version__}
    for module_name, label in (("numpy", "numpy"), ("scipy", "scipy"), ("sklearn", "scikit-learn"),
                               ("torch", "torch"), ("torchvision", "torchvision"), ("numba", "numba")):
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, "__version__", None):
            versions[label] = str(module.__version__)
    commit = _git_commit()
    if commit:
        versions["git_commit"] = commit
    return versions


def class_groups(train_class_sizes: np.ndarray) -> dict[str, np.ndarray]:
    """Head / medium / tail classes: thirds of the classes ranked by training-set size.

    Ranking is by size, largest first, ties by class index (the split's own rank order), so the
    groups are the Zipf ranks 1..C/3, C/3..2C/3 and the rest. At IF = 1 all classes are equally
    large and the groups are simply the class-index thirds.
    """
    n_classes = train_class_sizes.size
    order = np.lexsort((np.arange(n_classes), -train_class_sizes))
    bounds = np.linspace(0, n_classes, 4).round().astype(int)
    return {name: np.sort(order[bounds[i]:bounds[i + 1]]) for i, name in enumerate(("head", "medium", "tail"))}


def group_map(ap: np.ndarray, query_labels: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name, classes in groups.items():
        mask = np.isin(query_labels, classes)
        out[name] = float(ap[mask].mean()) if mask.any() else float("nan")
    return out


def cell_mode(spec: MethodSpec, mode: str) -> str:
    """Deep methods run in the requested mode; shallow methods always hash frozen features."""
    return mode if spec.method_class().family == "deep" else "features"


def data_fingerprint(split: BenchmarkData) -> str:
    """The fingerprint of the data a cell trains and evaluates on (see BenchmarkData.fingerprint)."""
    return split.fingerprint()


def default_jobs() -> int:
    """Cells run in parallel by default: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_grid(
    data: BenchmarkData, imbalance_factors: Sequence[float], bits: Sequence[int], specs: Sequence[MethodSpec],
    seeds: Sequence[int], mode: str = "features", split_seed: int = 0,
) -> GridPlan:
    """Every cell of the grid, and those a method cannot produce (e.g. PCA bits > feature dimension).

    Draws each long-tail split once (a DatasetError here, before any training, when the dataset
    cannot supply one) and puts its data fingerprint into every cell's identity.
    """
    if mode not in MODES:
        raise CellError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    for n_bits in bits:
        common.check_positive_int(n_bits, "bit lengths", hint="e.g. --bits 32 64 96")
    plan = GridPlan()
    for factor in imbalance_factors:
        split = make_long_tail(data, float(factor), seed=split_seed)
        plan.splits[(float(factor), int(split_seed))] = split
        fingerprint = data_fingerprint(split)
        for n_bits in bits:
            for spec in specs:
                limit = spec.method_class().max_bits_for(data.n_features, len(split.train))
                for seed in seeds:
                    cell = Cell(data.name, float(factor), int(n_bits), spec.key, int(seed),
                                cell_mode(spec, mode), int(split_seed), fingerprint)
                    if limit is not None and n_bits > limit:
                        plan.unsupported.append(
                            (cell, f"{spec.display} cannot give {n_bits} bits from {data.n_features}-d features "
                                   f"(at most {limit})"))
                    else:
                        plan.cells.append(cell)
    return plan


# ---------------------------------------------------------------------------- one cell


def _inputs(data: BenchmarkData, index: np.ndarray, mode: str, training: bool = False):
    """The rows a method sees: features, or in finetune mode images (training images with the
    dataset's training augmentation, if it declares one)."""
    if mode == "finetune":
        if getattr(data, "image_source", None) is None:
            raise CellError(
                f"finetune mode needs images, but dataset {data.name!r} provides only features; "
                "use --mode features or an image dataset (cifar100, imagenet100, lthnet-folder)."
            )
        source = data.image_source.subset(index)
        if training and data.training_transform is not None:
            source = source.with_transform(data.training_transform)
        return source
    return np.asarray(data.features[index], dtype=np.float32)


def evaluate_codes(packed_query, packed_database, n_bits, query_labels, database_labels, train_class_sizes):
    """Metrics (dict), PR curve and per-query arrays of one cell's packed codes; shared by runs and
    recomputation."""
    result = evaluate_packed(packed_query, packed_database, query_labels, database_labels, n_bits=n_bits)
    groups = class_groups(train_class_sizes)
    metrics = {
        "map_tie_aware": float(result.map_tie_aware),
        "map_index_order": float(result.map_index_order),
        "precision_at_k": {str(k): v for k, v in result.precision_at_k.items()},
        "n_queries_without_relevant": int(result.n_queries_without_relevant),
        "group_map_tie_aware": group_map(result.ap_tie_aware, query_labels, groups),
        "group_map_index_order": group_map(result.ap_index_order, query_labels, groups),
        "groups": {name: classes.tolist() for name, classes in groups.items()},
        # mAP@all/@1000/@5000 under both AP@k normalisations and tie policies, radius-2 precision
        # (docs/metrics.md): lines our numbers up with other codebases' conventions
        "card": metric_card(packed_query, packed_database, query_labels, database_labels, n_bits=n_bits),
    }
    pr = {k: np.asarray(v).tolist() for k, v in (result.pr_curve or {}).items()}
    arrays = {
        "ap_tie_aware": np.asarray(result.ap_tie_aware, dtype=np.float64),
        "ap_index_order": np.asarray(result.ap_index_order, dtype=np.float64),
    }
    return metrics, pr, arrays


def _failure_detail(error: BaseException, method) -> str:
    """The error as one line, plus where in the method's own module it was raised (a plugin's file
    and line) when the traceback passes through it."""
    if isinstance(error, MemoryError):
        detail = ("MemoryError: ran out of memory; the data or the method's parameters are too large for "
                  "this machine (fewer bits / anchors / a smaller batch, or a machine with more memory)")
    else:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    try:
        source = os.path.abspath(inspect.getsourcefile(type(method)) or "")
    except TypeError:
        source = ""
    if source and not source.startswith(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))):
        frames = [frame for frame in traceback.extract_tb(error.__traceback__)
                  if os.path.abspath(frame.filename) == source]
        if frames:
            detail += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return detail


@contextlib.contextmanager
def _thread_limit(threads: int | None):
    """BLAS/OpenMP and torch intra-op threads for the duration of a cell (restored afterwards)."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=int(threads)):
        if torch is not None:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous)


def _build_method(spec: MethodSpec, cell: Cell, data: BenchmarkData):
    """The cell's method: its spec with the cell's bits and seed; deep methods also get the cell's
    mode and the dataset they train on (the paper's per-dataset batch sizes in settings="paper").
    Neither changes the spec key: the mode is in the cell, the dataset too."""
    method = spec.build(n_bits=cell.n_bits, random_state=cell.seed)
    params = method.get_params()
    if "mode" in params:
        method.set_params(mode=cell.mode)
    if "dataset" in params and params["dataset"] is None:
        method.set_params(dataset=data.name)
    return method


def _query_map_diagnostic(data: BenchmarkData, cell: Cell) -> Callable:
    """``diagnostic(encode) -> query MAP`` of the network as it is mid-training (tie-aware), for the
    deep trainer's per-epoch diagnostic. Recorded beside the final-epoch result, never used to
    select anything: it shows how much a best-epoch-on-query selection would have inflated MAP."""
    query = _inputs(data, data.query_index, cell.mode)
    database = _inputs(data, data.database_index, cell.mode)
    query_labels = data.labels[data.query_index]
    database_labels = data.labels[data.database_index]

    def diagnostic(encode) -> float:
        result = evaluate_packed(pack_codes(encode(query)), pack_codes(encode(database)), query_labels,
                                 database_labels, n_bits=cell.n_bits, precision_ks=(), pr_curve=False)
        return float(result.map_tie_aware)

    return diagnostic


def run_cell(task: CellTask, progress: Callable | None = None) -> CellOutcome:
    """Fit, encode, evaluate and store one cell, unless it is stored already or another live run
    has claimed it. ``progress(cell, text)`` (optional) hears per-epoch progress of deep methods."""
    cell, spec = task.cell, task.spec
    store = ResultStore(task.store_root)
    start = time.perf_counter()
    if not task.force and store.has(cell):
        if task.run_id and store.load_record(cell).get("run_id") == task.run_id:
            return CellOutcome(cell, "done", "computed by an earlier attempt of this run")
        return CellOutcome(cell, "skipped", "stored meanwhile by another run")
    if not store.claim(cell):
        holder = store.claim_holder(cell) or {}
        return CellOutcome(cell, "claimed", f"{cell.describe()}: being computed by another run "
                                            f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')})")
    method = None
    try:
        with store.heartbeat(cell), _thread_limit(task.threads):
            data = task.split()
            method = _build_method(spec, cell, data)
            if progress is not None and hasattr(method, "progress_callback_"):
                method.progress_callback_ = lambda text: progress(cell, text)
            if hasattr(method, "diagnostic_callback_"):  # the protocol-inflation diagnostic (never selects)
                method.diagnostic_callback_ = _query_map_diagnostic(data, cell)
            train = data.train
            X_train, y_train = _inputs(data, train, cell.mode, training=True), data.labels[train]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                method.fit(X_train, y_train)
                fit_seconds = time.perf_counter() - t0
                diagnostic_seconds = float((getattr(method, "training_log_", None) or {}).get("diagnostic_seconds", 0.0))
                t0 = time.perf_counter()
                packed_query = pack_codes(method.encode(_inputs(data, data.query_index, cell.mode)))
                packed_database = pack_codes(method.encode(_inputs(data, data.database_index, cell.mode)))
                encode_seconds = time.perf_counter() - t0
            query_labels = data.labels[data.query_index]
            database_labels = data.labels[data.database_index]
            t0 = time.perf_counter()
            train_sizes = data.train_class_sizes()
            metrics, pr_curve, arrays = evaluate_codes(packed_query, packed_database, cell.n_bits, query_labels,
                                                       database_labels, train_sizes)
            evaluate_seconds = time.perf_counter() - t0
            if not np.isfinite(metrics["map_tie_aware"]):
                raise CellError("the evaluation produced a non-finite MAP")
            record = {
                "method": {"name": spec.name, "key": spec.key, "display": spec.display, "family": method.family,
                           "uses_labels": method.uses_labels, "params": dict(method.get_params()),
                           "settings": getattr(method, "settings_", None)},  # resolved optimisation settings (deep)
                "metrics": metrics,
                "pr_curve": pr_curve,
                # fit_seconds excludes the per-epoch query-MAP diagnostic, timed apart
                "timings": {"fit_seconds": fit_seconds - diagnostic_seconds, "encode_seconds": encode_seconds,
                            "evaluate_seconds": evaluate_seconds, "diagnostic_seconds": diagnostic_seconds},
                "threads": {"requested": task.threads, "torch": _torch_threads()},
                "training_log": getattr(method, "training_log_", None),
                "warnings": sorted({str(w.message) for w in caught}),
                "dataset": {"name": data.name, "card": data.card, "n_query": int(len(data.query_index)),
                            "n_database": int(len(data.database_index)), "n_train": int(len(train)),
                            "n_classes": int(data.n_classes), "n_features": int(data.n_features),
                            "train_class_sizes": train_sizes.tolist(), "default_bits": list(data.default_bits)},
                "versions": library_versions(),
                "run_id": task.run_id,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            arrays.update({
                "query_codes": packed_query, "database_codes": packed_database,
                "query_labels": query_labels.astype(np.int32), "database_labels": database_labels.astype(np.int32),
                "train_class_sizes": train_sizes.astype(np.int64),
            })
            store.write(cell, record, arrays)
    except Exception as error:  # one cell's failure must name the cell and write nothing
        return CellOutcome(cell, "failed", f"{cell.describe()} failed: {_failure_detail(error, method)}",
                           time.perf_counter() - start)
    finally:
        store.release(cell)
    return CellOutcome(cell, "done", "", time.perf_counter() - start)


def _torch_threads():
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


# ---------------------------------------------------------------------------- local worker processes


@dataclass
class _SharedSplit:
    """A long-tail split sent to local workers by reference: the dataset is written once to a
    temporary folder (features as a memory-mappable .npy) and every task carries only its split's
    training rows and card."""

    folder: str
    train_index: np.ndarray
    card: dict

    def load(self) -> BenchmarkData:
        import dataclasses

        return dataclasses.replace(_load_shared_dataset(self.folder), train_index=self.train_index, card=self.card)


@functools.lru_cache(maxsize=4)
def _load_shared_dataset(folder: str) -> BenchmarkData:
    with open(os.path.join(folder, "dataset.pickle"), "rb") as handle:
        fields = pickle.load(handle)
    return BenchmarkData(features=np.load(os.path.join(folder, "features.npy"), mmap_mode="r"), **fields)


def _share_dataset(data: BenchmarkData, folder: str) -> None:
    import dataclasses

    np.save(os.path.join(folder, "features.npy"), np.asarray(data.features))
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data) if f.init and f.name != "features"}
    fields["train_index"] = None
    with open(os.path.join(folder, "dataset.pickle"), "wb") as handle:
        pickle.dump(fields, handle)


_PROGRESS_QUEUE = None


def _worker_init(progress_queue, shipped: bytes | None, parent_pid: int) -> None:
    """In each local worker: end when the process that started the grid ends (a watchdog thread;
    workers are forked by a fork server, so their OS parent is not that process), register the
    run's plugin classes, and report progress through ``progress_queue``."""
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue
    register_shipped(shipped)

    def watchdog():
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watchdog, daemon=True, name="parent-watchdog").start()
    _die_with_os_parent()


def _die_with_os_parent() -> None:
    """Linux: ask the kernel to SIGKILL this worker when its OS parent (the fork server, which exits
    when the grid's process does) ends -- immediate even while a C call (numba compiling a kernel)
    holds the GIL and the watchdog thread cannot run. Best effort elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the parent ended before the call
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _report_progress(cell: Cell, text: str) -> None:
    if _PROGRESS_QUEUE is not None:
        with contextlib.suppress(Exception):
            _PROGRESS_QUEUE.put_nowait((cell.key, text))


def _run_in_worker(task: CellTask) -> CellOutcome:
    _report_progress(task.cell, "started")
    return run_cell(task, progress=_report_progress)


def _local_pool_results(tasks: list[CellTask], jobs: int, on_progress: Callable) -> Iterator[CellOutcome]:
    """Run tasks in ``jobs`` worker processes (forkserver: a fork of a clean process, never of this
    one with its threads); workers end with this process."""
    context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                          else "spawn")
    manager_queue = context.Queue()
    stop = threading.Event()

    def pump():
        while not stop.is_set():
            try:
                key, text = manager_queue.get(timeout=0.2)
            except (queue.Empty, OSError, EOFError):
                continue
            on_progress(key, text)

    listener = threading.Thread(target=pump, daemon=True)
    listener.start()
    try:
        classes = plugin_classes({task.spec.key: task.spec for task in tasks}.values())
        shipped = ship_classes(classes) if classes else None
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init,
                                 initargs=(manager_queue, shipped, os.getpid())) as pool:
            futures = {pool.submit(_run_in_worker, task): task for task in tasks}
            try:
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        yield future.result()
                    except Exception as error:  # a worker process that died (killed, out of memory)
                        yield CellOutcome(task.cell, "failed", f"{task.cell.describe()} failed: its worker "
                                          f"process died ({type(error).__name__}: {error}); a re-run computes it")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        stop.set()
        listener.join(timeout=1.0)


# ---------------------------------------------------------------------------- the grid


class _Progress:
    """A tqdm bar over the cells whose postfix names the cells running now (and their epoch)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="cells", unit="cell", disable=not enabled)
        self.running: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.lock = threading.Lock()

    def name(self, cell: Cell) -> None:
        self.names[cell.key] = f"{cell.method} IF={cell.imbalance_factor:g} {cell.n_bits}b"

    def update(self, key: str, text: str) -> None:
        with self.lock:
            self.running[key] = text
            self._show()

    def finished(self, outcome: CellOutcome) -> None:
        with self.lock:
            self.running.pop(outcome.cell.key, None)
            self.bar.update(1)
            self._show()
            if outcome.status == "failed":
                self.bar.write(outcome.message)

    def _show(self) -> None:
        parts = [f"{self.names.get(key, key)}" + ("" if text == "started" else f" {text}")
                 for key, text in self.running.items()]
        self.bar.set_postfix_str(("running: " + "; ".join(parts)) if parts else "")

    def close(self) -> None:
        self.bar.close()


def run_grid(
    data: BenchmarkData, plan: GridPlan, specs: Iterable[MethodSpec], store: ResultStore, *,
    force: bool = False, jobs: int = 1, threads: int | None = None, progress: bool = True,
    submit: Callable | None = None,
) -> list[CellOutcome]:
    """Run every planned cell not yet in the store.

    ``jobs`` worker processes (1: in this process); ``threads`` BLAS/torch threads per cell (None:
    the cores divided among the jobs, at least 1 -- jobs x threads never exceeds the cores). Threads
    never change a cell's identity. ``submit`` lets a distributed backend take the cells (see
    benchmark.distributed). ``force`` recomputes stored cells.
    """
    spec_by_key = {spec.key: spec for spec in specs}
    if not plan.splits:  # a plan made elsewhere: draw its splits now, once each
        for cell in plan.cells:
            key = (cell.imbalance_factor, cell.split_seed)
            if key not in plan.splits:
                plan.splits[key] = make_long_tail(data, cell.imbalance_factor, seed=cell.split_seed)
    outcomes = []
    todo = []
    for cell in plan.cells:
        if not force and store.has(cell):
            outcomes.append(CellOutcome(cell, "skipped", "already in the result store"))
        else:
            todo.append(cell)
    outcomes += [CellOutcome(c, "unsupported", why) for c, why in plan.unsupported]
    if not todo:
        return outcomes
    jobs = max(1, min(int(jobs), len(todo)))
    if threads is None:
        threads = max(1, default_jobs() // jobs)
    run_id = uuid.uuid4().hex
    bar = _Progress(len(todo), progress)
    for cell in todo:
        bar.name(cell)
    with contextlib.ExitStack() as stack:
        if submit is not None:
            tasks = [CellTask(cell, spec_by_key[cell.method], store.root, plan.split_of(cell), threads, force, run_id) for cell in todo]
            results = submit(run_cell, [(task,) for task in tasks])
        elif jobs == 1:
            tasks = [CellTask(cell, spec_by_key[cell.method], store.root, plan.split_of(cell), threads, force, run_id) for cell in todo]

            def serial():
                for task in tasks:
                    bar.update(task.cell.key, "started")
                    yield run_cell(task, progress=lambda cell, text: bar.update(cell.key, text))

            results = serial()
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="lth-grid-"))
            _share_dataset(data, folder)
            tasks = []
            for cell in todo:
                split = plan.split_of(cell)
                shared = _SharedSplit(folder, np.asarray(split.train), split.card)
                tasks.append(CellTask(cell, spec_by_key[cell.method], store.root, shared, threads, force, run_id))
            results = _local_pool_results(tasks, jobs, bar.update)
        for outcome in results:
            outcomes.append(outcome)
            bar.finished(outcome)
    bar.close()
    return outcomes


def recompute_metrics(store: ResultStore, plan: GridPlan | None = None, dataset: str | None = None) -> int:
    """Re-evaluate stored cells from their packed codes (no re-training): the planned cells that
    are stored, or every stored cell of ``dataset``; returns the count."""
    if plan is not None:
        cells = [cell for cell in plan.cells if store.has(cell)]
    else:
        cells = [Cell.from_dict(record["cell"]) for record in store.records(dataset=dataset)]
    for cell in cells:
        record = store.load_record(cell)
        arrays = store.load_arrays(cell)
        metrics, pr_curve, new_arrays = evaluate_codes(
            arrays["query_codes"], arrays["database_codes"], cell.n_bits, arrays["query_labels"],
            arrays["database_labels"], arrays["train_class_sizes"])
        arrays.update(new_arrays)
        record.update(metrics=metrics, pr_curve=pr_curve)
        for key in ("record_version", "cell", "cell_key"):
            record.pop(key, None)
        store.write(cell, record, arrays)
    return len(cells)
