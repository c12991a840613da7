"""The validation study behind ``settings="features"``: every registered deep method, one grid of
optimisation settings, scored on a part of the long-tail TRAINING split held out (never the query set).

Protocol: per (dataset, imbalance factor) the long-tail training split (``make_long_tail``, seed 0);
a stratified ``--holdout`` 0.2 of each class is held out as validation queries (none from 1-item
classes: ``datasets.digits.stratified_query_split``, seed 1); each method is fitted on the rest and
the held-out items retrieve from the fitted items; tie-aware MAP over the whole ranking
(``benchmark.metrics.evaluate``, numba backend), the final epoch's network. Every method gets the
same grid (``GRID``: learning rate x batch size, 30 epochs, RMSprop, weight decay 5e-4, per-step
cosine), with its trainer defaults otherwise (the shared trunk in features mode, the reference head
initialisation) and its own defaults (LTHNet and LTHNet_sq k = 3). Fits run in ``--workers``
processes with one torch thread each; each finished row is appended to the validation CSV at once
and rows already there are skipped, so an interrupted run resumes where it stopped. At the end the
file is rewritten in a fixed order and the presets are chosen from it (``choose_presets``).

    nice -n 10 python benchmarks/validate_deep.py            # the study (methods/data/README.md)
    python benchmarks/validate_deep.py --presets-only        # re-derive the presets from the CSV
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import math
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.checks import check_positive_int  # noqa: E402
from common.io import atomic_write  # noqa: E402

DATA_DIR = os.path.join(ROOT, "methods", "data")
VALIDATION_FILE = os.path.join(DATA_DIR, "deep_feature_validation.csv")
PRESETS_FILE = os.path.join(DATA_DIR, "deep_feature_presets.csv")

#: the grid every method gets: (learning rate, batch size); the other settings are FIXED_SETTINGS
GRID = ((1e-4, 32), (1e-3, 32), (1e-4, 128), (1e-3, 128))
FIXED_SETTINGS = {"optimizer": "rmsprop", "weight_decay": 5e-4, "lr_schedule": "cosine", "n_epochs": 30}
#: the (dataset, imbalance factor) settings of the full study
SETTINGS = (("synthetic-cifar100", 1.0), ("synthetic-cifar100", 100.0), ("digits", 1.0), ("digits", 100.0))
#: cluster noise of the synthetic datasets (classes overlap: methods/data/README.md)
SYNTHETIC_NOISE = 7.0
#: s_1 of the synthetic datasets' IF-1 split (``LongTailProtocol.balanced_class_size``, the rule the
#: paper uses for ImageNet100 at IF 1): 50 items per class, 5,000 in all (4,000 fitted), instead of
#: CIFAR-100's 500 -- a 2-core cost cut: 40,000 fitted items x 30 epochs is ~10 min a baseline fit
#: and ~35 min an LTHNet fit here. 0 keeps the dataset's own s_1. Written in every row.
SYNTHETIC_BALANCED_CLASS_SIZE = 50
LONG_TAIL_SEED = 0
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 1
N_BITS = 64
#: explicit parameters of some methods (their defaults, written down so the rows say so)
METHOD_PARAMS = {"LTHNet": {"k": 3}, "LTHNet_sq": {"k": 3}}
#: configurations whose mean relative MAP is within this of the best count as tied (-> cheapest)
TIE_TOLERANCE = 0.005
#: the preset of methods that declare none: chosen over every validated method
DEFAULT_PRESET = "default"

VALIDATION_COLUMNS = (
    "dataset", "dataset_noise", "imbalance_factor", "balanced_class_size", "long_tail_seed", "holdout_fraction",
    "holdout_seed", "n_train_split", "n_fit", "n_validation", "n_bits", "metric", "epoch", "method", "method_params", "trunk",
    "head_init", "grid_row", "optimizer", "learning_rate", "weight_decay", "lr_schedule", "n_epochs", "batch_size",
    "configuration", "validation_map", "final_loss", "fit_seconds", "note",
)
#: the columns that identify a row (a run skips jobs whose key is already in the file)
KEY_COLUMNS = ("dataset", "dataset_noise", "imbalance_factor", "balanced_class_size", "long_tail_seed",
               "holdout_fraction", "holdout_seed", "n_bits", "method", "method_params", "optimizer", "learning_rate", "weight_decay", "lr_schedule",
               "n_epochs", "batch_size")
PRESET_COLUMNS = ("preset", "optimizer", "learning_rate", "weight_decay", "lr_schedule", "n_epochs", "batch_size",
                  "validated_with", "rule")


def deep_methods() -> list[str]:
    """Every registered deep method, in registration order (a method registered later is included)."""
    from methods.registry import registered_methods

    return [name for name, cls in registered_methods().items() if getattr(cls, "family", None) == "deep"]


def configuration_label(learning_rate: float, batch_size: int, n_epochs: int) -> str:
    return f"lr {learning_rate:g}, batch {batch_size}, {n_epochs} ep"


def _noise_text(dataset: str, noise: float) -> str:
    return f"{noise:g}" if dataset.startswith("synthetic") else ""


def _balanced_text(dataset: str, factor: float, balanced_class_size: int) -> str:
    """The row's ``balanced_class_size``: s_1 of a synthetic IF-1 split when overridden, else ''."""
    applies = dataset.startswith("synthetic") and factor == 1.0 and balanced_class_size > 0
    return str(int(balanced_class_size)) if applies else ""


