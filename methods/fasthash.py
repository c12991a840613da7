"""FastHash: supervised hashing with graph-cut code inference and boosted decision trees.

Paper: G. Lin, C. Shen, Q. Shi, A. van den Hengel, D. Suter, "Fast Supervised Hashing with Decision
Trees for High-Dimensional Data", CVPR 2014 (arXiv:1404.1561).
Reference code: the authors' MATLAB/C++ release (bitbucket chhshen/fasthash; files read for facts:
``fasthash_train.m`` / ``do_infer_step1.m`` / ``gen_loss_info.m`` / ``gen_affinity_labels.m`` /
``gen_infer_block_multiclass.m`` and the demo script). No public Python port; this is our own code.

Algorithm (greedy, one bit at a time, bit m conditioned on the m-1 bits already learned):

1. Binary code inference. With h_ij = sum_{p<m} b_ip b_jp over the previous bits and y_ij = +1
   (same class) / -1 (different class), the KSH loss sum_ij (r y_ij - h_ij - b_i b_j)^2 is, for the
   new bit b in {-1,+1}^n, up to a constant, the binary quadratic objective

       J(b) = sum_(i,j) a_ij b_i b_j,   a_ij = -(r y_ij - h_ij)

   (``inference_objective`` in ``training_log_``; lower is better). Blocks are the classes: inside a
   class y_ij = 1 and |h_ij| <= m-1 < r, so every a_ij < 0 and the block sub-problem (the other
   blocks fixed, which turns cross-block pairs into unary terms) is submodular and is solved
   *exactly* by one s-t min cut (PyMaxflow, integer capacities: all a_ij are integers, so the cut is
   exact, no rounding). Block coordinate descent over the blocks in a random order, ``n_block_sweeps``
   sweeps, starting from all +1 codes (reference ``init_bi_code = ones``). Each block step is an exact
   minimisation with the others fixed, so J never rises (recorded per sweep; tested per block).
2. Hash function. A boosted-trees classifier of depth ``tree_depth`` is fitted to the inferred bit,
   each sample weighted by sum_j |a_ij| (reference ``use_data_weight``); the bit's training codes are
   then replaced by the trees' predictions before the next bit (reference "stagewise" training), so
   the next bit corrects the errors of the learned hash functions, not of the ideal codes.

Hyperparameters and their sources:
- ``n_similar_pairs = 100``, ``n_dissimilar_pairs = 100``: pairs sampled per training item
  (reference ``gen_affinity_labels.m``: max_similar_num = max_dissimilar_num = 100, symmetrised).
  This is the paper's sub-sampling for large-scale inference; the pair list is built from the labels
  (O(n k) memory: about 9.5 million pairs at 50,000 x 100 classes), never an n x n matrix (the
  reference fills an n x n int8 matrix). Classes smaller than the quota use all their pairs.
- Target scale r = m (the number of bits learned so far) in the default stagewise mode, r = K
  (``n_bits``) with ``stagewise=False`` (reference ``gen_loss_info.m`` clac_loss_paris_KSH, per pair
  (y_ij - aff_ij / bit_num)^2 with ``bit_num = update_bit_loss``). Pair weights = loss if the new bit
  agrees minus loss if it disagrees, which is the a_ij above up to a positive factor. Loss: KSH (paper
  Sec. 3 and the brief); the reference demo's default is a hinge loss, which we do not implement.
- ``n_block_sweeps = 2``: reference demo ``infer_iter_num = 2``; blocks = classes (reference
  ``gen_infer_block_multiclass.m``), visited in a random order each sweep (reference ``randperm``).
- ``tree_depth = 4``: reference demo ``tree_depth = 4`` (and the brief).
- ``n_features_per_tree = 200``: reference demo ``tree_node_feat_num = 200`` (random features
  considered for a split); here drawn once per tree, not per node (see "Deviations").
- ``n_trees = 100``, ``learning_rate = 0.3``, ``min_samples_leaf = 5`` (**decision**; the reference
  demo uses ``max_wl_num = 200`` AdaBoost trees without shrinkage; "a few hundred trees per bit" is
  unconfirmed): see "Deviations".
- ``stagewise = True``: reference default ``train_stagewise = true``.
- Sample weights of the tree fit: sum_j |a_ij| per item, normalised to mean 1 (reference
  ``use_data_weight`` / ``updata_data_weights``).
- ``n_jobs`` (implementation, no effect on the model): threads; None = the OpenMP thread limit in
  force (all cores unless ``OMP_NUM_THREADS`` or threadpoolctl's ``threadpool_limits`` say fewer, as
  the benchmark runner does for each of its parallel cells, so cells do not oversubscribe), -1 =
  every core, or a count.
- ``engine`` (implementation, no effect on the model): ``'numba'`` (the default through ``'auto'``
  when numba is installed and ``tree_depth <= 6``) or ``'reference'`` (scikit-learn's tree grower,
  PyMaxflow's cuts, NumPy). Both give the same model, bit for bit: see "Two engines".

Two engines, one model. The reference engine is the straightforward implementation: each tree by
scikit-learn's ``TreeGrower``, each block step by PyMaxflow (imported when first needed), the pair
bookkeeping in NumPy. The numba engine (``_fasthash_fast.py``, kernels in ``_fasthash_kernels.py``)
performs the same floating-point operations in the same order, so its trees equal the grower's
node for node (same splits, gains, leaf values and training decisions) and its codes are identical:
- trees: grown level by level instead of best-first, which with ``max_leaf_nodes = 2^depth`` (the
  grower's setting here) splits exactly the same nodes; per node the smaller child's histogram from
  its samples in index order and the larger one's by subtraction, as the grower; float64 sums of
  float32 gradients in sample order; the root's totals by NumPy's sum over the first feature's 256
  bins; the same gain formula and first-best tie rule; the gradients by the same NumPy expressions;
- cuts: Dinic's max flow (after a greedy pass) instead of Boykov-Kolmogorov. A block's codes are -1
  exactly on the nodes that can reach the sink in the residual graph of a maximum flow: that set is
  the same for every maximum flow, and it is what PyMaxflow's segments are (its free nodes default
  to the source side), so the codes do not depend on the flow algorithm;
- pair sums (weights, J, h_ij, the KSH loss) in integers, which are exact in any order (the KSH loss
  is then divided once; the reference's float mean of squares can differ from it in the last digits);
- binning and encoding: the same searchsorted bin ids; trees evaluated on them with the same
  comparisons and the leaf values added tree by tree.
``tests/methods/test_fasthash.py`` checks all of this against the reference engine (trees field by
field, cuts against PyMaxflow including ties, inference traces block by block, whole models).
Without numba, ``engine='auto'`` runs the reference engine.

What runs in parallel, honestly: the stagewise algorithm is sequential over bits (bit m's inference
needs the trees of bits 1..m-1 — their predicted codes replace the inferred ones) and within a bit
sequential over trees (boosting) and over blocks (a Gauss-Seidel sweep: solving two blocks joined by
pairs at the same time could raise J, which the monotonicity guarantee forbids). What is parallel in
the default mode is the histogram construction and split search inside every tree (numba engine:
the tree's features in ``n_jobs`` contiguous chunks, one thread each, chosen per feature as a single
thread would; reference engine: ``n_jobs`` OpenMP threads in scikit-learn's grower), the feature
binning and the tree evaluation at encode time (rows in chunks). With ``stagewise=False`` (the
reference's other mode: infer every bit from the inferred, not predicted, codes first) the K tree
fits are independent and run in parallel across bits (``n_jobs`` joblib threads, one thread each;
tested to give the same model as a sequential fit). On a machine shared with other busy processes
set ``OMP_WAIT_POLICY=PASSIVE`` for the reference engine: libgomp's default spin-waiting then costs
several times the CPU of the tree fits.

Where the time goes (``benchmarks/bench_shallow.py --methods FastHash --fasthash-engines reference
numba --digits`` measures both engines side by side; the numba engine's fit at CIFAR-100 size is in
``benchmarks/results/fasthash_cifar_size.md``):
per bit, the block inference (about 200 cuts of 500-node blocks with ~45,000 pairs each at CIFAR-100
size) and ``n_trees`` trees on 50,000 x 200 binned features, whose histograms are nearly all of the
cost. Features are binned once per fit (``FeatureBins``) and once per encode.

Deviations from the reference, on purpose:
- Trees: gradient boosting with the logistic loss (LogitBoost-like), each tree grown by scikit-learn's
  histogram tree grower (``sklearn.ensemble._hist_gradient_boosting.grower.TreeGrower``, the engine of
  ``HistGradientBoostingClassifier``; a private module, exercised by the tests so a breaking
  scikit-learn release fails loudly), instead of the reference's AdaBoost with exact lazy-greedy
  trees. Why the grower and not the public ``HistGradientBoostingClassifier``: the public class
  re-bins the 50,000 x 512 features on every fit (5 CPU s per bit) and offers no per-tree random
  feature subset; with the grower the features are binned once (255 quantile levels, as the
  reference quantises to uint8) and each tree sees a random 200-feature subset (the reference picks
  200 features per node), about 3x cheaper per tree than all 512. Exact-split boosting (scikit-learn
  ``GradientBoostingClassifier``) costs about one second per depth-4 tree at this size, hours for
  64 bits. 100 rounds at learning rate 0.3 fit the inferred bits closely on our data (the training
  accuracy of every bit's fit is in ``training_log_['code_fit_accuracy']``); ``n_trees`` trades
  speed for a closer fit linearly. The reference's weight trimming (``mass_weight_thresh = 0.99``)
  is not reproduced: with logistic-loss gradients it kept ~90% of the samples, too few to matter.
- Dissimilar pairs are sampled with replacement and de-duplicated (an item gets *up to* 100; with
  ~49,500 candidates a duplicate is rare); similar pairs without replacement, as the reference.
- Fewer than two classes in the training labels is rejected (with one class every pair is similar,
  the optimal bits are constant and the codes carry no information).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import Parallel, delayed

from .registry import register

from .base import HashingMethod, InvalidInputError


# ---------------------------------------------------------------------------------------------- pairs
def sample_relation_pairs(labels: np.ndarray, n_similar: int, n_dissimilar: int, rng: np.random.Generator):
    """Sampled training pairs (reference ``gen_affinity_labels.m``), never an n x n matrix.

    Every item gets up to ``n_similar`` same-class and ``n_dissimilar`` other-class partners
    (sampled with replacement, then de-duplicated; all partners where fewer exist). Returns
    ``(first, second, similar)``: int64 arrays with first < second, and a bool array.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.size
    order = np.argsort(labels, kind="stable")
    class_sizes = np.bincount(labels)
    class_starts = np.concatenate([[0], np.cumsum(class_sizes)[:-1]])
    firsts, seconds = [], []
    # similar pairs, class by class (position = index into ``order``)
    for c in np.flatnonzero(class_sizes > 1):
        size, start = int(class_sizes[c]), int(class_starts[c])
        if size - 1 <= n_similar:
            a, b = np.triu_indices(size, 1)
        else:
            # without replacement, as the reference's randsample: n_similar of the size-1 others
            a = np.repeat(np.arange(size), n_similar)
            r = np.argpartition(rng.random((size, size - 1)), n_similar - 1, axis=1)[:, :n_similar].ravel()
            b = r + (r >= a)  # skip the item itself
        firsts.append(order[start + a])
        seconds.append(order[start + b])
    # dissimilar pairs, all items at once
    own_size = class_sizes[labels]
    others = n - own_size
    if n_dissimilar > 0 and others.max() > 0:
        few = others <= n_dissimilar
        # items whose class leaves few others: take every other-class partner
        for i in np.flatnonzero(few & (others > 0)):
            partners = np.flatnonzero(labels != labels[i])
            firsts.append(np.full(partners.size, i))
            seconds.append(partners)
        many = np.flatnonzero(~few)
        if many.size:
            item = np.repeat(many, n_dissimilar)
            r = rng.integers(0, others[item])
            start = class_starts[labels[item]]
            position = r + own_size[item] * (r >= start)  # skip the item's own class range
            firsts.append(item)
            seconds.append(order[position])
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    second = np.concatenate(seconds) if seconds else np.zeros(0, dtype=np.int64)
    low, high = np.minimum(first, second), np.maximum(first, second)
    keys = np.sort(low.astype(np.int64) * n + high)  # sort + adjacent test: cheaper than np.unique here
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys
    first, second = keys // n, keys % n
    return first, second, labels[first] == labels[second]


