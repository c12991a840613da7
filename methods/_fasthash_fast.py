"""FastHash's fast engine: drives the numba kernels (trees grown level by level, Dinic block cuts).

Same model as the reference engine in ``methods/fasthash.py`` (scikit-learn ``TreeGrower`` + PyMaxflow);
the kernels are in ``methods/_fasthash_kernels.py``. Imported only when numba is installed.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE, X_BITSET_INNER_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

from . import _fasthash_kernels as kernels

MAX_TREE_DEPTH = 6  # histograms are kept for every inner node: 2^depth - 1 of them
MISSING_BIN = 255  # scikit-learn's missing-value bin; FeatureBins never produces it
N_BINS = 256
MIN_HESSIAN_TO_SPLIT = 1e-3  # TreeGrower default
L2_REGULARIZATION = 0.0  # as the reference engine passes to TreeGrower
MIN_WORK_PER_THREAD = 250_000  # histogram entries (samples x features) per tree below which one thread is used


def feature_chunks(n_features: int, n_threads: int, n_samples: int) -> list[tuple[int, int]]:
    """Contiguous feature ranges, one per thread (fewer threads when the work is small)."""
    threads = max(1, min(int(n_threads), n_features, (n_samples * n_features) // MIN_WORK_PER_THREAD))
    edges = np.linspace(0, n_features, threads + 1).round().astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(threads)]


class _Chunked:
    """Runs a nogil kernel over feature chunks: chunk 0 in the calling thread, the others in a pool."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.pool = ThreadPoolExecutor(len(chunks) - 1) if len(chunks) > 1 else None

    def run(self, function, make_args):
        futures = [self.pool.submit(function, *make_args(c, k0, k1))
                   for c, (k0, k1) in enumerate(self.chunks) if c > 0]
        function(*make_args(0, *self.chunks[0]))
        for future in futures:
            future.result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


class TreeData:
    """What every tree of a fit shares: the binned features (Fortran order), the root's per-bin
    sample counts (the same for every tree), the bin thresholds padded to a matrix."""

    def __init__(self, X_binned: np.ndarray, bins):
        self.XF = np.asfortranarray(X_binned, dtype=np.uint8)
        self.root_counts = kernels.root_counts(self.XF).astype(np.int32)
        self.n_levels = np.asarray(bins.n_levels, dtype=np.int64)
        self.thresholds = np.zeros((self.XF.shape[1], N_BINS), dtype=np.float64)
        for j, cuts in enumerate(bins.thresholds):
            self.thresholds[j, :cuts.size] = cuts


def fit_trees(data: TreeData, positive, weights, base: float, params: dict, rng, n_threads: int):
    """Boosting of one bit, as ``fasthash.fit_boosted_bit`` with scikit-learn's grower: returns the
    list of ``TreePredictor`` and the training decision values."""
    XF = data.XF
    n, d = XF.shape
    depth = int(params["tree_depth"])
    min_samples_leaf = int(params["min_samples_leaf"])
    shrinkage = float(params["learning_rate"])
    n_features = min(int(params["n_features_per_tree"]), d)
    n_slots = 2 ** (depth + 1) - 1
    hist = np.empty((2 ** depth - 1, n_features, N_BINS, 2), dtype=np.float64)  # gradient, hessian sums
    counts = np.empty((2 ** depth - 1, n_features, N_BINS), dtype=np.int32)
    gh = np.empty((n, 2), dtype=np.float32)
    ordered_gh = np.empty((n, 2), dtype=np.float32)
    part = np.empty(n, dtype=np.int32)
    buffer = np.empty(n, dtype=np.int32)
    nint = np.zeros((n_slots, kernels.N_INT), dtype=np.int64)
    nflt = np.zeros((n_slots, kernels.N_FLT), dtype=np.float64)
    chunked = _Chunked(feature_chunks(n_features, n_threads, n))
    best_i = np.empty((len(chunked.chunks), n_slots, 3), dtype=np.int64)
    best_f = np.empty((len(chunked.chunks), n_slots, 3), dtype=np.float64)
    out = np.empty((n_slots, 11), dtype=np.float64)
    no_bitsets = np.zeros((0, 8), dtype=X_BITSET_INNER_DTYPE)
    decision = np.full(n, base)
    arange = np.arange(n, dtype=np.int32)
    trees = []
    try:
        for _ in range(int(params["n_trees"])):
            # the same NumPy expressions as the reference engine (identical float32 gradients)
            probability = 1.0 / (1.0 + np.exp(-decision))
            gh[:, 0] = (weights * (probability - positive)).astype(np.float32)
            gh[:, 1] = (weights * probability * (1.0 - probability)).astype(np.float32)
            features = np.sort(rng.choice(d, n_features, replace=False)) if n_features < d else np.arange(d)
            feat = features.astype(np.int64)
            n_bins_non_missing = data.n_levels[feat]
            chunked.run(kernels.root_histograms,
                        lambda c, k0, k1: (XF, feat, k0, k1, gh, hist, counts, data.root_counts, n_bins_non_missing))
            # TreeGrower._initialize_root: totals from the first feature's histogram, NumPy's sum
            sum_gradients = np.ascontiguousarray(hist[0, 0, :, 0]).sum()
            sum_hessians = np.ascontiguousarray(hist[0, 0, :, 1]).sum()
            nint[:] = 0
            nflt[:] = 0.0
            nint[0, 1] = n
            nint[0, 3] = 3
            nint[0, 7] = n
            nflt[0, 0] = sum_gradients
            nflt[0, 1] = sum_hessians
            nflt[0, 3] = -1.0
            splittable = not (n < 2 * min_samples_leaf or sum_hessians < MIN_HESSIAN_TO_SPLIT)
            nint[0, 2] = 2 if splittable else 1
            part[:] = arange
            if chunked.pool is None:  # one thread: the whole tree in one call
                kernels.grow_levels(XF, feat, depth, part, buffer, gh, ordered_gh, nint, nflt, hist, counts,
                                    n_bins_non_missing, min_samples_leaf, MIN_HESSIAN_TO_SPLIT, L2_REGULARIZATION,
                                    best_i, best_f)
            n_split = int(splittable) if chunked.pool is not None else 0
            for level in range(depth):  # threads: each level's histograms and split search over the chunks
                if n_split == 0:
                    break
                chunked.run(kernels.level_work,
                            lambda c, k0, k1: (XF, feat, k0, k1, level, part, ordered_gh, nint, nflt, hist, counts,
                                               n_bins_non_missing, min_samples_leaf, MIN_HESSIAN_TO_SPLIT,
                                               L2_REGULARIZATION, best_i[c], best_f[c]))
                n_split = kernels.apply_level(XF, feat, level, depth, part, buffer, gh, ordered_gh, nint, nflt,
                                              best_i, best_f, min_samples_leaf, L2_REGULARIZATION)
            n_nodes = kernels.finish_tree(nint, nflt, part, shrinkage, decision, feat, data.thresholds, out)
            trees.append(TreePredictor(_predictor_nodes(out[:n_nodes]), no_bitsets, no_bitsets))
    finally:
        chunked.close()
    return trees, decision


