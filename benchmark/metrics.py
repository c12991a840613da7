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

Algorithm: no per-query sort. For each query, the distances to the database (XOR + popcount on packed
64-bit words) go into one histogram keyed by (segment, distance), where segment ``t`` is the stretch
of the database between the (t-1)-th and t-th relevant item in index order. Its cumulative sums give
the index-order rank of every relevant item and the per-distance counts that the tie-aware formula
needs. Queries that repeat both code and class are ranked once. Memory is O(n_database) per thread
plus O(chunk_size * l_q); the inputs aside, the ImageNet100 size (5,000 x 128,503, 64 bits) needs
about 16 MB. Speed and memory: ``python benchmarks/bench_evaluator.py``.
"""
from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

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


def _as_words(packed: np.ndarray) -> np.ndarray:
    """uint8 (n, B) -> uint64 (W, n), zero-padded to whole 64-bit words, word-major for fast XOR."""
    n, n_bytes = packed.shape
    n_words = (n_bytes + 7) // 8
    padded = np.zeros((n, n_words * 8), dtype=np.uint8)
    padded[:, :n_bytes] = packed
    return np.ascontiguousarray(padded.view(np.uint64).T)


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
             chunk_size: int = 1024, n_threads: int = 1) -> EvaluationResult:
    """Evaluate {-1,+1} codes (n, K): Hamming ranking of the database for every query.

    ``topk``: None = MAP over the whole database (the paper's MAP), else MAP@topk.
    ``precision_ks``: cutoffs for precision@k. ``pr_curve``: also compute precision/recall by radius.
    ``chunk_size``: queries processed together (bounds memory at O(chunk_size * items per class)).
    ``n_threads``: worker threads, each taking whole chunks of one class's queries (NumPy releases
    the GIL in the heavy steps); results do not depend on it. The default (1) leaves the cores to
    other work, e.g. ``--jobs`` cells; 2 threads on 2 cores about halve the wall-clock time.
    """
    query_codes = _check_sign_codes(query_codes, "query_codes")
    database_codes = _check_sign_codes(database_codes, "database_codes")
    if query_codes.shape[1] != database_codes.shape[1]:
        raise EvaluationInputError(
            f"query codes have {query_codes.shape[1]} bits but database codes have "
            f"{database_codes.shape[1]}; encode both with the same fitted method."
        )
    return evaluate_packed(pack_codes(query_codes), pack_codes(database_codes), query_labels,
                           database_labels, n_bits=query_codes.shape[1], topk=topk,
                           precision_ks=precision_ks, pr_curve=pr_curve, chunk_size=chunk_size,
                           n_threads=n_threads)


def evaluate_packed(packed_query, packed_database, query_labels, database_labels, *, n_bits: int,
                    topk: int | None = None, precision_ks: Iterable[int] = (100, 1000),
                    pr_curve: bool = True, chunk_size: int = 1024, n_threads: int = 1,
                    _histogram_limit: float = 4.0) -> EvaluationResult:
    """Like :func:`evaluate` for codes already packed by :func:`pack_codes` (uint8, n_bits given)."""
    packed_query = _check_packed(packed_query, n_bits, "packed_query")
    packed_database = _check_packed(packed_database, n_bits, "packed_database")
    n_queries, n_database = packed_query.shape[0], packed_database.shape[0]
    if n_queries == 0 or n_database == 0:
        raise EvaluationInputError(
            f"need at least one query and one database item, got {n_queries} and {n_database}."
        )
    query_labels = _check_labels(query_labels, n_queries, "query_labels")
    database_labels = _check_labels(database_labels, n_database, "database_labels")
    topk = _check_topk(topk, n_database)
    precision_ks = _check_ks(precision_ks)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise EvaluationInputError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise EvaluationInputError(f"n_threads must be a positive integer, got {n_threads!r}.")
    n_bits = int(n_bits)

    # Class ids shared by queries and database (labels may be any comparable values).
    try:
        classes, class_ids = np.unique(np.concatenate([database_labels, query_labels]), return_inverse=True)
    except TypeError as error:
        raise EvaluationInputError(f"query and database labels cannot be compared: {error}.") from None
    database_class, query_class = class_ids[:n_database], class_ids[n_database:]

    database_words = _as_words(packed_database)
    # Queries with the same code and class have the same metrics: rank each distinct one once
    # (learned codes repeat a lot), then copy the results back (``expand``) before averaging.
    all_query_class = query_class
    _, distinct, expand = np.unique(np.column_stack([query_class.astype(np.uint64), _as_words(packed_query).T]),
                                    axis=0, return_index=True, return_inverse=True)
    expand = expand.reshape(-1)
    query_class = query_class[distinct]
    query_words = _as_words(packed_query[distinct])
    n_distinct = distinct.size
    n_distances = n_bits + 1
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n_database + 1))])

    ap_tie = np.zeros(n_distinct)
    ap_index = np.zeros(n_distinct)
    precision_tie = {k: np.zeros(n_distinct) for k in precision_ks}
    precision_index = {k: np.zeros(n_distinct) for k in precision_ks}
    pr_precision = np.zeros((n_distinct, n_distances)) if pr_curve else None
    pr_recall = np.zeros((n_distinct, n_distances)) if pr_curve else None

    database_order = np.argsort(database_class, kind="stable")
    class_starts = np.searchsorted(database_class[database_order], np.arange(len(classes) + 1))
    queries_by_class = np.argsort(query_class, kind="stable")
    query_class_starts = np.searchsorted(query_class[queries_by_class], np.arange(len(classes) + 1))
    # Work units: the queries of one class, in chunks (at least one per thread when a class has
    # many queries). Each unit writes only its own rows of the result arrays, so units can run on
    # threads; each thread owns a ranker (its buffers) that it re-targets when the class changes.
    units = []
    for class_id in range(len(classes)):
        queries = queries_by_class[query_class_starts[class_id]:query_class_starts[class_id + 1]]
        relevant = database_order[class_starts[class_id]:class_starts[class_id + 1]]  # ascending
        if queries.size == 0 or relevant.size == 0:
            continue  # no relevant item: every metric stays 0 (module docstring)
        size = min(chunk_size, -(-queries.size // n_threads))
        units.extend((class_id, relevant, queries[start:start + size]) for start in range(0, queries.size, size))

    rankers = queue.SimpleQueue()
    for _ in range(min(n_threads, max(len(units), 1))):
        rankers.put(_RelevantRanker(database_words, n_bits))

    def run_unit(unit) -> None:
        class_id, relevant, chunk = unit
        ranker = rankers.get()
        try:
            if ranker.class_id != class_id:
                ranker.set_relevant(relevant, _histogram_limit)
                ranker.class_id = class_id
            ranks = np.empty((chunk.size, relevant.size), dtype=np.int64)
            at_most = np.empty((chunk.size, n_distances), dtype=np.int64)
            relevant_distances = np.empty((chunk.size, relevant.size), dtype=_distance_dtype(n_bits))
            chunk_words = query_words[:, chunk]
            for row in range(chunk.size):
                ranker.rank_into(chunk_words[:, row], ranks[row], at_most[row], relevant_distances[row])
        finally:
            rankers.put(ranker)
        total_histogram = np.diff(at_most, axis=1, prepend=0)
        relevant_histogram = _row_bincount(relevant_distances, n_distances)
        ap_tie[chunk] = _tie_aware_ap(total_histogram, relevant_histogram, topk, harmonic)
        ranks.sort(axis=1)
        ap_index[chunk] = _index_order_ap(ranks, topk)
        for k in precision_ks:
            cutoff = min(k, n_database)
            precision_tie[k][chunk] = _expected_relevant_in_top(total_histogram, relevant_histogram,
                                                                cutoff) / cutoff
            precision_index[k][chunk] = (ranks <= cutoff).sum(axis=1) / cutoff
        if pr_curve:
            retrieved = np.cumsum(total_histogram, axis=1)
            relevant_retrieved = np.cumsum(relevant_histogram, axis=1)
            pr_precision[chunk] = np.divide(relevant_retrieved, retrieved, out=np.zeros(retrieved.shape),
                                            where=retrieved > 0)
            pr_recall[chunk] = relevant_retrieved / relevant.size

    if n_threads > 1 and len(units) > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run_unit, units))
    else:
        for unit in units:
            run_unit(unit)

    ap_tie, ap_index = ap_tie[expand], ap_index[expand]
    precision_tie = {k: v[expand] for k, v in precision_tie.items()}
    precision_index = {k: v[expand] for k, v in precision_index.items()}
    relevant_per_class = np.bincount(database_class, minlength=len(classes))
    n_without = int(np.count_nonzero(relevant_per_class[all_query_class] == 0))
    curve = None
    if pr_curve:
        curve = {"radius": np.arange(n_distances), "precision": pr_precision[expand].mean(axis=0),
                 "recall": pr_recall[expand].mean(axis=0)}
    return EvaluationResult(
        ap_tie_aware=ap_tie, ap_index_order=ap_index,
        map_tie_aware=float(ap_tie.mean()), map_index_order=float(ap_index.mean()), topk=topk,
        precision_at_k={k: float(v.mean()) for k, v in precision_tie.items()},
        precision_at_k_index_order={k: float(v.mean()) for k, v in precision_index.items()},
        pr_curve=curve, n_queries_without_relevant=n_without, n_queries=n_queries,
        n_database=n_database, n_bits=n_bits,
    )


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


def _index_order_ap(sorted_ranks: np.ndarray, topk: int | None) -> np.ndarray:
    """AP from the ascending ranks (1-based positions) of each query's relevant items."""
    hits = np.arange(1, sorted_ranks.shape[1] + 1)
    precision_at_hits = hits / sorted_ranks
    if topk is None:
        return precision_at_hits.mean(axis=1)
    inside = sorted_ranks <= topk
    n_inside = inside.sum(axis=1)
    total = np.where(inside, precision_at_hits, 0.0).sum(axis=1)
    return np.divide(total, n_inside, out=np.zeros(len(total)), where=n_inside > 0)


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


