"""The result store read once per run: one table of every stored cell (a DataFrame row per record)
and the per-query arrays loaded on demand. Tables, t-tests, head/medium/tail, figures and
REPORT.md all take this one object instead of walking the store themselves.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .store import Cell, ResultStore

GROUPS = ("head", "medium", "tail")
FRAME_COLUMNS = ["dataset", "mode", "method", "method_key", "family", "imbalance_factor", "bits", "seed",
                 "split_seed", "data_fingerprint", "cell_key", "map_tie_aware", "map_index_order",
                 "fit_seconds", "default_bits", "loss", "realised_imbalance_factor", "trunk", "head_init"]


def realised_imbalance_factor(record: dict) -> float:
    """n_max / n_min of the cell's drawn training split: the dataset card's
    ``long_tail.realised_imbalance_factor`` when present, else from its training-class sizes
    (inf when a class has no training item; NaN when the record has neither)."""
    dataset = record.get("dataset") or {}
    long_tail = (dataset.get("card") or {}).get("long_tail") or {}
    if long_tail.get("realised_imbalance_factor") is not None:
        return float(long_tail["realised_imbalance_factor"])
    sizes = np.asarray(dataset.get("train_class_sizes") or [], dtype=np.float64)
    if sizes.size == 0:
        return float("nan")
    return float(sizes.max() / sizes.min()) if sizes.min() > 0 else float("inf")


def _row(record: dict) -> dict:
    cell, method, metrics = record["cell"], record["method"], record.get("metrics", {})
    settings = method.get("settings") or {}
    row = {
        "dataset": cell["dataset"], "mode": cell["mode"], "method": method.get("display", method.get("key")),
        "method_key": method.get("key", cell["method"]), "family": method.get("family", "shallow"),
        "imbalance_factor": float(cell["imbalance_factor"]), "bits": int(cell["n_bits"]),
        "seed": int(cell["seed"]), "split_seed": int(cell.get("split_seed", 0)),
        "data_fingerprint": cell.get("data_fingerprint", ""), "cell_key": record.get("cell_key", ""),
        "map_tie_aware": metrics.get("map_tie_aware", np.nan),
        "map_index_order": metrics.get("map_index_order", np.nan),
        "fit_seconds": record.get("timings", {}).get("fit_seconds", np.nan),
        "default_bits": tuple(record.get("dataset", {}).get("default_bits", (32, 64, 96))),
        "loss": (record.get("training_log") or {}).get("loss"),
        "realised_imbalance_factor": realised_imbalance_factor(record),
        # the deep trainer's resolved trunk ('shared', 'own', 'none'; '' for shallow methods or an
        # older record) and head initialisation
        "trunk": str(settings.get("trunk") or ""),
        "head_init": str(settings.get("head_init") or ""),
    }
    for policy in ("tie_aware", "index_order"):
        for group, value in metrics.get(f"group_map_{policy}", {}).items():
            row[f"{group}_map_{policy}"] = value
    return row


class StoredResults:
    """Every finished record of a store, read once.

    ``frame``: one row per cell (``FRAME_COLUMNS`` plus ``<group>_map_<policy>``); ``records`` the
    full records by cell key; ``arrays(cell_key)`` the cell's .npz contents (loaded once, cached).
    """

    def __init__(self, store: ResultStore, records: Iterable[dict]):
        self.store = store
        self.records = {record.get("cell_key") or Cell.from_dict(record["cell"]).key: record for record in records}
        rows = [_row(record) for record in self.records.values()]
        self.frame = pd.DataFrame(rows, columns=None if rows else FRAME_COLUMNS)
        self._arrays: dict[str, dict] = {}
        self._memo: dict = {}

    @classmethod
    def load(cls, store: ResultStore, dataset: str | None = None) -> "StoredResults":
        return cls(store, store.records(dataset=dataset))

    def select(self, dataset: str | None = None, mode: str | None = None, method_keys=None,
               fingerprints=None) -> pd.DataFrame:
        """The rows of one table: deep methods of ``mode`` and shallow methods from features mode
        (shallow methods always hash frozen features), optionally restricted to spec keys and to
        the fingerprints of the data a run used (so stale cells of changed data never show)."""
        frame = self.frame
        if frame.empty:
            return frame.copy()
        mask = np.ones(len(frame), dtype=bool)
        if dataset is not None:
            mask &= (frame["dataset"] == dataset).to_numpy()
        if mode is not None:
            wanted = np.where(frame["family"] == "deep", mode, "features")
            mask &= (frame["mode"].to_numpy() == wanted)
        if method_keys is not None:
            mask &= frame["method_key"].isin(list(method_keys)).to_numpy()
        if fingerprints is not None:
            mask &= frame["data_fingerprint"].isin(list(fingerprints)).to_numpy()
        return frame[mask].reset_index(drop=True)

    def arrays(self, cell_key: str) -> dict[str, np.ndarray]:
        if cell_key not in self._arrays:
            record = self.records[cell_key]
            self._arrays[cell_key] = self.store.load_arrays(Cell.from_dict(record["cell"]))
        return self._arrays[cell_key]

    def cached(self, key, compute):
        """``compute()`` once per key for this read of the store (e.g. the bootstrap intervals a
        table, REPORT.md and report.html all show)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def per_query_ap(self, rows: pd.DataFrame, policy: str = "tie_aware") -> dict[int, np.ndarray]:
        """Per-query AP arrays by seed for the given rows (one method and setting)."""
        return {int(row.seed): self.arrays(row.cell_key)[f"ap_{policy}"] for row in rows.itertuples()}


def as_results(source, dataset: str | None = None) -> StoredResults:
    """A ``StoredResults`` from itself or from a ``ResultStore`` (read once)."""
    if isinstance(source, StoredResults):
        return source
    if isinstance(source, ResultStore):
        return StoredResults.load(source, dataset)
    raise TypeError(f"expected a ResultStore or StoredResults, got {type(source).__name__}.")
