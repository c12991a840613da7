"""The evaluator: Hamming ranking of packed binary codes, and MAP / precision@k / precision-recall.

It sees only codes and labels (never which method made them) and returns per-query AP arrays.

Conventions (each one is tested in ``tests/benchmark/test_metrics.py``)
-----------------------------------------------------------------------
Relevance
    A database item is relevant to a query when it has the same label (single-label data).

Average precision (paper §6.2)
    ``AP(q) = (1 / l_q) * sum_r P(r) rel(r)`` over the ranking of the whole database by Hamming
    distance; ``l_q`` is the number of relevant items in the database, ``P(r)`` the precision of the
    first ``r`` items, ``rel(r)`` whether the ``r``-th item is relevant.

Top-k (``topk``)
    ``topk=None`` (the default, the paper's MAP) ranks ALL database items; ``topk >= n_database``
    is the same thing. No item is ever dropped (public evaluators that slice ``[:topk]`` with
    ``topk = -1`` lose the last item; we do not). For ``topk = k < n_database``, AP@k sums over the
    first ``k`` positions and divides by the number of relevant items *within the top k* (the
    convention of the public deep-hashing evaluators); a query with no relevant item in its top k
    has AP@k = 0. At ``k = n_database`` this denominator equals ``l_q``, so AP@k is continuous with AP.

Tie policies (both are always computed and returned)
    Hamming distances are integers 0..K, so many database items tie.
    ``"tie_aware"`` (the tables' default): the expected AP over all orderings of tied items, each
    equally likely (McSherry & Najork, "Computing Information Retrieval Performance Measures
    Efficiently in the Presence of Tied Scores", ECIR 2008). Computed exactly in closed form (see
    ``_tie_aware_group_sum``); for AP@k the expectation is taken of the ratio, i.e. the random
    number of relevant items in the top k is handled exactly through its hypergeometric law.
    ``"index_order"``: ties broken by database index (a stable sort), as the MATLAB baselines do.

Queries without any relevant database item
    Their AP (and AP@k, precision@k, precision and recall at every radius) is 0 and they ARE counted
    in every mean; how many there were is reported as ``n_queries_without_relevant``.

precision@k
    ``precision_at_k`` is the tie-aware expected precision of the first k items;
    ``precision_at_k_index_order`` the index-order one. A k larger than the database is clipped to
    the database size (the whole database is retrieved).

Precision-recall by Hamming radius
    For radius ``r = 0..K`` the retrieved set is ``{items with distance <= r}`` (no tie issue):
    precision = relevant retrieved / retrieved, recall = relevant retrieved / l_q, both averaged over
    all queries. An empty retrieved set has precision 0 (and recall 0), and is counted in the mean.

Algorithm: no per-query sort. Every metric is computed from a few per-query statistics: the
number of database items and of relevant items at each Hamming distance, and, for each cutoff k,
the index-order sum of P(rank) over the relevant items ranked within k and their number. Two
backends compute them and give the same numbers (tested to 1e-12): ``backend="numba"``
(``benchmark/_metrics_kernel.py``: one compiled walk of the database per query, XOR + popcount on
64-bit words, one histogram increment per item, the relevant items' stable ranks read off the
running counts) and ``backend="numpy"``, the reference (distances for one query at a time into one
histogram keyed by (segment, distance), segment ``t`` being the stretch of the database between the
(t-1)-th and t-th relevant item in index order; its cumulative sums give every relevant item's
index-order rank). ``backend="auto"`` (the default) takes numba when it imports and compiles.
Queries that repeat both code and class are ranked once. Memory is O(n_database) per thread plus
O(chunk_size * l_q) (NumPy) or O(chunk_size * K + l_q) (numba); the inputs aside, the ImageNet100 size
(5,000 x 128,503, 64 bits) needs about 16 MB. Speed and memory, against a compiled floor that only
counts: ``python benchmarks/bench_evaluator.py``. :func:`metric_card` gives the numbers the
literature reports (docs/metrics.md) from the same statistics.
"""
from __future__ import annotations

import os
import queue
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from common.checks import check_nonnegative_int, check_positive_int
from common.errors import InvalidValueError

TIE_POLICIES = ("tie_aware", "index_order")
_POPCOUNT_TABLE = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


class EvaluationInputError(InvalidValueError):
    """Codes or labels the evaluator cannot use; the message says what is wrong and what to do."""


