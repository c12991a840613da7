"""Result store: one record per benchmark cell, written atomically, doubling as the run cache.

A cell is (dataset, IF, bits, method spec, seed, mode, split seed, data fingerprint). Its record is a
JSON file (metrics, timings, hyperparameters, versions, training log) plus an .npz beside it
(per-query AP for both tie policies, packed codes, query/database labels), so metrics can be
recomputed from stored codes without re-training. The arrays are written first and the JSON last:
a cell is finished iff both load.

Robustness rules (each tested in tests/benchmark/test_store.py):
- a record or arrays file that does not load (truncated, empty, not JSON / not a zip) is named,
  moved aside under ``<root>/set_aside/`` (never deleted) and its cell counts as not stored, so the
  next run recomputes it; ``ResultStore.set_aside`` lists what was moved in this process;
- a cell being computed is claimed by a claim file beside its record, so concurrent runs (and Dask
  workers) on one folder split the work; the claim of a dead process (same host, pid gone) or one
  whose heartbeat stopped (``CLAIM_STALE_SECONDS``) does not block anybody;
- files get the permissions an ordinary write would give (the umask), so a lab can share a store;
- ``check_writable`` fails before any training when the folder cannot be written.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import threading
import time
import zipfile
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np

from common.errors import BenchmarkError
from common.io import atomic_write, file_slug

RECORD_VERSION = 2  # 2: cells carry the fingerprint of the data they were computed on
CLAIM_STALE_SECONDS = 180.0  # a claim whose heartbeat is older than this is abandoned
CLAIM_HEARTBEAT_SECONDS = 30.0


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
    data_fingerprint: str = ""  # sha256 of the rows, labels and split the cell uses (datasets fingerprint)

    @property
    def key(self) -> str:
        return (f"{self.dataset}|IF={self.imbalance_factor:g}|bits={self.n_bits}|{self.method}"
                f"|seed={self.seed}|mode={self.mode}|split={self.split_seed}|data={self.data_fingerprint}")

    def describe(self) -> str:
        return (f"{self.method} on {self.dataset} IF={self.imbalance_factor:g} {self.n_bits} bits "
                f"seed {self.seed} ({self.mode} mode)")

    @property
    def file_stem(self) -> str:
        readable = file_slug(f"{self.method}_IF{self.imbalance_factor:g}_{self.n_bits}b_s{self.seed}")
        digest = hashlib.sha1(self.key.encode()).hexdigest()[:10]
        return f"{readable}_{digest}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


class ResultStore:
    """Records under ``root/records/<dataset>/<mode>/``; everything else the run writes goes beside."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.set_aside: list[tuple[str, str]] = []  # (moved-to path, reason), this process

    # ------------------------------------------------------------------ paths
    def _base(self, cell: Cell) -> str:
        return os.path.join(self.root, "records", file_slug(cell.dataset), cell.mode, cell.file_stem)

    def record_path(self, cell: Cell) -> str:
        return self._base(cell) + ".json"

    def arrays_path(self, cell: Cell) -> str:
        return self._base(cell) + ".npz"

    def claim_path(self, cell: Cell) -> str:
        return self._base(cell) + ".claim"

    # ------------------------------------------------------------------ checks
    def check_writable(self) -> None:
        """Fail now, before any training, if records cannot be written under the root."""
        probe_dir = os.path.join(self.root, "records")
        try:
            os.makedirs(probe_dir, exist_ok=True)
            atomic_write(os.path.join(probe_dir, ".write-probe"), b"probe")
            os.unlink(os.path.join(probe_dir, ".write-probe"))
        except OSError as error:
            raise StoreError(
                f"the results folder {self.root} is not writable ({error.strerror or error}); pass "
                "--results-dir with a folder you can write to, or fix its permissions.") from None

    # ------------------------------------------------------------------ read / write
    def has(self, cell: Cell) -> bool:
        """True when the cell's record and arrays both load; broken files are set aside (and the
        cell then counts as not stored, so it is recomputed)."""
        record_path, arrays_path = self.record_path(cell), self.arrays_path(cell)
        if not os.path.exists(record_path):
            if os.path.exists(arrays_path):  # arrays without a record: an interrupted write
                self._set_aside(arrays_path, "arrays without a record (an interrupted write)")
            return False
        return self._check_record(record_path) is not None

    def _check_record(self, record_path: str) -> dict | None:
        """The record if it and its arrays load, else None after setting both aside."""
        arrays_path = record_path[:-len(".json")] + ".npz"
        try:
            with open(record_path, encoding="utf-8") as handle:
                record = json.load(handle)
            if not isinstance(record, dict) or "cell" not in record:
                raise ValueError("not a result record")
        except (OSError, ValueError) as error:
            self._set_aside_cell(record_path, arrays_path, f"record does not load ({type(error).__name__}: {error})")
            return None
        try:
            with zipfile.ZipFile(arrays_path) as archive:  # reads the directory only: cheap
                archive.namelist()
        except (OSError, zipfile.BadZipFile, ValueError) as error:
            self._set_aside_cell(record_path, arrays_path, f"arrays do not load ({type(error).__name__}: {error})")
            return None
        return record

    def _set_aside_cell(self, record_path: str, arrays_path: str, reason: str) -> None:
        for path in (record_path, arrays_path):
            if os.path.exists(path):
                self._set_aside(path, reason)

    def _set_aside(self, path: str, reason: str) -> None:
        relative = os.path.relpath(path, os.path.join(self.root, "records"))
        target = os.path.join(self.root, "set_aside", time.strftime("%Y%m%d-%H%M%S"), relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another process set it aside first
            return
        self.set_aside.append((target, reason))

    def write(self, cell: Cell, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Write one cell: arrays first, then the JSON record (both atomically)."""
        record = {"record_version": RECORD_VERSION, "cell": cell.to_dict(), "cell_key": cell.key, **record}
        payload = json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode()
        atomic_write(self.arrays_path(cell), lambda handle: np.savez_compressed(handle, **arrays))
        atomic_write(self.record_path(cell), payload)

    def load_record(self, cell_or_path) -> dict:
        path = cell_or_path if isinstance(cell_or_path, str) else self.record_path(cell_or_path)
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise StoreError(
                f"cannot read result record {path} ({error}); re-run the grid: the cell is set aside and "
                "recomputed (or delete the file)."
            ) from error

    def load_arrays(self, cell: Cell) -> dict[str, np.ndarray]:
        path = self.arrays_path(cell)
        try:
            with np.load(path) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise StoreError(
                f"cannot read result arrays {path} ({type(error).__name__}: {error}); re-run the grid: the "
                "cell is set aside and recomputed."
            ) from error

    def records(self, dataset: str | None = None, mode: str | None = None) -> Iterator[dict]:
        """Every finished record (optionally of one dataset / mode), in a stable order; records
        whose files do not load are set aside (``self.set_aside``) and skipped."""
        base = os.path.join(self.root, "records")
        if not os.path.isdir(base):
            return
        for dirpath, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith(".json") or name.startswith(".tmp-"):
                    continue
                record = self._check_record(os.path.join(dirpath, name))
                if record is None:
                    continue
                cell = record["cell"]
                if dataset is not None and cell["dataset"] != dataset:
                    continue
                if mode is not None and cell["mode"] != mode:
                    continue
                yield record

    def cells(self, **filters) -> list[Cell]:
        return [Cell.from_dict(r["cell"]) for r in self.records(**filters)]

    # ------------------------------------------------------------------ claims
    def claim(self, cell: Cell) -> bool:
        """Claim a cell for this process; False when a live process holds it. A stale claim (its
        process dead on this host, or no heartbeat for ``CLAIM_STALE_SECONDS``) is taken over."""
        path = self.claim_path(cell)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        payload = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                              "started": time.time()}).encode()
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = self.claim_holder(cell)
                if holder is not None and not holder["stale"]:
                    return False
                try:
                    os.unlink(path)  # stale: take it over
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            return True
        return False

    def claim_holder(self, cell: Cell) -> dict | None:
        """Who holds a cell's claim (host, pid, started, stale), or None when nobody does."""
        path = self.claim_path(cell)
        try:
            with open(path, encoding="utf-8") as handle:
                holder = json.load(handle)
            age = time.time() - os.path.getmtime(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"host": "?", "pid": -1, "started": 0.0, "stale": True}
        same_host = holder.get("host") == socket.gethostname()
        holder["stale"] = (same_host and not _pid_alive(int(holder.get("pid", -1)))) or age > CLAIM_STALE_SECONDS
        return holder

    def release(self, cell: Cell) -> None:
        try:
            os.unlink(self.claim_path(cell))
        except FileNotFoundError:
            pass

    def heartbeat(self, cell: Cell) -> "ClaimHeartbeat":
        """A context manager that keeps a claim fresh while its cell is computed."""
        return ClaimHeartbeat(self.claim_path(cell))


class ClaimHeartbeat:
    """Touches a claim file every ``CLAIM_HEARTBEAT_SECONDS`` from a daemon thread while active."""

    def __init__(self, path: str, interval: float = CLAIM_HEARTBEAT_SECONDS):
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                os.utime(self.path)
            except OSError:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=1.0)
        return False