# ----------------------------------------------------------------------------------------- inference
def solve_submodular_block(n_nodes: int, edge_first, edge_second, edge_weight, unary) -> np.ndarray:
    """Exact minimiser of E(b) = sum_i unary_i b_i - sum_e w_e b_first b_second over b in {-1,+1}^n.

    Requires w_e >= 0 (attractive pairs: submodular). Integer inputs give an exact integer min cut.
    Returns int8 codes. ``E = const + 2 * (sum_i unary_i [b_i = +1] + sum_e w_e [b_first != b_second])``,
    which is an s-t cut with +1 = source side.
    """
    import maxflow

    unary = np.asarray(unary)
    edge_weight = np.asarray(edge_weight)
    if edge_weight.size and edge_weight.min() < 0:
        raise ValueError("solve_submodular_block needs non-negative pair weights (submodular energy).")
    integer = np.issubdtype(unary.dtype, np.integer) and np.issubdtype(edge_weight.dtype, np.integer)
    graph = maxflow.Graph[int](n_nodes, edge_weight.size) if integer else maxflow.Graph[float](n_nodes, edge_weight.size)
    nodes = graph.add_nodes(n_nodes)
    cast = np.int64 if integer else np.float64
    # cost of +1 (source side, paid on the node->sink edge) = max(u, 0); cost of -1 = max(-u, 0)
    graph.add_grid_tedges(nodes, np.maximum(-unary, 0).astype(cast), np.maximum(unary, 0).astype(cast))
    if edge_weight.size:
        w = edge_weight.astype(cast)
        graph.add_edges(np.asarray(edge_first, dtype=np.int64), np.asarray(edge_second, dtype=np.int64), w, w)
    graph.maxflow()
    sink_side = graph.get_grid_segments(nodes)
    return np.where(sink_side, -1, 1).astype(np.int8)