# ----------------------------------------------------------------------------------------------
# Packing and Hamming distances
# ----------------------------------------------------------------------------------------------
def _check_sign_codes(codes, name: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise EvaluationInputError(
            f"{name} must be a 2-D array (n_items, n_bits) of -1/+1 codes, got shape {codes.shape}."
        )
    if codes.shape[1] == 0:
        raise EvaluationInputError(f"{name} has 0 bits; pass codes with at least one bit.")
    if not (np.issubdtype(codes.dtype, np.number) or codes.dtype == bool):
        raise EvaluationInputError(f"{name} must be numeric -1/+1 codes, got dtype {codes.dtype}.")
    if codes.dtype == bool or not np.all((codes == 1) | (codes == -1)):
        found = np.unique(codes)[:5]
        hint = " (0/1 codes: convert with 2 * codes - 1)" if np.isin(found, (0, 1)).all() else ""
        raise EvaluationInputError(
            f"{name} must contain only -1 and +1, found values such as {found.tolist()}{hint}; "
            "binarise with np.where(x >= 0, 1, -1)."
        )
    return codes


def pack_codes(codes) -> np.ndarray:
    """Pack {-1,+1} codes (n, K) into uint8 (n, ceil(K/8)): bit 1 for +1, most significant bit first.

    Padding bits of the last byte are 0, as ``np.packbits`` writes them.
    """
    codes = _check_sign_codes(codes, "codes")
    return np.packbits(codes > 0, axis=1)


def unpack_codes(packed, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: uint8 (n, ceil(n_bits/8)) -> int8 {-1,+1} (n, n_bits)."""
    packed = _check_packed(packed, n_bits, "packed")
    bits = np.unpackbits(packed, axis=1, count=n_bits)
    return (bits.astype(np.int8) * 2 - 1).astype(np.int8)


def _check_packed(packed, n_bits, name: str) -> np.ndarray:
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits < 1:
        raise EvaluationInputError(f"n_bits must be a positive integer, got {n_bits!r}.")
    packed = np.asarray(packed)
    if packed.ndim != 2 or packed.dtype != np.uint8:
        raise EvaluationInputError(
            f"{name} must be a 2-D uint8 array of packed codes (pack_codes output), "
            f"got dtype {packed.dtype} and shape {packed.shape}."
        )
    n_bytes = (int(n_bits) + 7) // 8
    if packed.shape[1] != n_bytes:
        raise EvaluationInputError(
            f"{name} has {packed.shape[1]} bytes per code but n_bits={n_bits} needs {n_bytes}; "
            "pack query and database codes of the same bit length with pack_codes."
        )
    spare = 8 * n_bytes - int(n_bits)
    if spare and packed.size and np.any(packed[:, -1] & np.uint8((1 << spare) - 1)):
        raise EvaluationInputError(
            f"{name} has non-zero padding bits in its last byte (n_bits={n_bits}); "
            "pack codes with pack_codes (np.packbits) so padding bits are 0."
        )
    return packed


def _as_rows(packed: np.ndarray) -> np.ndarray:
    """uint8 (n, B) -> uint64 (n, W), zero-padded to whole 64-bit words, one row per code."""
    n, n_bytes = packed.shape
    n_words = (n_bytes + 7) // 8
    padded = np.zeros((n, n_words * 8), dtype=np.uint8)
    padded[:, :n_bytes] = packed
    return padded.view(np.uint64)


def _as_words(packed: np.ndarray) -> np.ndarray:
    """uint8 (n, B) -> uint64 (W, n), word-major for fast XOR (see :func:`_as_rows`)."""
    return np.ascontiguousarray(_as_rows(packed).T)


_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")
# ufunc.at got its fast path in NumPy 1.25; before that np.bincount is the faster counter
_FAST_UFUNC_AT = tuple(int(part) for part in np.__version__.split(".")[:2]) >= (1, 25)


def _popcount(words: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-element popcount of a uint64 array -> uint8 (np.bitwise_count, else a byte lookup table)."""
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(words, out=out)
    counts = _POPCOUNT_TABLE[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8)
    if out is None:
        return counts
    out[...] = counts
    return out


def _distance_dtype(n_bits: int):
    return np.uint8 if n_bits <= 255 else np.uint16


def _row_distances(database_words: np.ndarray, query_words: np.ndarray, xor_buffer, distance_buffer):
    """Hamming distances of one query (words (W,)) to the whole database (words (W, ndb))."""
    np.bitwise_xor(database_words[0], query_words[0], out=xor_buffer)
    if database_words.shape[0] == 1 and distance_buffer.dtype == np.uint8:
        return _popcount(xor_buffer, out=distance_buffer)
    distance_buffer[...] = _popcount(xor_buffer)
    for word in range(1, database_words.shape[0]):
        np.bitwise_xor(database_words[word], query_words[word], out=xor_buffer)
        distance_buffer += _popcount(xor_buffer)
    return distance_buffer


def hamming_distances(packed_query, packed_database, n_bits: int | None = None) -> np.ndarray:
    """Hamming distances (nq, ndb) between packed codes (XOR + popcount); uint8, or uint16 above 255 bits.

    Padding bits must be 0 (as :func:`pack_codes` writes them). ``n_bits`` (optional) is validated.
    """
    packed_query = np.asarray(packed_query)
    packed_database = np.asarray(packed_database)
    n_bits = 8 * packed_query.shape[-1] if n_bits is None else n_bits
    packed_query = _check_packed(packed_query, n_bits, "packed_query")
    packed_database = _check_packed(packed_database, n_bits, "packed_database")
    database_words = _as_words(packed_database)
    query_words = _as_words(packed_query)
    n_database = packed_database.shape[0]
    distances = np.empty((packed_query.shape[0], n_database), dtype=_distance_dtype(n_bits))
    xor_buffer = np.empty(n_database, dtype=np.uint64)
    for row in range(packed_query.shape[0]):
        _row_distances(database_words, query_words[:, row], xor_buffer, distances[row])
    return distances


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    """Per-query and mean retrieval metrics under both tie policies (see the module docstring)."""

    ap_tie_aware: np.ndarray
    ap_index_order: np.ndarray
    map_tie_aware: float
    map_index_order: float
    topk: int | None
    precision_at_k: dict = field(default_factory=dict)
    precision_at_k_index_order: dict = field(default_factory=dict)
    pr_curve: dict | None = None
    n_queries_without_relevant: int = 0
    n_queries: int = 0
    n_database: int = 0
    n_bits: int = 0

    def average_precision(self, policy: str = "tie_aware") -> np.ndarray:
        """Per-query AP under ``policy`` ("tie_aware" or "index_order")."""
        return getattr(self, f"ap_{_check_policy(policy)}")

    def mean_average_precision(self, policy: str = "tie_aware") -> float:
        """MAP under ``policy`` ("tie_aware" or "index_order")."""
        return getattr(self, f"map_{_check_policy(policy)}")


def _check_policy(policy: str) -> str:
    if policy not in TIE_POLICIES:
        raise EvaluationInputError(f"tie policy must be one of {TIE_POLICIES}, got {policy!r}.")
    return policy


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------
def evaluate(query_codes, database_codes, query_labels, database_labels, *, topk: int | None = None,
             precision_ks: Iterable[int] = (100, 1000), pr_curve: bool = True,
             chunk_size: int = 1024, n_threads: int = 1, backend: str = "auto") -> EvaluationResult:
    """Evaluate {-1,+1} codes (n, K): Hamming ranking of the database for every query.

    ``topk``: None = MAP over the whole database (the paper's MAP), else MAP@topk.
    ``precision_ks``: cutoffs for precision@k. ``pr_curve``: also compute precision/recall by radius.
    ``chunk_size``: queries processed together (bounds memory at O(chunk_size * items per class)).
    ``n_threads``: worker threads, each taking whole chunks of queries (the compiled kernel and
    NumPy's heavy steps release the GIL); results do not depend on it. The default (1) leaves the
    cores to other work, e.g. ``--jobs`` cells; 2 threads on 2 cores about halve the wall-clock time.
    ``backend``: "numba" (the compiled single pass), "numpy" (the reference) or "auto" (numba when
    it imports and compiles, else numpy; the environment variable ``LTH_EVALUATOR_BACKEND`` set to
    "numpy" or "numba" overrides "auto"). Both give the same numbers (tested to 1e-12).
    """
    packed_query, packed_database, n_bits = _pack_pair(query_codes, database_codes)
    return evaluate_packed(packed_query, packed_database, query_labels, database_labels, n_bits=n_bits,
                           topk=topk, precision_ks=precision_ks, pr_curve=pr_curve,
                           chunk_size=chunk_size, n_threads=n_threads, backend=backend)


def evaluate_packed(packed_query, packed_database, query_labels, database_labels, *, n_bits: int,
                    topk: int | None = None, precision_ks: Iterable[int] = (100, 1000),
                    pr_curve: bool = True, chunk_size: int = 1024, n_threads: int = 1,
                    backend: str = "auto", _histogram_limit: float = 4.0) -> EvaluationResult:
    """Like :func:`evaluate` for codes already packed by :func:`pack_codes` (uint8, n_bits given)."""
    problem = _Problem(packed_query, packed_database, query_labels, database_labels, n_bits)
    n_database = problem.n_database
    topk = _check_topk(topk, n_database)
    precision_ks = _check_ks(precision_ks)
    chunk_size = check_positive_int(chunk_size, "chunk_size", error=EvaluationInputError)
    n_threads = check_positive_int(n_threads, "n_threads", error=EvaluationInputError)
    kernel = _resolve_backend(backend)

    ap_cut = n_database if topk is None else topk
    cutoffs = sorted({ap_cut, *(min(k, n_database) for k in precision_ks)})
    column = {cutoff: position for position, cutoff in enumerate(cutoffs)}
    n_distinct, harmonic = problem.n_distinct, problem.harmonic
    ap_tie = np.zeros(n_distinct)
    ap_index = np.zeros(n_distinct)
    precision_tie = {k: np.zeros(n_distinct) for k in precision_ks}
    precision_index = {k: np.zeros(n_distinct) for k in precision_ks}
    pr_precision = np.zeros((n_distinct, problem.n_distances)) if pr_curve else None
    pr_recall = np.zeros((n_distinct, problem.n_distances)) if pr_curve else None

    def consume(rows, stats: _Statistics) -> None:
        ap_tie[rows] = _tie_aware_ap(stats.total, stats.relevant, topk, harmonic)
        ap_index[rows] = _ratio(stats.index_sum[:, column[ap_cut]],
                                stats.n_relevant if topk is None else stats.index_hits[:, column[ap_cut]])
        for k in precision_ks:
            cutoff = min(k, n_database)
            precision_tie[k][rows] = _expected_relevant_in_top(stats.total, stats.relevant, cutoff) / cutoff
            precision_index[k][rows] = stats.index_hits[:, column[cutoff]] / cutoff
        if pr_curve:
            retrieved = np.cumsum(stats.total, axis=1)
            relevant_retrieved = np.cumsum(stats.relevant, axis=1)
            pr_precision[rows] = _ratio(relevant_retrieved, retrieved)
            pr_recall[rows] = _ratio(relevant_retrieved, stats.n_relevant[:, None])

    problem.run(cutoffs, chunk_size, n_threads, kernel, _histogram_limit, consume)

    expand = problem.expand
    ap_tie, ap_index = ap_tie[expand], ap_index[expand]
    curve = None
    if pr_curve:
        curve = {"radius": np.arange(problem.n_distances), "precision": pr_precision[expand].mean(axis=0),
                 "recall": pr_recall[expand].mean(axis=0)}
    return EvaluationResult(
        ap_tie_aware=ap_tie, ap_index_order=ap_index,
        map_tie_aware=float(ap_tie.mean()), map_index_order=float(ap_index.mean()), topk=topk,
        precision_at_k={k: float(v[expand].mean()) for k, v in precision_tie.items()},
        precision_at_k_index_order={k: float(v[expand].mean()) for k, v in precision_index.items()},
        pr_curve=curve, n_queries_without_relevant=problem.n_without_relevant,
        n_queries=problem.n_queries, n_database=n_database, n_bits=problem.n_bits,
    )


def metric_card(query_codes, database_codes, query_labels, database_labels, *, n_bits: int | None = None,
                ks: Iterable[int] = (1000, 5000), radius: int = 2, chunk_size: int = 1024,
                n_threads: int = 1, backend: str = "auto") -> dict:
    """The retrieval numbers the literature reports, from codes in one pass: a dict of floats.

    Codes are {-1,+1} arrays (n, K), or uint8 arrays packed by :func:`pack_codes` when ``n_bits``
    is given. Keys (definitions in docs/metrics.md; policy is "tie_aware" or "index_order"):
    ``map@all/<policy>``; for each k in ``ks``, ``map@<k>/retrieved/<policy>`` (AP@k divided by
    the relevant items in the top k, as ``evaluate(topk=k)``) and ``map@<k>/min_k_l/<policy>``
    (divided by min(k, relevant items in the database)); ``precision@r<radius>`` (mean over all
    queries, an empty Hamming ball counting 0), ``precision@r<radius>/nonempty`` (mean over the
    queries whose ball is not empty; NaN if there are none), ``empty_r<radius>_share``;
    ``n_queries``, ``n_database``, ``n_bits`` and ``n_queries_without_relevant`` (as floats).
    Other options as in :func:`evaluate`.
    """
    if n_bits is None:
        packed_query, packed_database, n_bits = _pack_pair(query_codes, database_codes)
    else:
        packed_query, packed_database = query_codes, database_codes
    problem = _Problem(packed_query, packed_database, query_labels, database_labels, n_bits)
    n_database = problem.n_database
    ks = _check_ks(ks)
    radius = check_nonnegative_int(radius, "radius", error=EvaluationInputError)
    chunk_size = check_positive_int(chunk_size, "chunk_size", error=EvaluationInputError)
    n_threads = check_positive_int(n_threads, "n_threads", error=EvaluationInputError)
    kernel = _resolve_backend(backend)

    cutoffs = sorted({n_database, *(min(k, n_database) for k in ks)})
    column = {cutoff: position for position, cutoff in enumerate(cutoffs)}
    ball = min(radius, problem.n_bits) + 1  # distances 0..radius
    n_distinct, harmonic = problem.n_distinct, problem.harmonic
    per_query = {key: np.zeros(n_distinct) for key in ("map@all/tie_aware", "map@all/index_order",
                                                      "ball_precision", "ball_empty")}
    for k in ks:
        for normalisation in ("retrieved", "min_k_l"):
            for policy in TIE_POLICIES:
                per_query[f"map@{k}/{normalisation}/{policy}"] = np.zeros(n_distinct)

    def consume(rows, stats: _Statistics) -> None:
        total, relevant, n_relevant = stats.total, stats.relevant, stats.n_relevant
        all_column = column[n_database]
        per_query["map@all/tie_aware"][rows] = _tie_aware_ap(total, relevant, None, harmonic)
        per_query["map@all/index_order"][rows] = _ratio(stats.index_sum[:, all_column], n_relevant)
        for k in ks:
            cutoff = min(k, n_database)
            sums, hits = stats.index_sum[:, column[cutoff]], stats.index_hits[:, column[cutoff]]
            best_possible = np.minimum(cutoff, n_relevant)
            tie_topk = None if cutoff == n_database else cutoff
            per_query[f"map@{k}/retrieved/tie_aware"][rows] = _tie_aware_ap(total, relevant, tie_topk, harmonic)
            per_query[f"map@{k}/retrieved/index_order"][rows] = _ratio(sums, hits)
            per_query[f"map@{k}/min_k_l/tie_aware"][rows] = _ratio(
                _tie_aware_topk_sum(total, relevant, cutoff, harmonic), best_possible)
            per_query[f"map@{k}/min_k_l/index_order"][rows] = _ratio(sums, best_possible)
        retrieved = total[:, :ball].sum(axis=1)
        per_query["ball_precision"][rows] = _ratio(relevant[:, :ball].sum(axis=1), retrieved)
        per_query["ball_empty"][rows] = retrieved == 0

    problem.run(cutoffs, chunk_size, n_threads, kernel, 4.0, consume)

    values = {key: column_values[problem.expand] for key, column_values in per_query.items()}
    empty = values.pop("ball_empty").astype(bool)
    ball_precision = values.pop("ball_precision")
    card = {key: float(column_values.mean()) for key, column_values in values.items()}
    card[f"precision@r{radius}"] = float(ball_precision.mean())
    card[f"precision@r{radius}/nonempty"] = float(ball_precision[~empty].mean()) if (~empty).any() else float("nan")
    card[f"empty_r{radius}_share"] = float(empty.mean())
    card.update(n_queries=float(problem.n_queries), n_database=float(n_database),
                n_bits=float(problem.n_bits), n_queries_without_relevant=float(problem.n_without_relevant))
    return card


def _pack_pair(query_codes, database_codes):
    """Check and pack {-1,+1} query and database codes of one bit length -> (packed, packed, n_bits)."""
    query_codes = _check_sign_codes(query_codes, "query_codes")
    database_codes = _check_sign_codes(database_codes, "database_codes")
    if query_codes.shape[1] != database_codes.shape[1]:
        raise EvaluationInputError(
            f"query codes have {query_codes.shape[1]} bits but database codes have "
            f"{database_codes.shape[1]}; encode both with the same fitted method."
        )
    return pack_codes(query_codes), pack_codes(database_codes), query_codes.shape[1]


def _ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator (broadcast), 0 where the denominator is 0 (module docstring)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, dtype=np.float64), denominator)
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=denominator > 0)


