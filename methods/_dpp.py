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
