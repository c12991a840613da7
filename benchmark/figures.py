"""Figures of the paper drawn with matplotlib (PNG and PDF): Figure 2, the log-log class-size
plots of the long-tail training splits.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path_stem: str) -> list[str]:
    """Save as PNG and PDF; returns both paths."""
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    paths = []
    for extension in ("png", "pdf"):
        path = f"{path_stem}.{extension}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    _pyplot().close(fig)
    return paths


def plot_class_sizes(sizes_by_factor: dict[float, np.ndarray], dataset: str, path_stem: str) -> list[str]:
    """Figure 2: sorted training-class sizes against class rank, log-log, one line per IF."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for factor, sizes in sorted(sizes_by_factor.items()):
        ranked = np.sort(np.asarray(sizes))[::-1]
        ax.loglog(np.arange(1, ranked.size + 1), ranked, marker="o", markersize=2.5, linewidth=1.2,
                  label=f"IF={factor:g} (n={int(ranked.sum()):,})")
    ax.set_xlabel("class rank (log)")
    ax.set_ylabel("training images per class (log)")
    ax.set_title(f"{dataset}: long-tail training splits")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path_stem)


def figure2_from_splits(data, imbalance_factors: Sequence[float], path_stem: str, split_seed: int = 0) -> list[str]:
    from datasets import make_long_tail

    sizes = {float(f): make_long_tail(data, f, seed=split_seed).train_class_sizes() for f in imbalance_factors}
    return plot_class_sizes(sizes, data.name, path_stem)