# ----------------------------------------------------------------------------------------------
# Backends: the per-query statistics every metric is computed from
# ----------------------------------------------------------------------------------------------
BACKENDS = ("auto", "numba", "numpy")
BACKEND_ENVIRONMENT_VARIABLE = "LTH_EVALUATOR_BACKEND"
_KERNEL_STATE: dict = {}  # "kernel" (the compiled function) or "reason" (why it is unavailable)
_KERNEL_LOCK = threading.Lock()


@dataclass
class _Statistics:
    """Per query row: items / relevant items at each distance (rows x (K+1), int64), the
    index-order sum of P(rank) over relevant items ranked within each cutoff and their number
    (rows x cutoffs), and the relevant items in the database (rows,)."""

    total: np.ndarray
    relevant: np.ndarray
    index_sum: np.ndarray
    index_hits: np.ndarray
    n_relevant: np.ndarray


def _load_kernel():
    """The compiled kernel, or None and the reason (numba missing, failing to import or compile)."""
    with _KERNEL_LOCK:
        if not _KERNEL_STATE:
            try:
                from benchmark._metrics_kernel import query_statistics

                # compile (or load from the on-disk cache) now, on the argument types used below
                words = np.zeros((1, 1), dtype=np.uint64)
                query_statistics(words, np.zeros(1, dtype=np.int64), words.reshape(-1),
                                 np.zeros(1, dtype=np.int64), np.array([0, 1], dtype=np.int64),
                                 np.ones(1, dtype=np.int64), np.zeros((1, 65), dtype=np.int64),
                                 np.zeros((1, 65), dtype=np.int64), np.zeros((1, 1)),
                                 np.zeros((1, 1), dtype=np.int64))
                _KERNEL_STATE["kernel"] = query_statistics
            except Exception as error:  # ImportError, or numba failing on this NumPy / platform
                _KERNEL_STATE["reason"] = f"{type(error).__name__}: {error}"
                if not isinstance(error, ModuleNotFoundError):  # installed but broken: say so once
                    warnings.warn(f"the compiled evaluator is unavailable ({_KERNEL_STATE['reason']}); "
                                  "using the NumPy path, which gives the same numbers more slowly. "
                                  "A numba that matches this NumPy fixes it.", RuntimeWarning, stacklevel=4)
        return _KERNEL_STATE.get("kernel"), _KERNEL_STATE.get("reason")


