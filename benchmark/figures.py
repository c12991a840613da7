"""Figures of the paper drawn with matplotlib (PNG and PDF): Figure 2, the log-log class-size
plots of the long-tail training splits, Figures 3-7 from an experiment's stored results, and the
report's diagnostics (per-class AP against training-set size, query MAP per epoch, retrieval examples).

Figures 3-7 share one signature, ``plot_x(frame, dataset, bits, path_stem) -> [png, pdf]``: the
frame is ``benchmark.analysis_report.experiment_frame`` (one row per stored cell with columns base,
value, imbalance_factor, bits, seed, map, loss) and ``bits`` the run's middle code length (the
paper's "64 bits" figures); which experiment draws which figure is declared in
``benchmark.experiments.FIGURES``.
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


def save_figure(fig, path_stem: str, extensions: Sequence[str] = ("png", "pdf")) -> list[str]:
    """Save as PNG and PDF (or ``extensions``); returns the paths."""
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    paths = []
    for extension in extensions:
        path = f"{path_stem}.{extension}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    _pyplot().close(fig)
    return paths


def plot_class_sizes(sizes_by_factor: dict[float, np.ndarray], dataset: str, path_stem: str,
                     realised: dict[float, float] | None = None) -> list[str]:
    """Figure 2: sorted training-class sizes against class rank, log-log, one line per IF. The
    legend shows the realised n_max / n_min beside the requested IF where they differ (by more than
    1%): from ``realised`` (IF -> ratio, e.g. the split cards') or else from the sizes drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for factor, sizes in sorted(sizes_by_factor.items()):
        ranked = np.sort(np.asarray(sizes))[::-1]
        ratio = (realised or {}).get(factor)
        if ratio is None and ranked.size:
            ratio = float(ranked[0] / ranked[-1]) if ranked[-1] > 0 else float("inf")
        note = "" if ratio is None or np.isclose(ratio, factor, rtol=0.01) else f", realised {ratio:.3g}"
        ax.loglog(np.arange(1, ranked.size + 1), ranked, marker="o", markersize=2.5, linewidth=1.2,
                  label=f"IF={factor:g}{note} (n={int(ranked.sum()):,})")
    ax.set_xlabel("class rank (log)")
    ax.set_ylabel("training images per class (log)")
    ax.set_title(f"{dataset}: long-tail training splits")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path_stem)


# ---------------------------------------------------------------------------- Figures 3-7

PANEL_LETTERS = "abcdefghijklmnop"


def _mean_over_seeds(frame, by):
    return frame.groupby(by, sort=True)["map"].mean().reset_index()


def _panels(n_panels: int, width: float = 3.3, height: float = 2.9):
    plt = _pyplot()
    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False)
    return fig, list(axes[0])


def _finish(fig, axes, title: str, legend_title: str | None = None):
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8,
                   title=legend_title, title_fontsize=8, bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 0.95))


def _check(frame, what: str):
    if frame is None or len(frame) == 0:
        raise ValueError(f"no stored results for {what}; run its experiment first (run_benchmark.py --experiment ...).")


def plot_beta_sensitivity(frame, dataset: str, bits: int, path_stem: str) -> list[str]:
    """Figure 3: MAP of LTHNet (k=3) against the class-balanced loss's beta, one panel per IF,
    one line per code length. Beta values sit at equal spacing (0, 0.9, 0.99, ... are log-like)."""
    _check(frame, "Figure 3 (beta-sensitivity)")
    data = _mean_over_seeds(frame, ["imbalance_factor", "bits", "value"])
    betas = sorted(data["value"].unique())
    position = {b: i for i, b in enumerate(betas)}
    factors = sorted(data["imbalance_factor"].unique())
    fig, axes = _panels(len(factors))
    for i, (ax, factor) in enumerate(zip(axes, factors)):
        for bits, group in data[data["imbalance_factor"] == factor].groupby("bits"):
            group = group.sort_values("value")
            ax.plot([position[v] for v in group["value"]], group["map"], marker="o", label=f"{bits} bits")
        ax.set_xticks(range(len(betas)))
        ax.set_xticklabels([f"{b:g}" for b in betas], fontsize=7)
        ax.set_xlabel(r"$\beta$ (class-balanced loss, eq. 13)")
        ax.set_ylabel("MAP")
        ax.set_title(f"({PANEL_LETTERS[i]}) {dataset}, IF={factor:g}", fontsize=9)
    _finish(fig, axes, f"Fig. 3: LTHNet (k=3) with different \u03b2 values on {dataset}")
    return save_figure(fig, path_stem)