def _params_text(params: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(params.items()))


def job_key(job: dict) -> tuple:
    return tuple(str(job[column]) for column in KEY_COLUMNS)


def parse_setting(text: str) -> tuple[str, float]:
    """``"dataset:IF"`` -> (dataset, IF)."""
    dataset, _, factor = str(text).rpartition(":")
    try:
        value = float(factor)
    except ValueError:
        value = math.nan
    if not dataset or not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not DATASET:IF (e.g. synthetic-cifar100:100, digits:1)")
    return dataset, value


def make_jobs(settings, methods, grid, n_epochs: int, noise: float, holdout: float, holdout_seed: int,
              n_bits: int, balanced_class_size: int = SYNTHETIC_BALANCED_CLASS_SIZE) -> list[dict]:
    """One job per (dataset, IF) setting x method x configuration, in the order they are run: the
    small settings first, then each dataset's IF-1 split configuration by configuration (so a run
    cut short leaves the same configurations for every method)."""
    jobs = []
    for dataset, factor in settings:
        for row, (learning_rate, batch_size) in enumerate(grid):
            for method in methods:
                params = METHOD_PARAMS.get(method, {})
                jobs.append({
                    "dataset": dataset, "dataset_noise": _noise_text(dataset, noise),
                    "imbalance_factor": f"{factor:g}",
                    "balanced_class_size": _balanced_text(dataset, factor, balanced_class_size),
                    "long_tail_seed": LONG_TAIL_SEED,
                    "holdout_fraction": f"{holdout:g}", "holdout_seed": holdout_seed, "n_bits": n_bits,
                    "method": method, "method_params": _params_text(params), "grid_row": row,
                    "optimizer": FIXED_SETTINGS["optimizer"], "learning_rate": f"{learning_rate:g}",
                    "weight_decay": f"{FIXED_SETTINGS['weight_decay']:g}",
                    "lr_schedule": FIXED_SETTINGS["lr_schedule"], "n_epochs": n_epochs, "batch_size": batch_size,
                    "configuration": configuration_label(learning_rate, batch_size, n_epochs),
                })
    # large splits last (IF 1 of a dataset with many items), configuration-major within them, the
    # costliest methods (those with their own 2000-wide trunk and per-epoch memory: LTHNet) first
    from methods.registry import get_method_class

    def order(job):
        large = float(job["imbalance_factor"]) == 1.0 and job["dataset"] != "digits"
        costly = bool(getattr(get_method_class(job["method"]), "brings_own_trunk", False))
        return (large, job["grid_row"], not costly) if large else (False, 0, False)

    return sorted(jobs, key=order)  # stable: the small settings keep their order


@functools.lru_cache(maxsize=4)
def validation_data(dataset: str, noise: str, imbalance_factor: str, holdout: str, holdout_seed: int,
                    balanced_class_size: str = ""):
    """(X_fit, y_fit, X_val, y_val, n_train_split): the long-tail training split with a stratified
    part held out (the query set is never read)."""
    import dataclasses

    from datasets import load_dataset, make_long_tail
    from datasets.digits import stratified_query_split

    options = {"noise": float(noise)} if noise else {}
    data = load_dataset(dataset, **options)
    if balanced_class_size:
        protocol = dataclasses.replace(data.long_tail_protocol, balanced_class_size=int(balanced_class_size))
        data = dataclasses.replace(data, long_tail_protocol=protocol)
    data = make_long_tail(data, float(imbalance_factor), seed=LONG_TAIL_SEED)
    X_train, y_train = data.subset(data.train)
    held, kept = stratified_query_split(y_train, float(holdout), int(holdout_seed))
    return X_train[kept], y_train[kept], X_train[held], y_train[held], int(y_train.size)