def _predictor_nodes(rows: np.ndarray) -> np.ndarray:
    nodes = np.zeros(rows.shape[0], dtype=PREDICTOR_RECORD_DTYPE)
    for column, name in enumerate(("value", "count", "feature_idx", "num_threshold", "missing_go_to_left", "left",
                                   "right", "gain", "depth", "is_leaf", "bin_threshold")):
        nodes[name] = rows[:, column]
    return nodes


class StackedTrees:
    """The trees of several boosted bits as flat node arrays, for ``kernels.predict_trees``: child
    indices absolute (right = left + jump), every leaf its own child (a fixed number of steps per
    tree). Node counts must fit int32 (about 2 billion nodes)."""

    def __init__(self, bits):
        node_arrays, roots, bit_off, offset = [], [], [0], 0
        for model in bits:
            for tree in model.trees:
                node_arrays.append(tree.nodes)
                roots.append(offset)
                offset += tree.nodes.size
            bit_off.append(len(roots))
        nodes = np.concatenate(node_arrays) if node_arrays else np.zeros(0, dtype=PREDICTOR_RECORD_DTYPE)
        shift = np.repeat(np.asarray(roots, dtype=np.int64), [a.size for a in node_arrays])
        leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(nodes.size, dtype=np.int64)
        self.feature = np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32)
        self.threshold = np.ascontiguousarray(nodes["bin_threshold"], dtype=np.uint8)
        self.left = np.where(leaf, own, nodes["left"].astype(np.int64) + shift).astype(np.int32)
        self.jump = np.where(leaf, 0, nodes["right"].astype(np.int64) - nodes["left"]).astype(np.int32)
        self.value = np.ascontiguousarray(nodes["value"], dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.depth = np.array([int(a["depth"].max()) for a in node_arrays], dtype=np.int64)
        self.bit_off = np.asarray(bit_off, dtype=np.int64)
        self.base = np.asarray([model.base for model in bits], dtype=np.float64)

    def decision(self, X_binned: np.ndarray, n_threads: int) -> np.ndarray:
        """Decision values (n, bits) on bin ids (``FeatureBins.transform``; row-major is fastest).
        The ids are at most 254 (FeatureBins keeps at most 254 cuts), never scikit-learn's missing
        bin 255, so the missing-value branch of ``predict_binned`` is never taken."""
        X_binned = np.ascontiguousarray(X_binned)
        n = X_binned.shape[0]
        out = np.empty((n, self.base.size), dtype=np.float64)
        threads = max(1, min(int(n_threads), n // 2000))
        edges = np.linspace(0, n, threads + 1).round().astype(int)

        def rows(t):
            kernels.predict_trees(X_binned, int(edges[t]), int(edges[t + 1]), self.feature, self.threshold, self.left,
                                  self.jump, self.value, self.roots, self.depth, self.bit_off, self.base, out)

        if threads == 1:
            rows(0)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(rows, range(threads)))
        return out


# ---------------------------------------------------------------------------------------- inference
class FastInference:
    """``fasthash.ReferenceInference`` with numba kernels and the same results: the pairs stored in
    block order (blocks = classes, as ``fasthash._BlockStructure``; per block its within-block pairs
    and its cross-block pair ends, h_ij beside each entry), so that every block step streams through
    its own data; the Dinic cuts give PyMaxflow's codes,
    the integer sums the same weights and J. The KSH loss is the exact integer sum divided once
    (the reference's float mean can differ from it in the last bits)."""

    def __init__(self, labels, first, second):
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.n = labels.size
        self.n_pairs = int(np.asarray(first).size)
        self.n_blocks = int(labels.max()) + 1
        (self.member_off, self.members, self.within_off, self.within_a, self.within_b, self.cross_off,
         self.cross_node, self.cross_other) = kernels.build_pair_structure(
            labels, np.ascontiguousarray(first, dtype=np.int64), np.ascontiguousarray(second, dtype=np.int64),
            self.n_blocks)
        self.within_h = np.zeros(self.within_a.size, dtype=np.int32)
        self.cross_h = np.zeros(self.cross_node.size, dtype=np.int32)
        (self.node_off, self.start, self.head, self.rev, self.arc_off, self.pair_arc,
         self.term_arc) = kernels.build_block_graphs(self.n_blocks, self.member_off, self.within_off,
                                                     self.within_a.astype(np.int64), self.within_b.astype(np.int64))

    def _pairs(self):
        return (self.member_off, self.members, self.within_off, self.within_a, self.within_b, self.within_h,
                self.cross_off, self.cross_node)

    def infer_bit(self, codes, scale: int, n_sweeps: int, rng, trace_blocks: bool = False):
        """Infer one bit into ``codes`` (in place); returns (per-item sum_j |a_ij|, J trace)."""
        weights = np.empty(self.n, dtype=np.float64)
        objective0 = kernels.bit_weights_and_objective(int(scale), *self._pairs(), self.cross_h, weights)
        orders = np.array([rng.permutation(self.n_blocks) for _ in range(n_sweeps)], dtype=np.int64)
        orders = orders.reshape(n_sweeps, self.n_blocks)
        trace = np.zeros(1 + n_sweeps * (self.n_blocks if trace_blocks else 1), dtype=np.int64)
        trace[0] = objective0
        kernels.block_sweeps(codes, int(scale), orders, *self._pairs(), self.cross_other, self.cross_h,
                             self.node_off, self.start, self.head, self.rev, self.arc_off, self.pair_arc,
                             self.term_arc, int(objective0), trace, bool(trace_blocks))
        return weights, [float(v) for v in trace]

    def add_bit(self, codes, scale: int) -> float:
        """h_ij += b_i b_j; returns the KSH loss mean((r y_ij - h_ij)^2) / r^2 after the bit."""
        total = kernels.add_bit_to_affinity(np.ascontiguousarray(codes, dtype=np.int8), int(scale), *self._pairs(),
                                            self.cross_other, self.cross_h)
        return float(total) / (float(self.n_pairs) * float(scale) * float(scale))


def bin_features(X: np.ndarray, bins, n_threads: int, order: str = "F") -> np.ndarray:
    """``FeatureBins.transform`` (same bin ids) by a row-wise binary search, rows split over threads;
    ``order`` of the result: 'F' (the tree fits read columns) or 'C' (prediction reads rows)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    cuts = np.full((X.shape[1], N_BINS - 1), np.inf, dtype=np.float64)  # at most 254 cuts per feature
    for j, c in enumerate(bins.thresholds):
        cuts[j, :c.size] = c
    out = np.empty(X.shape, dtype=np.uint8)
    n = X.shape[0]
    threads = max(1, min(int(n_threads), n // 1000))
    edges = np.linspace(0, n, threads + 1).round().astype(int)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda t: kernels.bin_rows(X, int(edges[t]), int(edges[t + 1]), cuts, out), range(threads)))
    return np.asfortranarray(out) if order == "F" else out


def solve_block(n_nodes, edge_first, edge_second, edge_weight, unary) -> np.ndarray:
    """``fasthash.solve_submodular_block`` for integer inputs, by Dinic's max flow (same codes)."""
    return kernels.solve_single_block(int(n_nodes), np.asarray(edge_first, dtype=np.int64),
                                      np.asarray(edge_second, dtype=np.int64),
                                      np.asarray(edge_weight, dtype=np.int64), np.asarray(unary, dtype=np.int64))