class _BlockStructure:
    """Pairs grouped by block (class): within-block pairs and, per block, its cross-block pair ends."""

    def __init__(self, labels: np.ndarray, first: np.ndarray, second: np.ndarray):
        n_blocks = int(labels.max()) + 1
        self.members = [np.flatnonzero(labels == c) for c in range(n_blocks)]
        local = np.empty(labels.size, dtype=np.int64)
        for idx in self.members:
            local[idx] = np.arange(idx.size)
        within = labels[first] == labels[second]
        pair_ids = np.flatnonzero(within)
        block_of_pair = labels[first[pair_ids]]
        sort = np.argsort(block_of_pair, kind="stable")
        pair_ids = pair_ids[sort]
        bounds = np.searchsorted(block_of_pair[sort], np.arange(n_blocks + 1))
        self.within = [
            (pair_ids[bounds[c]:bounds[c + 1]], local[first[pair_ids[bounds[c]:bounds[c + 1]]]],
             local[second[pair_ids[bounds[c]:bounds[c + 1]]]])
            for c in range(n_blocks)
        ]
        cross = np.flatnonzero(~within)
        node = np.concatenate([first[cross], second[cross]])
        other = np.concatenate([second[cross], first[cross]])
        pair = np.concatenate([cross, cross])
        block = labels[node]
        sort = np.argsort(block, kind="stable")
        node, other, pair = node[sort], other[sort], pair[sort]
        bounds = np.searchsorted(block[sort], np.arange(n_blocks + 1))
        self.cross = [
            (local[node[bounds[c]:bounds[c + 1]]], other[bounds[c]:bounds[c + 1]], pair[bounds[c]:bounds[c + 1]])
            for c in range(n_blocks)
        ]