def _batch_axis(ax, sizes):
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(int(s)) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("batch size (log scale)")
    ax.set_ylabel("MAP")


def plot_batch_size_lthnet(frame, dataset: str, bits: int, path_stem: str) -> list[str]:
    """Figure 4: MAP of LTHNet (k=3) against the batch size (log2 axis), one line per IF."""
    _check(frame, "Figure 4 (batch-size, LTHNet)")
    data = _mean_over_seeds(frame, ["imbalance_factor", "value"])
    sizes = sorted(data["value"].unique())
    fig, axes = _panels(1, width=4.4, height=3.3)
    ax = axes[0]
    for factor, group in data.groupby("imbalance_factor"):
        group = group.sort_values("value")
        ax.plot(group["value"], group["map"], marker="o", label=f"IF={factor:g}")
    _batch_axis(ax, sizes)
    ax.set_title(f"{dataset}, {bits} bits", fontsize=9)
    _finish(fig, axes, "Fig. 4: LTHNet (k=3) with different batch sizes")
    return save_figure(fig, path_stem)


def plot_batch_size_deep(frame, dataset: str, bits: int, path_stem: str) -> list[str]:
    """Figure 6: MAP of the deep methods against the batch size, one panel per IF, one line per method."""
    _check(frame, "Figure 6 (batch-size, deep methods)")
    data = frame.groupby(["base", "imbalance_factor", "value"], sort=True)["map"].mean().reset_index()
    sizes = sorted(data["value"].unique())
    factors = sorted(data["imbalance_factor"].unique())
    fig, axes = _panels(len(factors))
    for i, (ax, factor) in enumerate(zip(axes, factors)):
        for method in dict.fromkeys(frame["base"]):
            group = data[(data["imbalance_factor"] == factor) & (data["base"] == method)].sort_values("value")
            if len(group):
                ax.plot(group["value"], group["map"], marker="o", label=method)
        _batch_axis(ax, sizes)
        ax.set_title(f"({PANEL_LETTERS[i]}) {dataset}, IF={factor:g}", fontsize=9)
    _finish(fig, axes, f"Fig. 6: deep hashing methods with various batch sizes ({bits} bits)")
    return save_figure(fig, path_stem)


def plot_dme_ablation(frame, dataset: str, bits: int, path_stem: str) -> list[str]:
    """Figure 5: MAP of LTHNet (k=0) with (TRUE, red) and without (FALSE, blue) the extended DME
    module against the code length, one panel per IF."""
    _check(frame, "Figure 5 (dme-ablation)")
    data = _mean_over_seeds(frame, ["imbalance_factor", "bits", "value"])
    factors = sorted(data["imbalance_factor"].unique())
    fig, axes = _panels(len(factors))
    styles = {True: ("TRUE (with DME)", "tab:red", "o"), False: ("FALSE (without DME)", "tab:blue", "s")}
    for i, (ax, factor) in enumerate(zip(axes, factors)):
        for flag in (True, False):
            group = data[(data["imbalance_factor"] == factor) & (data["value"] == flag)].sort_values("bits")
            if len(group):
                label, color, marker = styles[flag]
                ax.plot(group["bits"], group["map"], marker=marker, color=color, label=label)
        ax.set_xticks(sorted(data["bits"].unique()))
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel("MAP")
        ax.set_title(f"({PANEL_LETTERS[i]}) {dataset}, IF={factor:g}", fontsize=9)
    _finish(fig, axes, "Fig. 5: LTHNet (k=0) with and without the extended DME module")
    return save_figure(fig, path_stem)


