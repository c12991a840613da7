"""Fast greedy MAP inference for determinantal point processes (used by LTHNet's memory, eq. 4).

Chen, Zhang & Zhou, "Fast Greedy MAP Inference for Determinantal Point Process to Improve
Recommendation Diversity", NeurIPS 2018 (reference code: laming-chen/fast-map-dpp, ``dpp.py``).

Greedy MAP picks, at each step, the item j maximising log det(L_{S+j}) - log det(L_S) = log d_j^2,
where d_j^2 is the squared residual of item j after projecting out the items already chosen
(an incremental Cholesky factorisation). Keeping, for every item i, its Cholesky row c_i and d_i^2
makes each step O(n * |S|) plus one kernel row:

    e_i = (L[j, i] - <c_j, c_i>) / d_j ;  c_i <- [c_i, e_i] ;  d_i^2 <- d_i^2 - e_i^2.

Because every d_i^2 only decreases and j is the arg-max, the marginal gains d_j^2 of the chosen
items never increase. The search stops after ``k`` items or when the best remaining d_j^2 falls
below ``epsilon`` (the rest are linearly dependent on the chosen ones, e.g. duplicates).

Kernel used by LTHNet (our definition; the paper only says "k more diverse samples similar to the
centroid"): quality-diversity decomposition L = diag(q) S diag(q) (Kulesza & Taskar 2012; also the
form of Chen et al.'s recommendation kernel), with S_ab = cos(v_a, v_b) (diversity: the cosine
Gram matrix of the direct features) and q_a = max(cos(v_a, m), 0) (quality: cosine similarity to
the class centroid m). Then L = B B^T with rows b_a = q_a v_a / ||v_a||, so the n x n kernel is
never formed: a kernel row is one matrix-vector product, and the diagonal is q_a^2.
"""
from __future__ import annotations

import torch

from common.threads import set_numba_threads

DEFAULT_EPSILON = 1e-10


def greedy_map_inference(kernel_row, diagonal: torch.Tensor, max_items: int,
                         epsilon: float = DEFAULT_EPSILON) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy DPP MAP over n items given the kernel's diagonal and a function returning row j.

    Returns (selected indices int64 (m,), marginal gains d_j^2 (m,)) with m <= max_items; gains are
    non-increasing. Ties are broken by the lowest index (``argmax``), so the result is deterministic.
    """
    n = diagonal.shape[0]
    max_items = max(min(int(max_items), n), 0)
    dtype = torch.float64
    if max_items == 0:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=dtype)
    residual = diagonal.to(dtype).clone()
    cholesky_rows = torch.zeros((max_items, n), dtype=dtype, device=diagonal.device)
    selected: list[int] = []
    gains: list[torch.Tensor] = []
    j = int(torch.argmax(residual))
    while True:
        gain = residual[j]
        if float(gain) < epsilon:
            break
        selected.append(j)
        gains.append(gain.clone())
        if len(selected) == max_items:
            break
        t = len(selected) - 1
        row = kernel_row(j).to(dtype)
        projection = cholesky_rows[:t, j] @ cholesky_rows[:t, :] if t else torch.zeros_like(row)
        update = (row - projection) / torch.sqrt(gain)
        cholesky_rows[t] = update
        residual = residual - update * update
        residual[selected] = -torch.inf
        j = int(torch.argmax(residual))
    if not selected:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=dtype)
    return torch.tensor(selected, dtype=torch.int64), torch.stack(gains)


def greedy_map_inference_dense(kernel: torch.Tensor, max_items: int,
                               epsilon: float = DEFAULT_EPSILON) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy DPP MAP for an explicit PSD kernel matrix (n, n)."""
    kernel = torch.as_tensor(kernel)
    return greedy_map_inference(lambda j: kernel[j], torch.diagonal(kernel), max_items, epsilon)


def greedy_map_inference_low_rank(vectors: torch.Tensor, max_items: int,
                                  epsilon: float = DEFAULT_EPSILON) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy DPP MAP for the kernel L = V V^T given its rows V (n, D), never forming L."""
    vectors = torch.as_tensor(vectors).to(torch.float64)
    diagonal = (vectors * vectors).sum(dim=1)
    return greedy_map_inference(lambda j: vectors @ vectors[j], diagonal, max_items, epsilon)


def quality_diversity_vectors(features: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
    """Rows b_a = q_a v_a/||v_a|| of L = diag(q) S diag(q) (S: cosine Gram, q: cosine to the centroid).

    Items with a zero feature vector get a zero row (zero quality: never chosen).
    """
    features = torch.as_tensor(features).to(torch.float64)
    centroid = torch.as_tensor(centroid).to(torch.float64)
    norms = features.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, features / norms.clamp_min(1e-300), torch.zeros_like(features))
    centroid_norm = centroid.norm()
    if centroid_norm > 0:
        quality = (unit @ (centroid / centroid_norm)).clamp_min(0.0)
    else:
        quality = torch.zeros(features.shape[0], dtype=torch.float64, device=features.device)
    return unit * quality[:, None]


def diverse_prototypes(features: torch.Tensor, centroid: torch.Tensor, k: int,
                       epsilon: float = DEFAULT_EPSILON) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to k items of one class that are similar to its centroid and diverse (greedy DPP MAP).

    Returns (indices into ``features``, marginal gains). Fewer than k come back when the class has
    fewer than k items or the remaining items add no volume (duplicates); the caller pads.
    """
    vectors = quality_diversity_vectors(features, centroid)
    return greedy_map_inference_low_rank(vectors, k, epsilon)