def binary_objective(codes: np.ndarray, first, second, coefficients) -> float:
    """J(b) = sum over pairs of a_ij b_i b_j (the per-bit inference objective)."""
    product = codes[first].astype(np.int64) * codes[second]
    return float(np.dot(coefficients, product))


def _block_energy(block_codes, unary, coefficients, pair_ids, edge_first, edge_second) -> float:
    energy = float(np.dot(unary, block_codes))
    if pair_ids.size:
        energy += float(np.dot(coefficients[pair_ids], block_codes[edge_first].astype(np.int64) * block_codes[edge_second]))
    return energy


def block_coordinate_descent(
    codes: np.ndarray, blocks: _BlockStructure, first, second, coefficients, n_sweeps: int,
    rng: np.random.Generator, trace_blocks: bool = False,
):
    """Block graph-cut inference for one bit; ``codes`` (int8, +-1) is updated in place.

    ``coefficients`` are the integer a_ij (negative inside blocks). Returns the objective J after
    initialisation and after each sweep (after every block step when ``trace_blocks``).
    """
    objective = binary_objective(codes, first, second, coefficients)
    trace = [objective]
    for _ in range(n_sweeps):
        for c in rng.permutation(len(blocks.members)):
            members = blocks.members[c]
            node, other, pair = blocks.cross[c]
            unary = np.bincount(node, weights=coefficients[pair] * codes[other], minlength=members.size)
            unary = np.rint(unary).astype(np.int64)
            pair_ids, edge_first, edge_second = blocks.within[c]
            old = codes[members]
            if pair_ids.size:
                new = solve_submodular_block(members.size, edge_first, edge_second, -coefficients[pair_ids], unary)
            else:
                new = np.where(unary > 0, -1, np.where(unary < 0, 1, old)).astype(np.int8)
            # energy of the block's terms before and after (the rest of J does not change)
            change = _block_energy(new, unary, coefficients, pair_ids, edge_first, edge_second) - \
                _block_energy(old, unary, coefficients, pair_ids, edge_first, edge_second)
            if change < 0:  # keep the old codes on ties, so J can only fall
                codes[members] = new
                objective += change
            if trace_blocks:
                trace.append(objective)
        if not trace_blocks:
            trace.append(binary_objective(codes, first, second, coefficients))
    return trace


