"""The benchmark runner: a grid of cells (dataset x IF x bits x method x seed), each fitted on its
long-tail training split, encoded, evaluated and written to the result store.

Cells already in the store are skipped (``force`` recomputes them); cells run in parallel through
joblib; a failing cell is reported by name and writes nothing.
"""
from __future__ import annotations

import platform
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from common.errors import BenchmarkError

from datasets import BenchmarkData, make_long_tail
from datasets.longtail import check_imbalance_factor

from .metrics import evaluate, pack_codes
from .specs import MethodSpec
from .store import Cell, ResultStore

MODES = ("features", "finetune")


class CellError(BenchmarkError, RuntimeError):
    """A cell that could not be computed; names the cell and the cause."""


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "done", "skipped" (already in store), "unsupported", "failed"
    message: str = ""
    seconds: float = 0.0


@dataclass
class GridPlan:
    cells: list[Cell] = field(default_factory=list)
    unsupported: list[tuple[Cell, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- helpers


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "longtail-hashing-benchmark"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
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


def plan_grid(
    data: BenchmarkData, imbalance_factors: Sequence[float], bits: Sequence[int], specs: Sequence[MethodSpec],
    seeds: Sequence[int], mode: str = "features", split_seed: int = 0,
) -> GridPlan:
    """Every cell of the grid, and those a method cannot produce (e.g. PCA bits > feature dimension)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    for factor in imbalance_factors:
        check_imbalance_factor(factor)
    for n_bits in bits:
        if isinstance(n_bits, bool) or int(n_bits) != n_bits or n_bits <= 0:
            raise ValueError(f"bit lengths must be positive integers, got {n_bits!r}.")
    plan = GridPlan()
    for factor in imbalance_factors:
        for n_bits in bits:
            for spec in specs:
                for seed in seeds:
                    cell = Cell(data.name, float(factor), int(n_bits), spec.key, int(seed),
                                cell_mode(spec, mode), int(split_seed))
                    limit = spec.method_class().max_bits_for(data.n_features, len(data.train))
                    if limit is not None and n_bits > limit:
                        plan.unsupported.append(
                            (cell, f"{spec.display} cannot give {n_bits} bits from {data.n_features}-d features "
                                   f"(at most {limit})"))
                    else:
                        plan.cells.append(cell)
    return plan


# ---------------------------------------------------------------------------- one cell


def _inputs(data: BenchmarkData, index: np.ndarray, mode: str):
    if mode == "finetune":
        if getattr(data, "image_source", None) is None:
            raise CellError(
                f"finetune mode needs images, but dataset {data.name!r} provides only features; "
                "use --mode features or an image dataset (cifar100, imagenet100, lthnet-folder)."
            )
        return data.image_source.subset(index)
    return np.asarray(data.features[index], dtype=np.float32)


def evaluate_codes(query_codes, database_codes, query_labels, database_labels, train_class_sizes):
    """Metrics (dict) and arrays (dict) of one cell's codes; shared by runs and recomputation."""
    result = evaluate(query_codes, database_codes, query_labels, database_labels)
    groups = class_groups(train_class_sizes)
    metrics = {
        "map_tie_aware": float(result.map_tie_aware),
        "map_index_order": float(result.map_index_order),
        "precision_at_k": {str(k): v for k, v in result.precision_at_k.items()},
        "n_queries_without_relevant": int(result.n_queries_without_relevant),
        "group_map_tie_aware": group_map(result.ap_tie_aware, query_labels, groups),
        "group_map_index_order": group_map(result.ap_index_order, query_labels, groups),
        "groups": {name: classes.tolist() for name, classes in groups.items()},
    }
    pr = {k: np.asarray(v).tolist() for k, v in (result.pr_curve or {}).items()}
    arrays = {
        "ap_tie_aware": np.asarray(result.ap_tie_aware, dtype=np.float64),
        "ap_index_order": np.asarray(result.ap_index_order, dtype=np.float64),
    }
    return metrics, pr, arrays


def run_cell(cell: Cell, data: BenchmarkData, store: ResultStore, spec: MethodSpec) -> CellOutcome:
    """Fit, encode, evaluate and store one cell. ``data`` already carries the cell's training split."""
    start = time.perf_counter()
    try:
        method = spec.build(n_bits=cell.n_bits, random_state=cell.seed)
        if "mode" in method.get_params():
            method.set_params(mode=cell.mode)
        train = data.train
        X_train, y_train = _inputs(data, train, cell.mode), data.labels[train]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            method.fit(X_train, y_train)
            fit_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            query_codes = method.encode(_inputs(data, data.query_index, cell.mode))
            database_codes = method.encode(_inputs(data, data.database_index, cell.mode))
            encode_seconds = time.perf_counter() - t0
        query_labels = data.labels[data.query_index]
        database_labels = data.labels[data.database_index]
        t0 = time.perf_counter()
        train_sizes = data.train_class_sizes()
        metrics, pr_curve, arrays = evaluate_codes(query_codes, database_codes, query_labels, database_labels,
                                                   train_sizes)
        evaluate_seconds = time.perf_counter() - t0
        if not np.isfinite(metrics["map_tie_aware"]):
            raise CellError("the evaluation produced a non-finite MAP")
    except Exception as error:  # one cell's failure must name the cell and write nothing
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        return CellOutcome(cell, "failed", f"{cell.describe()} failed: {detail}", time.perf_counter() - start)

    params = {k: v for k, v in method.get_params().items()}
    record = {
        "method": {"name": spec.name, "key": spec.key, "display": spec.display, "family": method.family,
                   "uses_labels": method.uses_labels, "params": params,
                   "settings": getattr(method, "settings_", None)},  # resolved optimisation settings (deep)
        "metrics": metrics,
        "pr_curve": pr_curve,
        "timings": {"fit_seconds": fit_seconds, "encode_seconds": encode_seconds,
                    "evaluate_seconds": evaluate_seconds},
        "training_log": getattr(method, "training_log_", None),
        "warnings": sorted({str(w.message) for w in caught}),
        "dataset": {"name": data.name, "card": data.card, "n_query": int(len(data.query_index)),
                    "n_database": int(len(data.database_index)), "n_train": int(len(train)),
                    "n_classes": int(data.n_classes), "n_features": int(data.n_features),
                    "train_class_sizes": train_sizes.tolist(), "default_bits": list(data.default_bits)},
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    arrays.update({
        "query_codes": pack_codes(query_codes), "database_codes": pack_codes(database_codes),
        "query_labels": query_labels.astype(np.int32), "database_labels": database_labels.astype(np.int32),
        "train_class_sizes": train_sizes.astype(np.int64),
    })
    store.write(cell, record, arrays)
    return CellOutcome(cell, "done", "", time.perf_counter() - start)


def _run_cell_task(cell, data, store_root, spec):
    return run_cell(cell, data, ResultStore(store_root), spec)


# ---------------------------------------------------------------------------- the grid


def split_for(data: BenchmarkData, imbalance_factor: float, split_seed: int) -> BenchmarkData:
    return make_long_tail(data, imbalance_factor, seed=split_seed)


def run_grid(
    data: BenchmarkData, plan: GridPlan, specs: Iterable[MethodSpec], store: ResultStore, *,
    force: bool = False, jobs: int = 1, progress: bool = True, submit: Callable | None = None,
) -> list[CellOutcome]:
    """Run every planned cell not yet in the store. ``submit`` lets a distributed backend take the
    cells (see benchmark.distributed); by default joblib runs them with ``jobs`` processes."""
    from tqdm.auto import tqdm

    spec_by_key = {spec.key: spec for spec in specs}
    outcomes = [CellOutcome(c, "skipped", "already in the result store") for c in plan.cells
                if not force and store.has(c)]
    todo = [c for c in plan.cells if force or not store.has(c)]
    splits: dict[tuple[float, int], BenchmarkData] = {}
    tasks = []
    for cell in todo:
        key = (cell.imbalance_factor, cell.split_seed)
        if key not in splits:
            splits[key] = split_for(data, cell.imbalance_factor, cell.split_seed)
        tasks.append((cell, splits[key], store.root, spec_by_key[cell.method]))
    outcomes += [CellOutcome(c, "unsupported", why) for c, why in plan.unsupported]
    if not tasks:
        return outcomes
    bar = tqdm(total=len(tasks), desc="cells", unit="cell", disable=not progress)
    if submit is not None:
        results = submit(_run_cell_task, tasks)
    elif jobs == 1:
        results = (_run_cell_task(*task) for task in tasks)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(_run_cell_task)(*task) for task in tasks)
    for outcome in results:
        outcomes.append(outcome)
        bar.set_postfix_str(f"{outcome.cell.method} IF={outcome.cell.imbalance_factor:g} {outcome.cell.n_bits}b")
        bar.update(1)
        if outcome.status == "failed":
            bar.write(outcome.message)
    bar.close()
    return outcomes


def recompute_metrics(store: ResultStore, dataset: str | None = None) -> int:
    """Re-evaluate every stored cell from its packed codes (no re-training); returns the count."""
    from .metrics import unpack_codes

    count = 0
    for record in list(store.records(dataset=dataset)):
        cell = Cell.from_dict(record["cell"])
        arrays = store.load_arrays(cell)
        query_codes = unpack_codes(arrays["query_codes"], cell.n_bits)
        database_codes = unpack_codes(arrays["database_codes"], cell.n_bits)
        metrics, pr_curve, new_arrays = evaluate_codes(
            query_codes, database_codes, arrays["query_labels"], arrays["database_labels"],
            arrays["train_class_sizes"])
        arrays.update(new_arrays)
        record.update(metrics=metrics, pr_curve=pr_curve)
        for key in ("record_version", "cell", "cell_key"):
            record.pop(key, None)
        store.write(cell, record, arrays)
        count += 1
    return count