def normalised_loss(losses) -> np.ndarray:
    """A loss curve divided by its maximum (the paper's Fig. 7 y-axis)."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size == 0 or not np.all(np.isfinite(losses)):
        raise ValueError("a loss curve needs finite values to be normalised.")
    peak = np.max(np.abs(losses))
    return losses / peak if peak > 0 else losses


def plot_convergence(frame, dataset: str, bits: int, path_stem: str) -> list[str]:
    """Figure 7: per-epoch training loss normalised by its maximum, one line per IF (mean over seeds)."""
    curves: dict[float, list[np.ndarray]] = {}
    for factor, loss in zip(frame["imbalance_factor"], frame["loss"]):
        if loss:
            curves.setdefault(float(factor), []).append(np.asarray(loss))
    if not curves:
        _check(None, "Figure 7 (convergence)")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 3.3))
    for factor in sorted(curves):
        runs = [normalised_loss(c) for c in curves[factor]]
        length = min(len(r) for r in runs)
        mean = np.mean([r[:length] for r in runs], axis=0)
        ax.plot(np.arange(1, length + 1), mean, marker="o" if length <= 30 else None, markersize=3,
                label=f"IF={factor:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / max loss")
    ax.set_title(f"Fig. 7: convergence of LTHNet (k=3), {dataset}, {bits} bits", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path_stem)


# ---------------------------------------------------------------------------- report diagnostics


def _diagnostic_factors(frame):
    """The IFs a long-tail diagnostic shows: those > 1 (all of them when the run has none)."""
    factors = sorted(frame["imbalance_factor"].unique())
    long_tail = [f for f in factors if f > 1]
    return long_tail or factors


def plot_per_class_ap(per_class, dataset: str, bits: int, path_stem: str) -> list[str]:
    """Per-class AP (mean over the class's queries and the seeds) against the class's training-set
    size (log x axis), one marker series per method (a marker per class, the line through the mean
    over classes of equal size), one panel per IF > 1; ``per_class`` is
    ``benchmark.diagnostics.per_class_ap`` at one code length, methods in legend order."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    _check(per_class, "the per-class AP figure")
    factors = _diagnostic_factors(per_class)
    fig, axes = _panels(len(factors), width=3.8, height=3.2)
    methods = list(dict.fromkeys(per_class["method"]))
    markers = "osD^v<>pPX*h"
    for i, (ax, factor) in enumerate(zip(axes, factors)):
        for j, method in enumerate(methods):
            rows = per_class[(per_class["imbalance_factor"] == factor) & (per_class["method"] == method)]
            if len(rows):
                by_size = rows.groupby("train_size")["ap"].mean()
                line, = ax.plot(by_size.index, by_size.to_numpy(), linewidth=0.9, alpha=0.8)
                ax.plot(rows["train_size"], rows["ap"], linestyle="none", marker=markers[j % len(markers)],
                        markersize=3.5, alpha=0.85, color=line.get_color(), label=method)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))  # 1, 10, 100: no
        ax.xaxis.set_minor_formatter(NullFormatter())  # mathtext to parse (it is most of the drawing time)
        ax.set_xlabel("training items of the class (log)")
        ax.set_ylabel("AP of the class's queries")
        ax.set_title(f"({PANEL_LETTERS[i]}) {dataset}, IF={factor:g}", fontsize=9)
    _finish(fig, axes, f"Per-class AP against training-set size ({bits} bits)")
    return save_figure(fig, path_stem)


def plot_query_map_curves(curves, finals, dataset: str, bits: int, path_stem: str) -> list[str]:
    """The protocol-inflation diagnostic: the query MAP the trainer recorded after each epoch (mean
    over seeds), one line per method, one panel per IF; the final epoch (the table's number) is the
    filled marker at the end of each line. ``curves``/``finals``: ``diagnostics.inflation_curves`` /
    ``inflation_table`` at one code length."""
    _check(curves, "the query-MAP-per-epoch figure")
    factors = sorted(curves["imbalance_factor"].unique())
    fig, axes = _panels(len(factors), width=3.6, height=3.1)
    for i, (ax, factor) in enumerate(zip(axes, factors)):
        for method in dict.fromkeys(curves["method"]):
            rows = curves[(curves["imbalance_factor"] == factor) & (curves["method"] == method)].sort_values("epoch")
            if not len(rows):
                continue
            line, = ax.plot(rows["epoch"], rows["map"], marker="o", markersize=2.5, linewidth=1.1, label=method)
            final = finals[(finals["imbalance_factor"] == factor) & (finals["method"] == method)]
            if len(final):
                ax.plot([final["final_epoch"].max()], [final["final_map"].mean()], marker="s", markersize=6,
                        color=line.get_color(), markeredgecolor="black")
        ax.set_xlabel("epoch")
        ax.set_ylabel("query MAP (diagnostic)")
        ax.set_title(f"({PANEL_LETTERS[i]}) {dataset}, IF={factor:g}", fontsize=9)
    _finish(fig, axes, f"Query MAP per epoch (diagnostic only; square: final epoch = table value), {bits} bits")
    return save_figure(fig, path_stem)