def _worker_init() -> None:
    """One torch thread; one tiny fit first, so that no row's fit_seconds holds the one-time cost
    of lazy imports (the optimiser's first step imports torch._dynamo: ~10 s)."""
    import torch

    from methods.registry import get_method_class

    torch.set_num_threads(1)
    X = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    get_method_class(deep_methods()[0])(n_epochs=1, batch_size=16, n_threads=1, settings="features").fit(X, np.arange(64) % 4)


def run_job(job: dict) -> dict:
    """Fit one method at one configuration; the finished row of the validation CSV."""
    import torch

    from benchmark.metrics import evaluate
    from methods._deep import TrainingDivergedError
    from methods.registry import get_method_class

    torch.set_num_threads(1)
    X_fit, y_fit, X_val, y_val, n_split = validation_data(job["dataset"], job["dataset_noise"], job["imbalance_factor"],
                                                          job["holdout_fraction"], int(job["holdout_seed"]),
                                                          str(job.get("balanced_class_size", "")))
    params = dict(METHOD_PARAMS.get(job["method"], {}))
    method = get_method_class(job["method"])(
        n_bits=int(job["n_bits"]), random_state=0, mode="features", settings="features", n_threads=1,
        optimizer=job["optimizer"], learning_rate=float(job["learning_rate"]),
        weight_decay=float(job["weight_decay"]), lr_schedule=job["lr_schedule"], n_epochs=int(job["n_epochs"]),
        batch_size=int(job["batch_size"]), **params)
    row = dict(job, n_train_split=n_split, n_fit=int(y_fit.size), n_validation=int(y_val.size),
               metric="map_tie_aware", epoch="final", note="")
    start = time.perf_counter()
    try:
        method.fit(X_fit, y_fit)
    except TrainingDivergedError as error:  # scored 0 (the rule's worst), kept as evidence
        row.update(validation_map="0.0000", final_loss="nan", fit_seconds=f"{time.perf_counter() - start:.0f}",
                   note=f"diverged: {str(error).splitlines()[0][:160]}")
        settings = method.resolved_settings()
        row.update(trunk=settings["trunk"], head_init=settings["head_init"])
        return row
    seconds = time.perf_counter() - start
    result = evaluate(method.encode(X_val), method.encode(X_fit), y_val, y_fit, pr_curve=False, precision_ks=(),
                      backend="numba")
    settings = method.settings_
    row.update(trunk=settings["trunk"], head_init=settings["head_init"],
               validation_map=f"{result.map_tie_aware:.4f}", final_loss=f"{method.training_log_['loss'][-1]:.4f}",
               fit_seconds=f"{seconds:.0f}")
    return row


# ----------------------------------------------------------------------------- the CSV files