def _tie_aware_ap(total_histogram, relevant_histogram, topk, harmonic) -> np.ndarray:
    """Expected AP (or AP@topk) over random orders of tied items, from per-distance counts."""
    items_before = np.cumsum(total_histogram, axis=1) - total_histogram
    relevant_before = np.cumsum(relevant_histogram, axis=1) - relevant_histogram
    if topk is None:
        group_sums = _tie_aware_group_sum(items_before, relevant_before, total_histogram,
                                          relevant_histogram, total_histogram, harmonic)
        return group_sums.sum(axis=1) / relevant_histogram.sum(axis=1)

    inside = items_before + total_histogram <= topk  # whole group within the top k
    group_sums = _tie_aware_group_sum(items_before, relevant_before, total_histogram,
                                      relevant_histogram, total_histogram, harmonic)
    full_sum = np.where(inside, group_sums, 0.0).sum(axis=1)
    relevant_inside = np.where(inside, relevant_histogram, 0).sum(axis=1)
    # the one group (if any) that the cutoff splits: a < k < a + n
    straddle = (items_before < topk) & ~inside
    has_straddle = straddle.any(axis=1)
    group = straddle.argmax(axis=1)
    rows = np.arange(total_histogram.shape[0])
    a = np.where(has_straddle, items_before[rows, group], 0)
    n = np.where(has_straddle, total_histogram[rows, group], 1)
    r = np.where(has_straddle, relevant_histogram[rows, group], 0)
    m = np.where(has_straddle, topk - a, 1)
    # X = relevant items of the group that land in its first m places ~ Hypergeometric(n, r, m);
    # given X = x they are spread uniformly over those m places (same closed form with r -> x, n -> m).
    max_x = int(np.minimum(r, m).max()) if len(r) else 0
    x = np.arange(max_x + 1)[None, :]
    probability = _hypergeometric_pmf(x, n[:, None], r[:, None], m[:, None])
    partial_sum = _tie_aware_group_sum(a[:, None], relevant_inside[:, None], m[:, None], x,
                                       m[:, None], harmonic)
    relevant_in_top = relevant_inside[:, None] + x
    ratio = np.divide(full_sum[:, None] + partial_sum, relevant_in_top,
                      out=np.zeros(partial_sum.shape), where=relevant_in_top > 0)
    return (probability * ratio).sum(axis=1)


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