def _tile(image, size: int, frame: tuple | None, border: int) -> np.ndarray:
    """An image as a (size, size, 3) float tile in [0, 1] (nearest-neighbour resize), framed."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    else:
        image = image.astype(np.float32)
        peak = float(image.max()) if image.size else 1.0
        image = image / peak if peak > 1.0 else image
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    inner = size - 2 * border
    rows = (np.arange(inner) * image.shape[0] // inner).clip(0, image.shape[0] - 1)
    cols = (np.arange(inner) * image.shape[1] // inner).clip(0, image.shape[1] - 1)
    tile = np.ones((size, size, 3), dtype=np.float32)
    if frame is not None:
        tile[:] = frame
    tile[border:border + inner, border:border + inner] = np.clip(image[rows][:, cols, :3], 0, 1)
    return tile


def plot_retrieval_examples(examples, load_image, class_names, title: str, path_stem: str,
                            tile: int = 56) -> list[str]:
    """Retrieval examples: one row per (query, method): the query, then its top-k database items
    in rank order, each framed green (same class as the query) or red, with its Hamming distance.
    ``examples``: ``benchmark.diagnostics.retrieval_examples``; ``load_image(row)`` an image array.
    Drawn as one mosaic image (one axes), so a 9 x 11 grid costs about what one small plot does;
    PNG only."""
    if not examples:
        raise ValueError("no retrieval examples to draw (the run's data has no images or no stored codes).")
    plt = _pyplot()
    colors = {True: (0.17, 0.63, 0.17), False: (0.84, 0.15, 0.16), None: (0.0, 0.0, 0.0)}
    k = max(len(e["items"]) for e in examples)
    gap, label, border, query_gap = 6, 14, 4, 14
    width = (k + 1) * (tile + gap) + query_gap
    height = len(examples) * (tile + label + gap)
    canvas = np.ones((height, width, 3), dtype=np.float32)

    def name(value):
        return class_names[value] if class_names and value < len(class_names) else str(value)

    texts = []
    for r, example in enumerate(examples):
        top = r * (tile + label + gap) + label
        canvas[top:top + tile, 0:tile] = _tile(load_image(example["query_row"]), tile, colors[None], border)
        texts.append((tile / 2, top - 2, f"query {name(example['query_label'])} ({example['train_size']} train)"))
        texts.append((-6, top + tile / 2, f"{example['method']}\n{example['role']}", "right"))
        for c, item in enumerate(example["items"]):
            left = (c + 1) * (tile + gap) + query_gap
            canvas[top:top + tile, left:left + tile] = _tile(load_image(item["row"]), tile, colors[item["correct"]],
                                                             border)
            texts.append((left + tile / 2, top - 2, f"d={item['distance']}"))
    fig = plt.figure(figsize=(width / 100 + 1.6, height / 100 + 0.4))
    ax = fig.add_axes((1.6 / (width / 100 + 1.6), 0, width / 100 / (width / 100 + 1.6), height / (height + 40)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for entry in texts:
        x, y, text = entry[:3]
        ha = entry[3] if len(entry) > 3 else "center"
        ax.text(x, y, text, fontsize=5.5, ha=ha, va="bottom" if ha == "center" else "center")
    fig.suptitle(title, fontsize=7, y=1.0)
    return save_figure(fig, path_stem, ("png",))  # a raster mosaic: a PDF would add nothing
