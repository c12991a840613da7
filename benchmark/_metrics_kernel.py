"""The evaluator's compiled single pass (numba): per query, Hamming distances to the whole database
folded into per-distance histograms plus the index-order sums that AP, AP@k and precision@k need.

Imported lazily by ``benchmark.metrics`` (its ``backend="numba"``); the NumPy path there is the
reference this kernel is tested against. Compiled on first use and cached on disk (``cache=True``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def popcount64(typingctx, value):
    """Number of set bits of a uint64 (LLVM ``ctpop``: one POPCNT instruction on x86-64)."""
    if not isinstance(value, types.Integer) or value.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(value), codegen


@njit(nogil=True, cache=True)
def query_statistics(query_words, query_class, database_words, relevant_order, class_starts, cutoffs,
                     total, relevant, index_sum, index_hits):
    """Fill, for every query row q (the four output arrays must be zero on entry):

    ``total[q, d]``, ``relevant[q, d]``: database items / relevant items at Hamming distance d;
    ``index_sum[q, c]``: the sum of P(rank) over the relevant items whose stable (index-order) rank
    is <= ``cutoffs[c]``; ``index_hits[q, c]``: how many relevant items that is.

    Inputs: ``query_words`` (nq, W) uint64 rows, ``query_class`` (nq,) class ids,
    ``database_words`` (ndb * W,) uint64, item j's words at [j*W, (j+1)*W);
    ``relevant_order`` the database indices grouped by class, ascending within a class, class c's
    at ``relevant_order[class_starts[c]:class_starts[c + 1]]``.

    One walk of the database in index order per query, split at the query's relevant items (so the
    inner loop tests no label): d = popcount(q XOR x_j), total[d] += 1 (into two interleaved
    histograms, which breaks the store-to-load chain when neighbours share a distance); at a
    relevant item also relevant[d] += 1 and a record (d, items so far at d, relevant items so far at
    d). After the walk, with before[d] the items at a smaller distance, the item's stable rank is
    before[d] + its position at d, and its rank among the relevant items likewise: no sort.
    """
    n_queries, n_words = query_words.shape
    n_database = database_words.shape[0] // n_words
    n_cutoffs = cutoffs.shape[0]
    n_distances = total.shape[1]
    max_relevant = 0
    for q in range(n_queries):
        max_relevant = max(max_relevant, class_starts[query_class[q] + 1] - class_starts[query_class[q]])
    record_distance = np.empty(max_relevant, dtype=np.int64)
    record_position = np.empty(max_relevant, dtype=np.int64)
    record_hits = np.empty(max_relevant, dtype=np.int64)
    counts = np.empty((2, n_distances), dtype=np.int64)
    before = np.empty(n_distances, dtype=np.int64)
    relevant_before = np.empty(n_distances, dtype=np.int64)
    for q in range(n_queries):
        counts[:] = 0
        even = counts[0]
        odd = counts[1]
        hits = relevant[q]
        first, last = class_starts[query_class[q]], class_starts[query_class[q] + 1]
        query = query_words[q]
        start = 0
        found = 0
        for t in range(first, last + 1):
            stop = relevant_order[t] if t < last else n_database  # the next relevant item, or the end
            if n_words == 1:
                word = query[0]
                segment = database_words[start:stop]
                pairs = segment.shape[0] // 2
                for i in range(pairs):
                    even[popcount64(word ^ segment[2 * i])] += 1
                    odd[popcount64(word ^ segment[2 * i + 1])] += 1
                if segment.shape[0] % 2:
                    even[popcount64(word ^ segment[segment.shape[0] - 1])] += 1
            else:
                segment = database_words[start * n_words:stop * n_words]
                for i in range(stop - start):
                    d = 0
                    for w in range(n_words):
                        d += popcount64(query[w] ^ segment[i * n_words + w])
                    even[d] += 1
            if t < last:
                d = 0
                for w in range(n_words):
                    d += popcount64(query[w] ^ database_words[stop * n_words + w])
                even[d] += 1
                hits[d] += 1
                record_distance[found] = d
                record_position[found] = even[d] + odd[d]
                record_hits[found] = hits[d]
                found += 1
            start = stop + 1
        items_so_far = 0
        relevant_so_far = 0
        for d in range(n_distances):
            total[q, d] = even[d] + odd[d]
            before[d] = items_so_far
            relevant_before[d] = relevant_so_far
            items_so_far += total[q, d]
            relevant_so_far += hits[d]
        for i in range(found):
            d = record_distance[i]
            rank = before[d] + record_position[i]
            precision = (relevant_before[d] + record_hits[i]) / rank
            for c in range(n_cutoffs):
                if rank <= cutoffs[c]:
                    index_sum[q, c] += precision
                    index_hits[q, c] += 1