class ReferenceInference:
    """The per-bit pair bookkeeping and block inference with NumPy and PyMaxflow (the reference
    engine; ``_fasthash_fast.FastInference`` gives the same results with numba kernels)."""

    def __init__(self, blocks: _BlockStructure, first, second, similar, n_items: int):
        self.blocks, self.first, self.second, self.n = blocks, first, second, n_items
        self.n_pairs = int(first.size)
        self.target = np.where(similar, 1, -1).astype(np.int64)
        self.hamming_affinity = np.zeros(first.size, dtype=np.int64)  # h_ij over the bits learned so far

    def infer_bit(self, codes, scale: int, n_sweeps: int, rng, trace_blocks: bool = False):
        """Infer one bit into ``codes`` (in place); returns (per-item sum_j |a_ij|, J trace)."""
        coefficients = -(scale * self.target - self.hamming_affinity)  # a_ij, integer; < 0 inside blocks
        trace = block_coordinate_descent(codes, self.blocks, self.first, self.second, coefficients, n_sweeps, rng,
                                         trace_blocks)
        weights = np.bincount(np.concatenate([self.first, self.second]),
                              weights=np.abs(np.concatenate([coefficients, coefficients])), minlength=self.n)
        return weights, trace

    def add_bit(self, codes, scale: int) -> float:
        """h_ij += b_i b_j; returns the KSH loss mean((r y_ij - h_ij)^2) / r^2 after the bit."""
        self.hamming_affinity += codes[self.first].astype(np.int64) * codes[self.second]
        residual = scale * self.target - self.hamming_affinity
        return float(np.mean((residual / scale) ** 2))


# ------------------------------------------------------------------------------------------ trees
class FeatureBins:
    """Per-feature quantile bins (at most 255 levels, uint8), fitted once and shared by every tree.

    The reference quantises its features to uint8 once before training its trees; binning once here
    saves re-binning 50,000 x 512 features for every bit (and every bit's encoder).
    """

    def __init__(self, X: np.ndarray, rng: np.random.Generator, max_samples: int = 200_000, n_levels: int = 255,
                 n_threads: int = 1):
        if X.shape[0] > max_samples:
            X = X[np.sort(rng.choice(X.shape[0], max_samples, replace=False))]
        X = np.asarray(X)
        quantiles = np.linspace(0.0, 1.0, n_levels + 1)[1:-1]

        def column_cuts(j):
            ordered = np.sort(X[:, j])  # np.unique's own first step; quantiles only need the order
            values = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
            if values.size <= n_levels:
                cuts = (values[:-1] + values[1:]) / 2.0
            else:
                cuts = np.unique(np.quantile(ordered, quantiles, method="midpoint"))
            return np.asarray(cuts, dtype=np.float64)

        # features in parallel threads (NumPy's sort and partition release the GIL)
        with ThreadPoolExecutor(max(1, int(n_threads))) as pool:
            self.thresholds = list(pool.map(column_cuts, range(X.shape[1])))
        # levels actually used per feature (bin ids 0..levels-1); bin 255 is sklearn's missing bin
        self.n_levels = np.array([t.size + 1 for t in self.thresholds], dtype=np.uint32)

    def transform(self, X: np.ndarray, engine: str = "auto", n_threads: int = 1) -> np.ndarray:
        """Bin ids (uint8, Fortran order): ``searchsorted(cuts, x, side='left')`` per feature."""
        if _use_fast_engine(engine):
            from ._fasthash_fast import bin_features

            return bin_features(X, self, n_threads)
        binned = np.empty(X.shape, dtype=np.uint8, order="F")
        for j, cuts in enumerate(self.thresholds):
            binned[:, j] = np.searchsorted(cuts, X[:, j], side="left")
        return binned


