"""Compiled row passes of the batched DPP prototype selection (``methods._dpp.class_prototypes``):
float64 dot products of float32 feature rows with a per-class row, without float64 copies."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def norms_and_centroid_cosines(features, centroid_units, labels, norms, cosines):
    """norms[a] = ||v_a||, cosines[a] = <v_a, u_{y_a}> / ||v_a|| (0 for a zero row), float64."""
    n, dim = features.shape
    for a in numba.prange(n):
        c = labels[a]
        squares = 0.0
        dot = 0.0
        for d in range(dim):
            value = np.float64(features[a, d])
            squares += value * value
            dot += value * centroid_units[c, d]
        norms[a] = np.sqrt(squares)
        cosines[a] = dot / norms[a] if squares > 0.0 else 0.0


@numba.njit(cache=True, parallel=True)
def class_row_dots(features, class_rows, labels, out):
    """out[a] = <v_a, class_rows[y_a]> in float64 (products of float32 values are exact)."""
    n, dim = features.shape
    for a in numba.prange(n):
        c = labels[a]
        dot = 0.0
        for d in range(dim):
            dot += np.float64(features[a, d]) * np.float64(class_rows[c, d])
        out[a] = dot