def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_row(path: str, row: dict) -> None:
    """Append one row (the header first when the file is new), flushed at once."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=VALIDATION_COLUMNS, lineterminator="\n", extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


def _csv_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def sorted_rows(rows: list[dict], methods: list[str]) -> list[dict]:
    """Rows in a fixed order: dataset, IF, method (registration order), grid row."""
    rank = {name: index for index, name in enumerate(methods)}
    return sorted(rows, key=lambda row: (row["dataset"], float(row["imbalance_factor"]),
                                         rank.get(row["method"], len(rank)), row["method"], int(row["grid_row"])))


# ----------------------------------------------------------------------------- the rule

def _configuration(row: dict) -> tuple:
    return (row["optimizer"], float(row["learning_rate"]), float(row["weight_decay"]), row["lr_schedule"],
            int(row["n_epochs"]), int(row["batch_size"]))


def _setting(row: dict) -> tuple:
    return (row["dataset"], float(row["imbalance_factor"]))


def _setting_label(setting: tuple) -> str:
    return f"{setting[0]} IF {setting[1]:g}"


def relative_scores(rows: list[dict], members: list[str]) -> tuple[dict, list]:
    """configuration -> mean over (member method, setting) of MAP / that method's best MAP at that
    setting, over the settings where every member has every configuration (complete settings)."""
    configurations = sorted({_configuration(row) for row in rows if row["method"] in members})
    maps: dict = {}
    for row in rows:
        if row["method"] in members:
            maps[(row["method"], _setting(row), _configuration(row))] = float(row["validation_map"])
    settings = sorted({_setting(row) for row in rows})
    complete = [setting for setting in settings
                if all((method, setting, configuration) in maps for method in members for configuration in configurations)]
    scores = {}
    for configuration in configurations:
        values = []
        for method in members:
            for setting in complete:
                best = max(maps[(method, setting, other)] for other in configurations)
                values.append(maps[(method, setting, configuration)] / best if best > 0 else 1.0)
        scores[configuration] = float(np.mean(values)) if values else math.nan
    return scores, complete


def choose(scores: dict, tolerance: float = TIE_TOLERANCE) -> tuple:
    """The configuration with the best score; those within ``tolerance`` of it are tied and the
    cheapest of them wins (fewest optimisation steps: n_epochs / batch_size), then the best score,
    then the first in sorted order (the lower learning rate)."""
    best = max(scores.values())
    tied = [configuration for configuration, score in scores.items() if score >= best - tolerance]
    return min(tied, key=lambda c: (c[4] / c[5], -scores[c], c))


def preset_members(methods: list[str]) -> dict[str, list[str]]:
    """Preset name -> the methods whose rows choose it: one preset per method (its registered name),
    one per ``feature_preset`` value the classes declare (the classes declaring it), and the
    ``default`` preset (every method: for methods validated by nobody)."""
    from methods.registry import registered_methods

    classes = registered_methods()
    members = {DEFAULT_PRESET: list(methods)}
    for name in methods:
        declared = getattr(classes[name], "feature_preset", DEFAULT_PRESET)
        if declared != DEFAULT_PRESET and declared not in methods:
            members.setdefault(declared, []).append(name)
    for name in methods:
        members[name] = [name]
    return members


def choose_presets(rows: list[dict], methods: list[str], tolerance: float = TIE_TOLERANCE) -> list[dict]:
    """One presets row per preset name of ``preset_members``: the configuration chosen by the rule."""
    presets = []
    for preset, members in preset_members(methods).items():
        validated = [name for name in members if any(row["method"] == name for row in rows)]
        if not validated:
            continue
        scores, complete = relative_scores(rows, validated)
        chosen = choose(scores, tolerance)
        optimizer, learning_rate, weight_decay, schedule, n_epochs, batch_size = chosen
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        others = "; ".join(f"{configuration_label(c[1], c[5], c[4])} {score:.3f}" for c, score in ranked if c != chosen)
        if len(validated) == 1:
            maps = {(_setting(row)): float(row["validation_map"]) for row in rows
                    if row["method"] == validated[0] and _configuration(row) == chosen}
            detail = ", ".join(f"{_setting_label(s)} {maps[s]:.4f}" for s in complete)
            detail = f"validation MAP {detail}"
        else:
            detail = f"pooled over {' '.join(validated)}"
        presets.append({
            "preset": preset, "optimizer": optimizer, "learning_rate": f"{learning_rate:g}",
            "weight_decay": f"{weight_decay:g}", "lr_schedule": schedule, "n_epochs": n_epochs, "batch_size": batch_size,
            "validated_with": " ".join(validated),
            "rule": (f"best mean over {len(complete)} settings ({', '.join(_setting_label(s) for s in complete)}) of MAP / "
                     f"the method's best MAP at that setting (ties within {tolerance:g}: fewest optimisation steps): "
                     f"{scores[chosen]:.3f}, {detail}; the others: {others}"),
        })
    return presets


def write_presets(rows: list[dict], methods: list[str], path: str) -> list[dict]:
    presets = choose_presets(rows, methods)
    if not any(preset["preset"] == DEFAULT_PRESET for preset in presets):
        raise RuntimeError("no validation rows: nothing to choose the presets from.")
    atomic_write(path, _csv_text(PRESET_COLUMNS, presets))
    return presets


# ----------------------------------------------------------------------------- main

def run(jobs: list[dict], out: str, workers: int) -> tuple[int, int]:
    """Run the jobs not yet in ``out`` in ``workers`` processes; (rows written, failures)."""
    done = {job_key(row) for row in read_rows(out)}
    pending = [job for job in jobs if job_key(job) not in done]
    print(f"{len(jobs)} jobs, {len(jobs) - len(pending)} already in {out}, {len(pending)} to run "
          f"({workers} workers)", flush=True)
    started = time.perf_counter()
    if workers == 1:  # in this process (tests, debugging)
        import torch

        threads = torch.get_num_threads()
        try:
            return _run_serially(pending, out, started)
        finally:
            torch.set_num_threads(threads)
    previous_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the workers (spawned on demand)
    try:
        written, failures = _run_pending(pending, out, workers, started)
    finally:
        if previous_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous_threads
    return written, failures


def _report(row: dict, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.0f}s] {row['dataset']} IF {row['imbalance_factor']} "
          f"{row['method']} {row['configuration']}: MAP {row['validation_map']} loss {row['final_loss']} "
          f"fit {row['fit_seconds']}s {row['note']}", flush=True)


def _run_serially(pending: list[dict], out: str, started: float) -> tuple[int, int]:
    for job in pending:
        row = run_job(job)
        append_row(out, row)
        _report(row, started)
    return len(pending), 0


def _run_pending(pending: list[dict], out: str, workers: int, started: float) -> tuple[int, int]:
    import multiprocessing

    written = failures = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as pool:
        queue = list(pending)
        running = {}
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                running[pool.submit(run_job, job)] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    row = future.result()
                except Exception:  # noqa: BLE001 - report and go on with the other jobs
                    failures += 1
                    print(f"FAILED {job['dataset']} IF {job['imbalance_factor']} {job['method']} "
                          f"{job['configuration']}:\n{traceback.format_exc()}", flush=True)
                    continue
                append_row(out, row)
                written += 1
                _report(row, started)
    return written, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", type=parse_setting, nargs="+", default=list(SETTINGS), metavar="DATASET:IF",
                        help="the (dataset, imbalance factor) settings; default: "
                             + " ".join(f"{name}:{factor:g}" for name, factor in SETTINGS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered deep method")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=None, help="default: GRID's")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: GRID's")
    parser.add_argument("--epochs", type=int, default=FIXED_SETTINGS["n_epochs"])
    parser.add_argument("--noise", type=float, default=SYNTHETIC_NOISE, help="synthetic datasets: cluster noise")
    parser.add_argument("--balanced-class-size", type=int, default=SYNTHETIC_BALANCED_CLASS_SIZE,
                        help="items per class of a synthetic dataset's IF-1 split (0: the dataset's own s_1)")
    parser.add_argument("--holdout", type=float, default=HOLDOUT_FRACTION)
    parser.add_argument("--holdout-seed", type=int, default=HOLDOUT_SEED)
    parser.add_argument("--bits", type=int, default=N_BITS)
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one torch thread each (1: in "
                        "this process)")
    parser.add_argument("--out", default=VALIDATION_FILE, help="the validation CSV (appended to; resumed)")
    parser.add_argument("--presets", default=PRESETS_FILE, help="the presets CSV written at the end ('' to skip)")
    parser.add_argument("--presets-only", action="store_true", help="only choose the presets from --out")
    args = parser.parse_args(argv)
    check_positive_int(args.workers, "--workers")
    check_positive_int(args.epochs, "--epochs")
    methods = args.methods or deep_methods()
    unknown = sorted(set(methods) - set(deep_methods()))
    if unknown:
        parser.error(f"--methods {' '.join(unknown)}: not registered deep methods; use some of {deep_methods()}")
    if not args.presets_only:
        if args.learning_rates is None and args.batch_sizes is None:
            grid = list(GRID)
        else:
            rates = args.learning_rates or sorted({lr for lr, _ in GRID})
            batches = args.batch_sizes or sorted({batch for _, batch in GRID})
            grid = [(lr, batch) for batch in batches for lr in rates]
        jobs = make_jobs(args.settings, methods, grid, args.epochs, args.noise, args.holdout,
                         args.holdout_seed, args.bits, args.balanced_class_size)
        written, failures = run(jobs, args.out, args.workers)
        rows = read_rows(args.out)
        atomic_write(args.out, _csv_text(VALIDATION_COLUMNS, sorted_rows(rows, deep_methods())))
        print(f"{written} rows written, {failures} failed; {len(rows)} rows in {args.out}", flush=True)
        if failures:
            return 1
    if args.presets:
        presets = write_presets(read_rows(args.out), methods, args.presets)
        for preset in presets:
            print(f"{preset['preset']}: lr {preset['learning_rate']}, batch {preset['batch_size']}, "
                  f"{preset['n_epochs']} ep -- {preset['rule']}", flush=True)
        print(f"wrote {args.presets}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