def _row_kernels():
    """The compiled row passes (methods/_dpp_kernel.py), or None when numba is unavailable."""
    try:
        from . import _dpp_kernel

        return _dpp_kernel
    except Exception:  # numba missing or broken: the per-class version instead
        return None


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, k: int,
                     epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """``diverse_prototypes`` of every class at once: (C, k) int64 row indices into ``features``
    (each class's picks in order, -1 where it has fewer), with the same kernel, greedy rule,
    stopping rule and tie-break (the lowest row) as ``diverse_prototypes(features[rows_c],
    centroids[c], k)`` on each class's rows in index order.

    The kernel is L_ab = q_a q_b cos(v_a, v_b) = s_a s_b <v_a, v_b> with s_a = q_a / ||v_a||, so a
    greedy step needs, for every item, one dot product with its class's pick: a compiled pass over
    the float32 features in float64 (``_dpp_kernel``), for all classes together; the per-class
    arg-max is a ``scatter_reduce``. k passes over the features in all, no float64 copy of them, no
    loop over classes. The per-class version rounds differently (it normalises the rows first and
    sums by BLAS), so the two can differ only where two candidates' gains tie to ~1e-15; exact ties
    (duplicate items) break alike. CPU float32 features; anything else, or no numba, falls back to
    the per-class loop."""
    features = torch.as_tensor(features)
    n_items, n_classes, k = features.shape[0], centroids.shape[0], max(int(k), 0)
    kernels = _row_kernels()
    if kernels is None or features.device.type != "cpu" or features.dtype != torch.float32:
        return _class_prototypes_by_class(features, labels, centroids, k, epsilon)
    chosen = torch.full((n_classes, k), -1, dtype=torch.int64)
    if k == 0 or n_items == 0:
        return chosen
    set_numba_threads(torch.get_num_threads())  # and torch's count stays as it is (common/threads.py)
    rows = features.contiguous().numpy()
    label_array = labels.cpu().contiguous().numpy()
    centroids = centroids.to(torch.float64).cpu()
    centroid_norms = centroids.norm(dim=1, keepdim=True)
    centroid_units = torch.where(centroid_norms > 0, centroids / centroid_norms.clamp_min(1e-300),
                                 torch.zeros_like(centroids))
    norms, cosines = torch.empty(n_items, dtype=torch.float64), torch.empty(n_items, dtype=torch.float64)
    kernels.norms_and_centroid_cosines(rows, centroid_units.contiguous().numpy(), label_array, norms.numpy(),
                                       cosines.numpy())
    quality = cosines.clamp_min(0.0)
    scale = torch.where(norms > 0, quality / norms.clamp_min(1e-300), torch.zeros_like(norms))  # s_a
    residual = quality * quality  # the diagonal q_a^2 (cos(v, v) = 1)
    labels = labels.cpu()
    counts = torch.bincount(labels, minlength=n_classes)
    cholesky_rows = torch.zeros((k, n_items), dtype=torch.float64)
    item_rows = torch.arange(n_items)
    dots = torch.empty(n_items, dtype=torch.float64)
    active = counts > 0
    for step in range(k):
        best = torch.full((n_classes,), -torch.inf, dtype=torch.float64).scatter_reduce(0, labels, residual, "amax")
        candidates = torch.where(residual == best.index_select(0, labels), item_rows, n_items)
        pick = torch.full((n_classes,), n_items, dtype=torch.int64).scatter_reduce(0, labels, candidates, "amin")
        active = active & (best >= epsilon) & (counts > step)
        pick = torch.where(active, pick, 0)
        chosen[:, step] = torch.where(active, pick, -1)
        if step == k - 1:
            break
        # every item's kernel entry with its class's pick, minus its projection on the earlier picks
        kernels.class_row_dots(rows, rows[pick.numpy()], label_array, dots.numpy())
        picks = pick.index_select(0, labels)
        kernel_row = scale * scale.index_select(0, picks) * dots
        if step:
            kernel_row -= (cholesky_rows[:step] * cholesky_rows[:step].index_select(1, picks)).sum(dim=0)
        gain = torch.where(active, best, 1.0).index_select(0, labels)
        update = torch.where(active.index_select(0, labels), kernel_row / torch.sqrt(gain), 0.0)
        cholesky_rows[step] = update
        residual -= update * update
        taken = chosen[:, :step + 1].reshape(-1)
        residual[taken[taken >= 0]] = -torch.inf
    return chosen.to(features.device)


def _class_prototypes_by_class(features, labels, centroids, k, epsilon):
    """``class_prototypes`` by a loop over the classes (``diverse_prototypes`` on each)."""
    n_classes = centroids.shape[0]
    chosen = torch.full((n_classes, k), -1, dtype=torch.int64, device=features.device)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=n_classes).tolist()
    start = 0
    for class_index, count in enumerate(counts):
        rows = order[start:start + count]
        start += count
        if count == 0 or k == 0:
            continue
        picks, _ = diverse_prototypes(features[rows], centroids[class_index], k, epsilon)
        chosen[class_index, :picks.numel()] = rows[picks.to(rows.device)]
    return chosen