class BoostedBit:
    """One bit's hash function: gradient-boosted depth-limited trees (logistic loss) on binned features.

    Each tree is grown by scikit-learn's histogram tree grower (``TreeGrower``, the engine inside
    ``HistGradientBoostingClassifier``) on the pre-binned features, restricted to a random subset of
    ``n_features_per_tree`` features (reference: ``tree_node_feat_num = 200`` random features per node).
    """

    def __init__(self, base: float, trees: list):
        self.base = base
        self.trees = trees

    def decision_binned(self, X_binned: np.ndarray, n_threads: int, engine: str = "auto") -> np.ndarray:
        if _use_fast_engine(engine):
            from ._fasthash_fast import StackedTrees

            return StackedTrees([self]).decision(X_binned, n_threads)[:, 0]
        output = np.full(X_binned.shape[0], self.base)
        for tree in self.trees:
            output += tree.predict_binned(X_binned, _MISSING_BIN, n_threads)
        return output


_MISSING_BIN = 255
ENGINES = ("auto", "numba", "reference")
FAST_MAX_TREE_DEPTH = 6  # the fast engine keeps a histogram per inner node (2^depth - 1 of them)


def numba_available() -> bool:
    """Whether the fast engine can run (numba importable)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _use_fast_engine(engine: str, tree_depth: int | None = None) -> bool:
    """``auto``: the numba engine when numba is installed and the trees are at most
    FAST_MAX_TREE_DEPTH deep, else the reference engine; ``numba`` insists (error if impossible)."""
    if engine == "reference":
        return False
    fits = tree_depth is None or int(tree_depth) <= FAST_MAX_TREE_DEPTH
    if engine == "numba":
        if not numba_available():
            raise InvalidInputError("engine='numba' needs the numba package: pip install numba "
                                    "(or use engine='auto', which falls back to the reference engine).")
        if not fits:
            raise InvalidInputError(f"engine='numba' grows trees of depth <= {FAST_MAX_TREE_DEPTH}, got tree_depth="
                                    f"{tree_depth}; use engine='auto' or 'reference' for deeper trees.")
        return True
    if engine != "auto":
        raise InvalidInputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    return fits and numba_available()


def fit_boosted_bit(X_binned, bins: FeatureBins, codes, weights, params, rng, n_threads, engine: str = "auto",
                    tree_data=None):
    """Fit one bit with boosting; returns (BoostedBit, training decision values).

    ``engine='reference'`` grows each tree with scikit-learn's ``TreeGrower``; the numba engine
    (``_fasthash_fast.fit_trees``, default when numba is installed) grows the same trees (same
    splits, same float operations: tested to give identical nodes and decision values).
    ``tree_data``: a prepared ``_fasthash_fast.TreeData`` of ``X_binned`` (reused across bits).
    """
    from sklearn.ensemble._hist_gradient_boosting.grower import TreeGrower

    n, d = X_binned.shape
    positive = (np.asarray(codes) > 0).astype(np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights * (n / weights.sum())
    rate = float(np.clip(np.average(positive, weights=weights), 1e-6, 1 - 1e-6))
    base = float(np.log(rate / (1.0 - rate)))
    decision = np.full(n, base)
    if positive.min() == positive.max():  # constant bit: nothing to learn
        return BoostedBit(base, []), decision
    if _use_fast_engine(engine, params["tree_depth"]):
        from ._fasthash_fast import TreeData, fit_trees

        data = tree_data if tree_data is not None else TreeData(X_binned, bins)
        trees, decision = fit_trees(data, positive, weights, base, params, rng, n_threads)
        return BoostedBit(base, trees), decision
    n_features = min(int(params["n_features_per_tree"]), d)
    trees = []
    for _ in range(int(params["n_trees"])):
        probability = 1.0 / (1.0 + np.exp(-decision))
        gradient = (weights * (probability - positive)).astype(np.float32)
        hessian = (weights * probability * (1.0 - probability)).astype(np.float32)
        features = np.sort(rng.choice(d, n_features, replace=False)) if n_features < d else np.arange(d)
        grower = TreeGrower(
            np.asfortranarray(X_binned[:, features]), gradient, hessian,
            max_leaf_nodes=2 ** int(params["tree_depth"]), max_depth=int(params["tree_depth"]),
            min_samples_leaf=int(params["min_samples_leaf"]), n_bins=_MISSING_BIN + 1,
            n_bins_non_missing=bins.n_levels[features], has_missing_values=False, l2_regularization=0.0,
            shrinkage=float(params["learning_rate"]), n_threads=n_threads,
        )
        grower.grow()
        tree = grower.make_predictor(binning_thresholds=[bins.thresholds[f] for f in features])
        inner = tree.nodes["is_leaf"] == 0
        tree.nodes["feature_idx"][inner] = features[tree.nodes["feature_idx"][inner]]  # back to all features
        decision += tree.predict_binned(X_binned, _MISSING_BIN, n_threads)
        trees.append(tree)
    return BoostedBit(base, trees), decision


# ------------------------------------------------------------------------------------- the estimator
@register("FastHash")
class FastHash(HashingMethod):
    family = "shallow"
    uses_labels = True
    test_params = {"n_trees": 4, "n_similar_pairs": 20, "n_dissimilar_pairs": 20, "n_jobs": 1}

    def __init__(
        self, n_bits: int = 64, n_trees: int = 100, tree_depth: int = 4, learning_rate: float = 0.3,
        n_features_per_tree: int = 200, min_samples_leaf: int = 5, n_similar_pairs: int = 100,
        n_dissimilar_pairs: int = 100, n_block_sweeps: int = 2, stagewise: bool = True,
        n_jobs: int | None = None, engine: str = "auto", random_state: int | None = 0,
    ):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.n_trees = n_trees
        self.tree_depth = tree_depth
        self.learning_rate = learning_rate
        self.n_features_per_tree = n_features_per_tree
        self.min_samples_leaf = min_samples_leaf
        self.n_similar_pairs = n_similar_pairs
        self.n_dissimilar_pairs = n_dissimilar_pairs
        self.n_block_sweeps = n_block_sweeps
        self.stagewise = stagewise
        self.n_jobs = n_jobs
        self.engine = engine

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        for name in ("n_trees", "tree_depth", "n_features_per_tree", "n_similar_pairs", "n_dissimilar_pairs",
                     "n_block_sweeps", "min_samples_leaf"):
            value = getattr(self, name)
            low = 0 if name in ("n_similar_pairs", "n_block_sweeps") else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}.")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise InvalidInputError(f"learning_rate must be a positive number, got {self.learning_rate!r}.")
        if self.n_jobs is not None and (not isinstance(self.n_jobs, (int, np.integer)) or self.n_jobs == 0):
            raise InvalidInputError(f"n_jobs must be None, a positive integer or -1, got {self.n_jobs!r}.")
        if self.engine not in ENGINES:
            raise InvalidInputError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}.")
        _use_fast_engine(self.engine, self.tree_depth)  # engine='numba' without numba: a clear error now

    def _n_threads(self) -> int:
        """Explicit ``n_jobs``; -1: every core; None: the OpenMP thread limit in force (the number of
        cores, unless OMP_NUM_THREADS or threadpoolctl's ``threadpool_limits``, as the benchmark runner
        sets per cell, say fewer), so that parallel cells do not oversubscribe the machine."""
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        if self.n_jobs is not None and self.n_jobs > 0:
            return int(self.n_jobs)
        return max(1, int(_openmp_effective_n_threads(None if self.n_jobs is None else -1)))

    def _fast(self) -> bool:
        return _use_fast_engine(self.engine, self.tree_depth)

    def _tree_params(self) -> dict:
        return dict(n_trees=int(self.n_trees), tree_depth=int(self.tree_depth),
                    learning_rate=float(self.learning_rate), min_samples_leaf=int(self.min_samples_leaf),
                    n_features_per_tree=int(self.n_features_per_tree))

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y):
        self._check_params()
        if X.shape[0] < 2:
            raise InvalidInputError("FastHash needs at least 2 training samples (it learns from pairs).")
        classes, labels = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise InvalidInputError(
                "FastHash needs at least two classes in y: with a single class every pair is similar and "
                "the learned bits would be constant. Pass labels of two or more classes."
            )
        n, K = X.shape[0], int(self.n_bits)
        rng = self._rng(1)
        first, second, similar = sample_relation_pairs(labels, self.n_similar_pairs, self.n_dissimilar_pairs, rng)
        fast = self._fast()
        if fast:  # blocks = classes: the same structure as _BlockStructure, built in one pass
            from ._fasthash_fast import FastInference, TreeData

            inference = FastInference(labels, first, second)
        else:
            inference, TreeData = ReferenceInference(_BlockStructure(labels, first, second), first, second, similar,
                                                     n), None
        del first, second, similar
        n_threads = self._n_threads()
        self.bins_ = FeatureBins(X, self._rng(2), n_threads=n_threads)
        engine = "numba" if fast else "reference"
        X_binned = self.bins_.transform(X, engine, n_threads)
        tree_data = TreeData(X_binned, self.bins_) if fast else None
        params = self._tree_params()
        log = {"inference_objective": [], "code_fit_accuracy": [], "ksh_loss": []}
        inferred_codes, weights_per_bit = [], []
        self.hash_functions_ = []
        for bit in range(1, K + 1):
            scale = bit if self.stagewise else K
            codes = np.ones(n, dtype=np.int8)  # reference init_bi_code = ones
            weights, trace = inference.infer_bit(codes, scale, self.n_block_sweeps, self._rng(100 + bit))
            log["inference_objective"].append(trace)
            weights = weights / weights.mean() if weights.mean() > 0 else np.ones(n)
            weights = np.maximum(weights, 1e-3)  # items without pairs keep a small weight
            if self.stagewise:
                model, decision = fit_boosted_bit(X_binned, self.bins_, codes, weights, params,
                                                  self._rng(10_000 + bit), n_threads, engine, tree_data)
                self.hash_functions_.append(model)
                predicted = np.where(decision >= 0, 1, -1).astype(np.int8)
                log["code_fit_accuracy"].append(float(np.average(predicted == codes, weights=weights)))
                codes = predicted
            else:
                inferred_codes.append(codes)
                weights_per_bit.append(weights)
            log["ksh_loss"].append(inference.add_bit(codes, scale))
        if not self.stagewise:
            # the K tree fits are independent here: one thread each, bits in parallel (the tree
            # grower releases the GIL in its histogram and split loops)
            results = Parallel(n_jobs=n_threads, prefer="threads")(
                delayed(fit_boosted_bit)(X_binned, self.bins_, inferred_codes[b], weights_per_bit[b], params,
                                         self._rng(10_001 + b), 1, engine, tree_data)
                for b in range(K)
            )
            self.hash_functions_ = [model for model, _ in results]
            for b, (_, decision) in enumerate(results):
                log["code_fit_accuracy"].append(
                    float(np.average((decision >= 0) == (inferred_codes[b] > 0), weights=weights_per_bit[b])))
        self.training_log_ = log
        self.n_pairs_ = int(inference.n_pairs)

    # ------------------------------------------------------------------ encode
    def _encode(self, X):
        outputs = np.empty((X.shape[0], len(self.hash_functions_)), dtype=np.float64)
        n_threads = self._n_threads()
        stacked, engine = None, "reference"
        if self._fast():
            from ._fasthash_fast import StackedTrees

            stacked, engine = StackedTrees(self.hash_functions_), "numba"
        for start in range(0, X.shape[0], 100_000):  # bins in chunks: 100,000 x d uint8 at a time
            if stacked is not None:  # every bit's trees in one pass (the same sums as decision_binned)
                from ._fasthash_fast import bin_features

                X_binned = bin_features(X[start:start + 100_000], self.bins_, n_threads, order="C")
                outputs[start:start + X_binned.shape[0]] = stacked.decision(X_binned, n_threads)
                continue
            X_binned = self.bins_.transform(X[start:start + 100_000], engine, n_threads)
            for b, model in enumerate(self.hash_functions_):
                outputs[start:start + X_binned.shape[0], b] = model.decision_binned(X_binned, n_threads, "reference")
        return outputs
