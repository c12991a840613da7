"""Result store: one record per benchmark cell, written atomically, doubling as the run cache.

A cell is (dataset, IF, bits, method spec, seed, mode, split seed). Its record is a JSON file
(metrics, timings, hyperparameters, versions, training log) plus an .npz beside it (per-query AP
for both tie policies, packed codes, query/database labels), so metrics can be recomputed from
stored codes without re-training. The JSON is written last: a cell is finished iff it exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np

from common.errors import BenchmarkError

RECORD_VERSION = 1


class StoreError(BenchmarkError, RuntimeError):
    """A result store that cannot be read or written; the message names the file and the fix."""


@dataclass(frozen=True, order=True)
class Cell:
    dataset: str
    imbalance_factor: float
    n_bits: int
    method: str  # canonical method spec key, e.g. "LTHNet(k=3)"
    seed: int = 0
    mode: str = "features"
    split_seed: int = 0

    @property
    def key(self) -> str:
        return (f"{self.dataset}|IF={self.imbalance_factor:g}|bits={self.n_bits}|{self.method}"
                f"|seed={self.seed}|mode={self.mode}|split={self.split_seed}")

    def describe(self) -> str:
        return (f"{self.method} on {self.dataset} IF={self.imbalance_factor:g} {self.n_bits} bits "
                f"seed {self.seed} ({self.mode} mode)")

    @property
    def file_stem(self) -> str:
        readable = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{self.method}_IF{self.imbalance_factor:g}_{self.n_bits}b_s{self.seed}")
        digest = hashlib.sha1(self.key.encode()).hexdigest()[:10]
        return f"{readable}_{digest}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _atomic_write_bytes(path: str, write) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return repr(value)


class ResultStore:
    """Records under ``root/records/<dataset>/<mode>/``; everything else the run writes goes beside."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    # ------------------------------------------------------------------ paths
    def _base(self, cell: Cell) -> str:
        return os.path.join(self.root, "records", cell.dataset.replace(":", "_").replace(os.sep, "_"),
                            cell.mode, cell.file_stem)

    def record_path(self, cell: Cell) -> str:
        return self._base(cell) + ".json"

    def arrays_path(self, cell: Cell) -> str:
        return self._base(cell) + ".npz"

    # ------------------------------------------------------------------ read / write
    def has(self, cell: Cell) -> bool:
        return os.path.exists(self.record_path(cell)) and os.path.exists(self.arrays_path(cell))

    def write(self, cell: Cell, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Write one cell: arrays first, then the JSON record (both atomically)."""
        record = {"record_version": RECORD_VERSION, "cell": cell.to_dict(), "cell_key": cell.key, **record}
        payload = json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode()
        _atomic_write_bytes(self.arrays_path(cell), lambda h: np.savez_compressed(h, **arrays))
        _atomic_write_bytes(self.record_path(cell), lambda h: h.write(payload))

    def load_record(self, cell_or_path) -> dict:
        path = cell_or_path if isinstance(cell_or_path, str) else self.record_path(cell_or_path)
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise StoreError(
                f"cannot read result record {path} ({error}); delete it and re-run that cell "
                "(or run with --force)."
            ) from error

    def load_arrays(self, cell: Cell) -> dict[str, np.ndarray]:
        path = self.arrays_path(cell)
        try:
            with np.load(path) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError) as error:
            raise StoreError(
                f"cannot read result arrays {path} ({error}); delete the cell's files and re-run it."
            ) from error

    def records(self, dataset: str | None = None, mode: str | None = None) -> Iterator[dict]:
        """Every finished record (optionally of one dataset / mode), in a stable order."""
        base = os.path.join(self.root, "records")
        if not os.path.isdir(base):
            return
        for dirpath, _dirs, files in sorted(os.walk(base)):
            for name in sorted(files):
                if not name.endswith(".json") or name.startswith(".tmp-"):
                    continue
                record = self.load_record(os.path.join(dirpath, name))
                cell = record["cell"]
                if dataset is not None and cell["dataset"] != dataset:
                    continue
                if mode is not None and cell["mode"] != mode:
                    continue
                yield record

    def cells(self, **filters) -> list[Cell]:
        return [Cell.from_dict(r["cell"]) for r in self.records(**filters)]
