"""Uncertainty of the reported numbers: percentile-bootstrap 95% intervals of MAP (over queries, and
over seeds when several ran), paired tests over per-query AP, Holm's correction and the direction of a result.

The interval of a table value (the mean over seeds of a cell's MAP) comes from a two-level bootstrap:
every resample draws the seeds with replacement and then the queries with replacement (one draw of
the queries shared by every seed evaluated on the same query set, since they are the same queries),
and takes the mean over the drawn seeds of the MAP over the drawn queries. With one seed this is
the plain bootstrap over queries. A group's MAP (e.g. the tail classes) is the ratio "sum of AP over
the group's drawn queries / number of them" in the same resamples (queries drawn from the whole query
set, so the group's size varies as it would in a new query sample). Percentile intervals; 2,000
resamples; a fixed seed, so a report is reproducible and a value's interval depends only on its own
data (up to float32 rounding). With few seeds the seed part is optimistic: the bootstrap sees no
more spread than the seeds that ran (with S seeds it underestimates their variance by (S - 1) / S).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
ALPHA = 0.05  # the significance level of the marks, the t-tests and their Holm correction
#: Resamples x queries drawn at once (~8 bytes each), and queries x columns multiplied at once (4
#: bytes each). float32 products: counts are exact and a mean over 10^4 APs keeps ~6 digits.
_CHUNK_ELEMENTS = 2_000_000
_BLOCK_ELEMENTS = 16_000_000

RESULTS = ("significantly better", "significantly worse", "not significant")


def _counts(n: int, n_resamples: int, seed: int):
    """(start, counts) chunks: how often each of ``n`` queries is drawn in each resample. The same
    for every call with the same ``n`` and seed (the draws depend on nothing else)."""
    rng = np.random.default_rng([int(seed), int(n)])
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        index = rng.integers(0, n, size=(size, n), dtype=np.int64)
        index += (np.arange(size, dtype=np.int64) * n)[:, None]
        yield start, np.bincount(index.ravel(), minlength=size * n).reshape(size, n).astype(np.float32)


def _seed_weights(n_seeds: int, n_resamples: int, seed: int) -> np.ndarray:
    """(resamples, seeds): the fraction of each resample's seed draws that fell on each seed."""
    if n_seeds == 1:
        return np.ones((n_resamples, 1))
    rng = np.random.default_rng([int(seed), 1, int(n_seeds)])
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_resamples) / n_seeds


def _query_bootstrap(n: int, entries: list, n_resamples: int, seed: int) -> list[np.ndarray]:
    """Per entry (ap, mask), the bootstrap distribution (resamples,) of the mean AP over the
    masked queries (NaN in a resample that drew none of them)."""
    out = []
    width = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for first in range(0, len(entries), width):
        block = entries[first:first + width]
        columns, mask_column = [], {}
        for ap, mask in block:
            columns.append(ap if mask is None else np.where(mask, ap, 0.0))
        for _ap, mask in block:
            if mask is not None and mask.tobytes() not in mask_column:
                mask_column[mask.tobytes()] = len(columns)
                columns.append(mask.astype(np.float64))
        matrix = np.stack(columns, axis=1).astype(np.float32)
        sums = np.empty((n_resamples, matrix.shape[1]), dtype=np.float64)
        for start, counts in _counts(n, n_resamples, seed):
            sums[start:start + counts.shape[0]] = counts @ matrix
        for j, (_ap, mask) in enumerate(block):
            if mask is None:
                out.append(sums[:, j] / n)
            else:
                size = sums[:, mask_column[mask.tobytes()]]
                with np.errstate(invalid="ignore", divide="ignore"):
                    out.append(np.where(size > 0, sums[:, j] / np.where(size > 0, size, 1), np.nan))
    return out


def bootstrap_intervals(items: Sequence[Sequence[tuple]], n_resamples: int = N_RESAMPLES,
                        confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Estimate and percentile interval of each item's MAP: an (items, 3) array of
    (estimate, low, high).

    An item is one table value: a list with one ``(ap, mask)`` pair per seed (``ap`` the per-query
    AP of that seed's cell, ``mask`` None for all queries or a boolean array selecting a group's
    queries). Its estimate is the mean over seeds of the MAP over the masked queries; NaN where a
    seed has no such query. Items with the same number of queries share the query resamples (one
    matrix product for all of them), so a whole report costs a few products.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples!r}.")
    items = [[(np.asarray(ap, dtype=np.float64), None if mask is None else np.asarray(mask, dtype=bool))
              for ap, mask in item] for item in items]
    result = np.full((len(items), 3), np.nan)
    by_n: dict[int, list] = {}
    for i, item in enumerate(items):
        for s, (ap, mask) in enumerate(item):
            if ap.ndim != 1 or (mask is not None and mask.shape != ap.shape):
                raise ValueError("each seed's AP must be 1-D and its mask of the same length.")
            if ap.size and (mask is None or mask.any()):
                by_n.setdefault(ap.size, []).append((i, s, ap, mask))
    draws: dict[tuple[int, int], np.ndarray] = {}
    for n, entries in by_n.items():
        means = _query_bootstrap(n, [(ap, mask) for _i, _s, ap, mask in entries], n_resamples, seed)
        for (i, s, _ap, _mask), values in zip(entries, means):
            draws[(i, s)] = values
    tail = 100 * (1 - confidence) / 2
    for i, item in enumerate(items):
        if not item or any((i, s) not in draws for s in range(len(item))):
            continue
        per_seed = [ap.mean() if mask is None else ap[mask].mean() for ap, mask in item]
        stacked = np.stack([draws[(i, s)] for s in range(len(item))], axis=1)
        weights = _seed_weights(len(item), n_resamples, seed)
        combined = (np.where(weights > 0, stacked, 0.0) * weights).sum(axis=1)  # NaN where a drawn seed had none
        low, high = np.nanpercentile(combined, [tail, 100 - tail]) if np.isfinite(combined).any() else (np.nan,) * 2
        result[i] = (float(np.mean(per_seed)), low, high)
    return result


# ---------------------------------------------------------------------------- tests


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test (scipy.stats.ttest_rel) of per-query AP ``a`` against ``b``:
    (t, p); identical vectors give (0, 1), a constant non-zero difference (+-inf, 0)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a paired test needs the same queries: {a.shape} vs {b.shape} per-query values.")
    difference = a - b
    if np.allclose(difference, difference.mean(), rtol=0, atol=1e-12):
        mean = float(difference.mean())
        return (0.0, 1.0) if abs(mean) <= 1e-12 else (float(np.sign(mean) * np.inf), 0.0)
    result = stats.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries stay NaN and do
    not count as tests. Reject at level alpha where the adjusted p < alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def direction(difference: float, p_value: float, alpha: float = ALPHA) -> str:
    """'significantly better' / 'significantly worse' (p < alpha, by the sign of the difference)
    or 'not significant'."""
    if np.isnan(p_value) or p_value >= alpha or difference == 0:
        return "not significant"
    return "significantly better" if difference > 0 else "significantly worse"


def format_interval(value: float, low: float, high: float, digits: int = 4) -> str:
    """'0.4123 [0.4012, 0.4235]' (the value alone when the interval is unknown, '–' for no value)."""
    if value is None or np.isnan(value):
        return "–"
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
