"""A constructed result store for the report tests: cells with chosen per-query AP, labels, class
sizes, codes and training logs, written through ResultStore as the runner writes them, and the run
dict that ``analysis_report.finish_run`` receives."""
from __future__ import annotations

import numpy as np

from benchmark.store import Cell, ResultStore

FINGERPRINT = "f" * 16


def write_cell(store: ResultStore, display: str, ap, *, key: str | None = None, family: str = "deep",
               dataset: str = "synthetic", factor: float = 50.0, bits: int = 16, seed: int = 0, query_labels=None,
               database_labels=None, train_class_sizes=None, query_codes=None, database_codes=None,
               training_log: dict | None = None, card: dict | None = None, params: dict | None = None,
               settings: dict | None = None) -> Cell:
    """One stored cell (record + arrays) whose MAP is the mean of ``ap``."""
    ap = np.asarray(ap, dtype=np.float64)
    key = key or display.replace(" ", "")
    cell = Cell(dataset, float(factor), int(bits), key, int(seed), "features", 0, FINGERPRINT)
    arrays = {"ap_tie_aware": ap, "ap_index_order": ap}
    optional = {"query_labels": query_labels, "database_labels": database_labels,
                "train_class_sizes": train_class_sizes, "query_codes": query_codes, "database_codes": database_codes}
    arrays.update({name: np.asarray(value) for name, value in optional.items() if value is not None})
    sizes = [] if train_class_sizes is None else [int(v) for v in train_class_sizes]
    store.write(cell, {
        "method": {"display": display, "key": key, "family": family, "params": params or {}, "settings": settings},
        "metrics": {"map_tie_aware": float(ap.mean()), "map_index_order": float(ap.mean())},
        "timings": {"fit_seconds": 1.0},
        "training_log": training_log,
        "dataset": {"default_bits": [16, 32, 48], "card": card or {}, "train_class_sizes": sizes},
    }, arrays)
    return cell


def run_dict(methods: list[tuple[str, str, str]], dataset: str = "synthetic", factors=(50.0,), bits=(16,),
             seeds=(0,), experiment: str = "main") -> dict:
    """The resolved run of ``methods`` [(display, key, base)], as ``ExperimentRun.to_dict()`` plus
    the data fingerprints the CLI adds."""
    return {"experiment": experiment, "title": "Main grid (Tables 3-4 layout)", "dataset": dataset,
            "imbalance_factors": [float(f) for f in factors], "bits": [int(b) for b in bits],
            "seeds": [int(s) for s in seeds], "split_seed": 0, "sweep": None, "outputs": ["table"], "note": "",
            "method_params": {}, "fingerprints": [FINGERPRINT],
            "points": [{"key": key, "display": display, "base": base, "value": None} for display, key, base in methods]}