def _resolve_backend(backend):
    """The kernel to use (None = the NumPy path) for ``backend`` ("auto", "numba" or "numpy")."""
    if backend not in BACKENDS:
        raise EvaluationInputError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "auto":
        forced = os.environ.get(BACKEND_ENVIRONMENT_VARIABLE, "").strip().lower()
        if forced and forced not in BACKENDS:
            raise EvaluationInputError(
                f"{BACKEND_ENVIRONMENT_VARIABLE}={forced!r} is not one of {BACKENDS}; unset it or fix it."
            )
        backend = forced or "auto"
    if backend == "numpy":
        return None
    kernel, reason = _load_kernel()
    if kernel is None and backend == "numba":
        raise EvaluationInputError(
            f"backend='numba' needs a working numba ({reason}); install it with "
            "pip install 'numba>=0.59', or pass backend='numpy'."
        )
    return kernel


class _Problem:
    """Validated inputs as class ids and 64-bit words, with the distinct (code, class) queries.

    Queries with the same code and class have the same metrics: each distinct one is ranked once
    (learned codes repeat a lot) and ``expand`` maps them back to all queries before averaging.
    """

    def __init__(self, packed_query, packed_database, query_labels, database_labels, n_bits):
        packed_query = _check_packed(packed_query, n_bits, "packed_query")
        packed_database = _check_packed(packed_database, n_bits, "packed_database")
        self.n_queries, self.n_database = packed_query.shape[0], packed_database.shape[0]
        if self.n_queries == 0 or self.n_database == 0:
            raise EvaluationInputError(
                f"need at least one query and one database item, got {self.n_queries} and {self.n_database}."
            )
        query_labels = _check_labels(query_labels, self.n_queries, "query_labels")
        database_labels = _check_labels(database_labels, self.n_database, "database_labels")
        self.n_bits = int(n_bits)
        self.n_distances = self.n_bits + 1
        # Class ids shared by queries and database (labels may be any comparable values).
        try:
            classes, class_ids = np.unique(np.concatenate([database_labels, query_labels]), return_inverse=True)
        except TypeError as error:
            raise EvaluationInputError(f"query and database labels cannot be compared: {error}.") from None
        class_ids = class_ids.reshape(-1).astype(np.int64)
        self.n_classes = len(classes)
        self.database_class, query_class = class_ids[:self.n_database], class_ids[self.n_database:]
        query_rows = _as_rows(packed_query)
        _, distinct, expand = np.unique(np.column_stack([query_class.astype(np.uint64), query_rows]),
                                        axis=0, return_index=True, return_inverse=True)
        self.expand = expand.reshape(-1)
        self.query_class = query_class[distinct]
        self.query_rows = np.ascontiguousarray(query_rows[distinct])  # (n_distinct, W) uint64
        self.n_distinct = distinct.size
        self.database_rows = _as_rows(packed_database)
        # database indices grouped by class, ascending within a class
        self.database_order = np.argsort(self.database_class, kind="stable")
        self.class_starts = np.searchsorted(self.database_class[self.database_order],
                                            np.arange(self.n_classes + 1)).astype(np.int64)
        relevant_per_class = np.diff(self.class_starts)
        self.n_relevant = relevant_per_class[self.query_class]
        self.n_without_relevant = int(np.count_nonzero(relevant_per_class[query_class] == 0))
        self.harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, self.n_database + 1))])

    def run(self, cutoffs, chunk_size, n_threads, kernel, histogram_limit, consume) -> None:
        """Call ``consume(rows, _Statistics)`` for chunks of the distinct queries, covering each once.

        ``kernel`` None: the NumPy path, in units of one class's queries; else the compiled kernel,
        in chunks of consecutive queries. Units run on ``n_threads`` threads; each ``consume``
        writes only its own rows. The statistics are exact integers and index-order sums, so the
        results do not depend on the chunking or the threads.
        """
        cutoffs = np.asarray(cutoffs, dtype=np.int64)
        if kernel is None:
            units, work = self._numpy_units(cutoffs, chunk_size, n_threads, histogram_limit)
        else:
            # chunks of chunk_size whatever the threads, so results do not change with them, bit for bit
            units = [(np.arange(start, min(start + chunk_size, self.n_distinct)), None)
                     for start in range(0, self.n_distinct, chunk_size)]
            database_words = self.database_rows.reshape(-1)

            def work(unit) -> _Statistics:
                rows = unit[0]
                shape = (rows.size, self.n_distances)
                stats = _Statistics(np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64),
                                    np.zeros((rows.size, cutoffs.size)),
                                    np.zeros((rows.size, cutoffs.size), dtype=np.int64), self.n_relevant[rows])
                kernel(self.query_rows[rows], self.query_class[rows], database_words, self.database_order,
                       self.class_starts, cutoffs, stats.total, stats.relevant, stats.index_sum,
                       stats.index_hits)
                return stats

        def run_unit(unit) -> None:
            consume(unit[0], work(unit))

        if n_threads > 1 and len(units) > 1:
            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(run_unit, units))
        else:
            for unit in units:
                run_unit(unit)

    def _numpy_units(self, cutoffs, chunk_size, n_threads, histogram_limit):
        """Units (chunks of one class's queries) and the NumPy worker that ranks them."""
        queries_by_class = np.argsort(self.query_class, kind="stable")
        query_class_starts = np.searchsorted(self.query_class[queries_by_class], np.arange(self.n_classes + 1))
        units = []  # (query rows, class id)
        for class_id in range(self.n_classes):
            queries = queries_by_class[query_class_starts[class_id]:query_class_starts[class_id + 1]]
            if queries.size == 0:
                continue
            size = min(chunk_size, -(-queries.size // n_threads))
            for start in range(0, queries.size, size):
                units.append((queries[start:start + size], class_id))
        database_words = np.ascontiguousarray(self.database_rows.T)
        query_words = np.ascontiguousarray(self.query_rows.T)
        rankers = queue.SimpleQueue()
        for _ in range(min(n_threads, max(len(units), 1))):
            rankers.put(_RelevantRanker(database_words, self.n_bits))
        n_distances, distance_dtype = self.n_distances, _distance_dtype(self.n_bits)

        def work(unit) -> _Statistics:
            chunk, class_id = unit
            relevant = self.database_order[self.class_starts[class_id]:self.class_starts[class_id + 1]]
            ranker = rankers.get()
            try:
                if ranker.class_id != class_id:
                    ranker.set_relevant(relevant, histogram_limit)
                    ranker.class_id = class_id
                ranks = np.empty((chunk.size, relevant.size), dtype=np.int64)
                at_most = np.empty((chunk.size, n_distances), dtype=np.int64)
                relevant_distances = np.empty((chunk.size, relevant.size), dtype=distance_dtype)
                chunk_words = query_words[:, chunk]
                for row in range(chunk.size):
                    ranker.rank_into(chunk_words[:, row], ranks[row], at_most[row], relevant_distances[row])
            finally:
                rankers.put(ranker)
            ranks.sort(axis=1)
            index_sum, index_hits = _index_order_sums(ranks, cutoffs)
            return _Statistics(np.diff(at_most, axis=1, prepend=0),
                               _row_bincount(relevant_distances, n_distances), index_sum, index_hits,
                               np.full(chunk.size, relevant.size, dtype=np.int64))

        return units, work


# ----------------------------------------------------------------------------------------------
# Index-order ranks of the relevant items, without sorting the database
# ----------------------------------------------------------------------------------------------
class _RelevantRanker:
    """Per-thread buffers, and the per-class layout of the (distance, segment) histogram.

    Segment ``t`` of the database is the items after the (t-1)-th relevant item up to and including
    the t-th one (index order). With key = distance * (l + 1) + segment, the cumulative histogram at
    the key of the t-th relevant item counts the items at a smaller distance plus the items at the
    same distance with an index up to its own: exactly its 1-based rank under a stable sort.
    Keys are built in the narrowest unsigned type that holds them (uint16 up to 65,536 keys, e.g.
    64-bit codes with classes of up to 1,007 database items), then counted with ``np.add.at`` on
    intp indices (NumPy >= 1.25; ~1.4x faster than ``np.bincount``, which first scans the keys'
    range) or ``np.bincount`` on older NumPy. Counting is the dear part of the whole evaluator.
    """

    def __init__(self, database_words: np.ndarray, n_bits: int):
        self.class_id = None
        self.database_words = database_words
        self.n_distances = n_bits + 1
        n_database = database_words.shape[1]
        self.xor_buffer = np.empty(n_database, dtype=np.uint64)
        self.distance_buffer = np.empty(n_database, dtype=_distance_dtype(n_bits))

    def set_relevant(self, relevant: np.ndarray, histogram_limit: float) -> None:
        n_database = self.database_words.shape[1]
        self.relevant = relevant
        self.stride = relevant.size + 1
        self.n_keys = self.stride * self.n_distances
        self.use_histogram = self.n_keys <= histogram_limit * n_database
        if self.use_histogram:
            key_dtype = np.uint16 if self.n_keys <= 1 << 16 else np.uint32 if self.n_keys <= 1 << 32 else np.uint64
            self.key_stride = key_dtype(self.stride)
            self.key_buffer = np.empty(n_database, dtype=key_dtype)
            self.index_buffer = np.empty(n_database, dtype=np.intp)
            self.count_buffer = np.empty(self.n_keys, dtype=np.intp)
            is_relevant = np.zeros(n_database, dtype=np.intp)
            is_relevant[relevant] = 1
            # relevant items before each item
            self.segment = (np.cumsum(is_relevant) - is_relevant).astype(key_dtype)
            self.relevant_segment = np.arange(relevant.size, dtype=np.intp)
            self.relevant_key_buffer = np.empty(relevant.size, dtype=np.intp)
            self.cumulative_buffer = np.empty(self.n_keys, dtype=np.int64)
            self.last_of_distance = np.arange(1, self.n_distances + 1) * self.stride - 1

    def rank_into(self, query_words: np.ndarray, ranks: np.ndarray, at_most: np.ndarray,
                  relevant_distances: np.ndarray) -> None:
        """Write one query's stable ranks of the relevant items (index order of ``relevant``), the
        number of database items at distance <= d for every d, and the relevant items' distances
        into the given rows."""
        distances = _row_distances(self.database_words, query_words, self.xor_buffer,
                                   self.distance_buffer)
        np.take(distances, self.relevant, out=relevant_distances)
        if self.use_histogram:
            keys = np.multiply(distances, self.key_stride, out=self.key_buffer)
            np.add(keys, self.segment, out=keys)
            if _FAST_UFUNC_AT:
                np.copyto(self.index_buffer, keys)
                self.count_buffer.fill(0)
                np.add.at(self.count_buffer, self.index_buffer, 1)
                counts = self.count_buffer
            else:
                counts = np.bincount(keys, minlength=self.n_keys)
            cumulative = np.cumsum(counts, out=self.cumulative_buffer)
            relevant_keys = np.multiply(relevant_distances, self.stride, out=self.relevant_key_buffer,
                                        dtype=np.intp)
            np.add(relevant_keys, self.relevant_segment, out=relevant_keys)
            np.take(cumulative, relevant_keys, out=ranks)
            np.take(cumulative, self.last_of_distance, out=at_most)
        else:  # a class so large that the histogram would dwarf the database: stable radix sort
            order = np.argsort(distances, kind="stable")
            position = np.empty(distances.size, dtype=np.int64)
            position[order] = np.arange(1, distances.size + 1)
            np.take(position, self.relevant, out=ranks)
            np.cumsum(np.bincount(distances, minlength=self.n_distances), out=at_most)


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------
def _check_labels(labels, n_items: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise EvaluationInputError(
            f"{name} must be 1-D (one class label per item), got shape {labels.shape}; "
            "convert one-hot labels with labels.argmax(axis=1)."
        )
    if labels.shape[0] != n_items:
        raise EvaluationInputError(
            f"{name} has {labels.shape[0]} labels but there are {n_items} codes; "
            "pass one label per code, in the same order."
        )
    if labels.dtype.kind in "fc" and np.isnan(labels).any():
        raise EvaluationInputError(
            f"{name} contains NaN at {int(np.isnan(labels).sum())} position(s); every item needs a "
            "class label (a NaN label would silently match other NaN labels)."
        )
    return labels


def _check_topk(topk, n_database: int):
    if topk is None:
        return None
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise EvaluationInputError(
            f"topk must be None (rank the whole database) or a positive integer, got {topk!r}; "
            "do not use -1 for 'all'."
        )
    return None if topk >= n_database else int(topk)


def _check_ks(precision_ks) -> tuple:
    if precision_ks is None:
        return ()
    ks = tuple(precision_ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise EvaluationInputError(f"precision_ks must be positive integers, got {k!r}.")
    return tuple(dict.fromkeys(int(k) for k in ks))


# ----------------------------------------------------------------------------------------------
# Metric formulas on per-distance histograms (rows = queries, columns = distance 0..K)
# ----------------------------------------------------------------------------------------------
def _row_bincount(values: np.ndarray, n_bins: int) -> np.ndarray:
    n_rows = values.shape[0]
    keys = values.astype(np.intp)  # one cast, then same-type arithmetic (mixed types are slow)
    keys += (np.arange(n_rows, dtype=np.intp) * n_bins)[:, None]
    return np.bincount(keys.ravel(), minlength=n_rows * n_bins).reshape(n_rows, n_bins)


def _index_order_sums(sorted_ranks: np.ndarray, cutoffs: np.ndarray):
    """From the ascending ranks (1-based positions) of each query's relevant items: for each cutoff
    c, the sum of P(rank) over the relevant items ranked <= c, and how many they are."""
    n_rows, n_relevant = sorted_ranks.shape
    index_hits = np.stack([(sorted_ranks <= cutoff).sum(axis=1) for cutoff in cutoffs], axis=1)
    index_hits = index_hits.reshape(n_rows, len(cutoffs)).astype(np.int64)
    if n_relevant == 0:
        return np.zeros(index_hits.shape), index_hits
    precision_at_hits = np.arange(1, n_relevant + 1) / sorted_ranks
    running = np.cumsum(precision_at_hits, axis=1)
    index_sum = np.take_along_axis(running, np.maximum(index_hits - 1, 0), axis=1)
    return np.where(index_hits > 0, index_sum, 0.0), index_hits


def _tie_aware_group_sum(items_before, relevant_before, group_size, group_relevant, positions,
                         harmonic):
    """Expected sum of P(rank) * rel(rank) over the first ``positions`` places of a tied group.

    The group occupies ranks (a, a + n] with a = items_before, n = group_size; it holds
    r = group_relevant relevant items, R = relevant_before relevant items rank before it, and all
    n! orders of the group are equally likely. A relevant item of the group is at group position
    i (1..n) with probability 1/n; given that, the other r-1 relevant items of the group fill the
    i-1 places before it hypergeometrically, on average (i-1)(r-1)/(n-1) of them. So (linearity of
    expectation) the expected sum over positions i <= m is

        (r/n) * sum_{i=1..m} (R + 1 + (i-1)(r-1)/(n-1)) / (a + i)
      = (r/n) * [ m*c1 + (R + 1 - c1*(a+1)) * (H(a+m) - H(a)) ],   c1 = (r-1)/(n-1) (0 when n = 1)

    with H the harmonic numbers (write (i-1) = (a+i) - (a+1)). m = n gives the whole group.
    """
    items_before = np.asarray(items_before)
    group_size = np.asarray(group_size, dtype=np.float64)
    group_relevant = np.asarray(group_relevant, dtype=np.float64)
    positions = np.asarray(positions)
    slope = np.divide(group_relevant - 1, group_size - 1, out=np.zeros(np.broadcast(
        group_relevant, group_size).shape), where=group_size > 1)
    harmonic_span = harmonic[items_before + positions] - harmonic[items_before]
    inner = positions * slope + (relevant_before + 1 - slope * (items_before + 1)) * harmonic_span
    return np.divide(group_relevant * inner, group_size, out=np.zeros(inner.shape), where=group_size > 0)


def _tie_aware_cut(total_histogram, relevant_histogram, topk, harmonic):
    """The pieces of a top-``topk`` cut under random tie orders, per row: the expected sum of
    P(rank) * rel(rank) over the groups wholly inside the cut, their relevant items, and the one
    group (if any) that the cut splits: items before it a, its size n, its relevant items r and
    its places inside the cut m (n = 1, r = 0, m = 1 when no group is split)."""
    items_before = np.cumsum(total_histogram, axis=1) - total_histogram
    relevant_before = np.cumsum(relevant_histogram, axis=1) - relevant_histogram
    inside = items_before + total_histogram <= topk  # whole group within the top k
    group_sums = _tie_aware_group_sum(items_before, relevant_before, total_histogram,
                                      relevant_histogram, total_histogram, harmonic)
    full_sum = np.where(inside, group_sums, 0.0).sum(axis=1)
    relevant_inside = np.where(inside, relevant_histogram, 0).sum(axis=1)
    straddle = (items_before < topk) & ~inside  # a < k < a + n
    has_straddle = straddle.any(axis=1)
    group = straddle.argmax(axis=1)
    rows = np.arange(total_histogram.shape[0])
    a = np.where(has_straddle, items_before[rows, group], 0)
    n = np.where(has_straddle, total_histogram[rows, group], 1)
    r = np.where(has_straddle, relevant_histogram[rows, group], 0)
    m = np.where(has_straddle, topk - a, 1)
    return full_sum, relevant_inside, a, n, r, m


def _tie_aware_ap(total_histogram, relevant_histogram, topk, harmonic) -> np.ndarray:
    """Expected AP (or AP@topk, divided by the relevant items in the top k) over random orders of
    tied items, from per-distance counts; 0 for a row without relevant items."""
    if topk is None:
        items_before = np.cumsum(total_histogram, axis=1) - total_histogram
        relevant_before = np.cumsum(relevant_histogram, axis=1) - relevant_histogram
        group_sums = _tie_aware_group_sum(items_before, relevant_before, total_histogram,
                                          relevant_histogram, total_histogram, harmonic)
        return _ratio(group_sums.sum(axis=1), relevant_histogram.sum(axis=1))
    full_sum, relevant_inside, a, n, r, m = _tie_aware_cut(total_histogram, relevant_histogram, topk, harmonic)
    # X = relevant items of the split group that land in its first m places ~ Hypergeometric(n, r, m);
    # given X = x they are spread uniformly over those m places (same closed form with r -> x, n -> m).
    max_x = int(np.minimum(r, m).max()) if len(r) else 0
    x = np.arange(max_x + 1)[None, :]
    probability = _hypergeometric_pmf(x, n[:, None], r[:, None], m[:, None])
    partial_sum = _tie_aware_group_sum(a[:, None], relevant_inside[:, None], m[:, None], x,
                                       m[:, None], harmonic)
    ratio = _ratio(full_sum[:, None] + partial_sum, relevant_inside[:, None] + x)
    return (probability * ratio).sum(axis=1)


def _tie_aware_topk_sum(total_histogram, relevant_histogram, topk: int, harmonic) -> np.ndarray:
    """E[sum of P(rank) * rel(rank) over the first ``topk`` places] under random tie orders (the
    numerator of AP@k divided by min(k, l_q), whose denominator is not random): linearity of
    expectation over the places of the split group."""
    full_sum, relevant_inside, a, n, r, m = _tie_aware_cut(total_histogram, relevant_histogram, topk, harmonic)
    return full_sum + _tie_aware_group_sum(a, relevant_inside, n, r, m, harmonic)


def _hypergeometric_pmf(x, population, successes, draws) -> np.ndarray:
    """P(X = x) for X ~ Hypergeometric(population, successes, draws); 0 outside the support."""
    from scipy.special import gammaln

    x, population, successes, draws = np.broadcast_arrays(x, population, successes, draws)
    valid = (x <= successes) & (draws - x <= population - successes) & (x <= draws) & (x >= 0)
    xs = np.where(valid, x, 0)

    def log_choose(n, k):
        return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)

    log_p = (log_choose(successes, xs) + log_choose(population - successes, np.where(valid, draws - xs, 0))
             - log_choose(population, draws))
    return np.where(valid, np.exp(log_p), 0.0)


def _expected_relevant_in_top(total_histogram, relevant_histogram, cutoff: int) -> np.ndarray:
    """Expected number of relevant items among the first ``cutoff`` under random tie orders."""
    items_before = np.cumsum(total_histogram, axis=1) - total_histogram
    inside = np.minimum(np.maximum(cutoff - items_before, 0), total_histogram)  # (np.clip is slow here)
    fraction = np.divide(inside, total_histogram,
                         out=np.zeros(total_histogram.shape), where=total_histogram > 0)
    return (relevant_histogram * fraction).sum(axis=1)
