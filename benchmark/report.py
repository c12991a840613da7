"""Tables from the result store: the paper's Table 3/4 layout as CSV, LaTeX and Markdown, the
published numbers and differences beside ours, 95% intervals and significance marks on every value,
paired t-tests over per-query AP (Holm-corrected, with their direction), and head/medium/tail and
many/medium/few-shot MAP.

Reads only the result store, once per run (``benchmark.results.StoredResults``), and the published
numbers shipped in ``results/``. Every function here takes that table (or a store, read once).
"""
from __future__ import annotations

import os
from importlib import resources

import numpy as np
import pandas as pd

from common.io import atomic_write, file_slug

from .diagnostics import SHOT_GROUP_TEXT, SHOT_GROUPS, shot_groups
from .experiments import SIGNIFICANCE_TARGET
from .results import GROUPS, StoredResults, as_results
from .uncertainty import ALPHA, bootstrap_intervals, direction, format_interval, holm, paired_test

POLICIES = ("tie_aware", "index_order")
PAPER_BITS = (32, 64, 96)
PAPER_DATASETS = ("cifar100", "imagenet100")

MODE_CAPTIONS = {
    "features": ("features mode: every method hashes the dataset's frozen features (cached ResNet34 features "
                 "for image datasets, the raw features for digits and feature files); deep methods train a "
                 "trunk and their heads on them (the paper fine-tunes deep methods end to end, so deep rows "
                 "are not directly comparable to its numbers)"),
    "finetune": ("finetune mode: deep methods train ResNet34 end to end as in the paper; shallow methods "
                 "hash the frozen cached ResNet34 features"),
}


def published_map() -> pd.DataFrame:
    """The paper's Tables 3-4 (306 values): dataset, method (display name), imbalance_factor, bits, map."""
    with resources.files("results").joinpath("published_map.csv").open("r") as handle:
        frame = pd.read_csv(handle)
    frame["imbalance_factor"] = frame["imbalance_factor"].astype(float)
    return frame


def paper_method_order() -> list[str]:
    return list(dict.fromkeys(published_map()["method"]))


# ---------------------------------------------------------------------------- frames


def results_frame(source, dataset: str, mode: str = "features", method_keys=None,
                  fingerprints=None) -> pd.DataFrame:
    """One row per stored cell of a table: deep methods of ``mode``, shallow methods from features mode.

    ``method_keys`` (spec keys such as ``LTHNet(k=3)``) restricts the table to one run's methods, so
    an experiment's variants (``LTHNet(beta=0.9,k=3)``) stay out of the main table; ``fingerprints``
    to the data the run used. ``source``: a ``StoredResults`` or a ``ResultStore``.
    """
    return as_results(source, dataset).select(dataset, mode, method_keys, fingerprints)


def ordered_methods(names) -> list[str]:
    """The paper's row order, then other (plugin) methods in alphabetical order."""
    paper = paper_method_order()
    names = list(dict.fromkeys(names))
    known = [m for m in paper if m in names]
    return known + sorted(m for m in names if m not in paper)


def summary_table(frame: pd.DataFrame, policy: str = "tie_aware", results: StoredResults | None = None) -> pd.DataFrame:
    """Mean (and std) MAP over seeds per method x IF x bits, with published value and difference.

    With ``results`` (the store the frame came from) also the 95% interval (``map_ci_low``,
    ``map_ci_high``, see ``benchmark.uncertainty``), the realised n_max / n_min of the split and the
    column marks (``rank_mark``: the paper's best / second; ``mark``, ``p_vs_best``,
    ``p_vs_best_holm``: see ``significance_marks``)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown tie policy {policy!r}; choose {POLICIES}.")
    column = f"map_{policy}"
    if frame.empty:
        return pd.DataFrame(columns=["method", "imbalance_factor", "bits", "map", "map_std", "n_seeds",
                                     "published", "difference"])
    grouped = frame.groupby(["method", "imbalance_factor", "bits"], sort=False)[column]
    summary = grouped.agg(map="mean", map_std="std", n_seeds="count").reset_index()
    summary["map_std"] = summary["map_std"].fillna(0.0)
    dataset = frame["dataset"].iloc[0]
    published = published_map()
    published = published[published["dataset"] == dataset].rename(columns={"map": "published"})
    summary = summary.merge(published[["method", "imbalance_factor", "bits", "published"]],
                            on=["method", "imbalance_factor", "bits"], how="left")
    summary["difference"] = summary["map"] - summary["published"]
    order = {m: i for i, m in enumerate(ordered_methods(summary["method"]))}
    summary = summary.sort_values(["method", "imbalance_factor", "bits"],
                                  key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)
    if results is None:
        return summary
    keys = ["method", "imbalance_factor", "bits"]
    intervals = interval_table(results, frame, policy)[keys + ["map_ci_low", "map_ci_high"]]
    summary = summary.merge(intervals, on=keys, how="left")
    realised = frame.groupby(keys, sort=False)["realised_imbalance_factor"].first().reset_index() \
        if "realised_imbalance_factor" in frame else None
    if realised is not None:
        summary = summary.merge(realised, on=keys, how="left")
    ranks = _rank_marks(wide_table(summary))
    summary["rank_mark"] = [ranks.loc[m, (f, b)] for m, f, b in zip(summary["method"], summary["imbalance_factor"],
                                                                     summary["bits"])]
    summary = summary.merge(significance_marks(results, frame, policy), on=keys, how="left")
    columns = ["method", "imbalance_factor", "bits", "map", "map_ci_low", "map_ci_high", "map_std", "n_seeds",
               "published", "difference", "realised_imbalance_factor", "rank_mark", "mark", "p_vs_best",
               "p_vs_best_holm"]
    return summary[[c for c in columns if c in summary.columns]]


# ---------------------------------------------------------------------------- uncertainty


MARK_BEST, MARK_TIED, MARK_BELOW = "best", "not significantly different from best", "significantly below best"
MARKS_LEGEND_MARKDOWN = (
    "**Bold**: best value of the column; <u>underlined</u>: second best (the paper's convention); "
    "†: not significantly different from the column's best (two-sided paired t-test over per-query AP, "
    f"Holm-corrected over the column's other rows, α = {ALPHA:g}); a value without † or bold is "
    "significantly below the best (where a paired test is possible). [low, high]: 95% percentile-bootstrap "
    "interval over queries (and seeds when several ran; `benchmark/uncertainty.py`).")
MARKS_LEGEND_LATEX = (
    "Bold: best value of the column; underlined: second best (the paper's convention); $^\\dagger$: not "
    "significantly different from the column's best (two-sided paired t-test over per-query AP, "
    f"Holm-corrected over the column's other rows, alpha = {ALPHA:g}).")


def _setting_cells(results: StoredResults, frame: pd.DataFrame, policy: str):
    """(method, IF, bits) -> list of per-seed (ap, query_labels or None, train_class_sizes or None)."""
    out = {}
    for (method, factor, bits), group in frame.groupby(["method", "imbalance_factor", "bits"], sort=False):
        cells = []
        for cell_key in group.sort_values("seed")["cell_key"]:
            arrays = results.arrays(cell_key)
            cells.append((arrays[f"ap_{policy}"], arrays.get("query_labels"), arrays.get("train_class_sizes")))
        out[(method, factor, bits)] = cells
    return out


def _group_masks(query_labels, sizes) -> dict[str, np.ndarray]:
    """Query masks of the thirds (head/medium/tail) and the shot groups of one cell."""
    from .runner import class_groups

    if query_labels is None or sizes is None:
        return {}
    groups = {**class_groups(np.asarray(sizes)), **shot_groups(sizes)}
    return {name: np.isin(query_labels, classes) for name, classes in groups.items()}


def interval_table(results: StoredResults, frame: pd.DataFrame, policy: str = "tie_aware") -> pd.DataFrame:
    """Per method x IF x bits: MAP (mean over seeds) and its 95% interval, and the same for the
    head / medium / tail thirds and the many / medium / few-shot groups (``<group>``,
    ``<group>_ci_low``, ``<group>_ci_high``, ``<group>_classes``); groups need the cells' stored query
    labels (NaN without). Computed once per read of the store."""
    key = ("intervals", policy, tuple(sorted(frame["cell_key"])))
    return results.cached(key, lambda: _interval_table(results, frame, policy))


def _interval_table(results, frame, policy):
    names = GROUPS + SHOT_GROUPS
    settings = _setting_cells(results, frame, policy)
    items, where = [], []
    for setting, cells in settings.items():
        items.append([(ap, None) for ap, _labels, _sizes in cells])
        where.append((setting, "map"))
        masks = [_group_masks(labels, sizes) for _ap, labels, sizes in cells]
        if all(masks):
            for name in names:
                items.append([(ap, m[name]) for (ap, _l, _s), m in zip(cells, masks)])
                where.append((setting, name))
    estimates = bootstrap_intervals(items)
    rows = {}
    for (setting, name), (value, low, high) in zip(where, estimates):
        row = rows.setdefault(setting, dict(zip(["method", "imbalance_factor", "bits"], setting)))
        prefix = "map" if name == "map" else name
        if name != "map":
            row[name] = value
        row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"] = low, high
    for setting, cells in settings.items():
        _ap, labels, sizes = cells[0]
        if labels is not None and sizes is not None:
            for name, classes in shot_groups(sizes).items():
                rows[setting][f"{name}_classes"] = int(classes.size)
    columns = ["method", "imbalance_factor", "bits", "map_ci_low", "map_ci_high"] + [
        f"{n}{suffix}" for n in names for suffix in ("", "_ci_low", "_ci_high")] + [f"{n}_classes" for n in SHOT_GROUPS]
    return pd.DataFrame(list(rows.values())).reindex(columns=columns)


def _mean_query_ap(cells, mask_name: str | None = None):
    """The per-query AP averaged over the seeds (restricted to a group's queries), or None when the
    seeds were evaluated on different query sets."""
    aps = [ap for ap, _l, _s in cells]
    if len({ap.shape for ap in aps}) != 1:
        return None
    mean = np.mean(aps, axis=0)
    if mask_name is None:
        return mean
    masks = _group_masks(cells[0][1], cells[0][2])
    return mean[masks[mask_name]] if mask_name in masks else None


def significance_marks(results: StoredResults, frame: pd.DataFrame, policy: str = "tie_aware",
                       group: str | None = None) -> pd.DataFrame:
    """Per method x IF x bits: ``mark`` (``MARK_BEST``, ``MARK_TIED``, ``MARK_BELOW`` or '' when
    no paired test is possible), ``p_vs_best`` and ``p_vs_best_holm``.

    In each (IF, bits) column the best row is the highest MAP (mean over seeds; of the ``group``'s
    queries when given, e.g. ``"tail"``); every other row is tested against it by a two-sided paired
    t-test over per-query AP (mean over each method's seeds), Holm-corrected over the column's
    other rows; p_holm >= alpha marks it "not significantly different from best"."""
    key = ("marks", policy, group, tuple(sorted(frame["cell_key"])))
    return results.cached(key, lambda: _significance_marks(results, frame, policy, group))


def _significance_marks(results, frame, policy, group):
    settings = _setting_cells(results, frame, policy)
    rows = []
    by_column: dict = {}
    for (method, factor, bits), cells in settings.items():
        by_column.setdefault((factor, bits), []).append((method, _mean_query_ap(cells, group)))
    for (factor, bits), entries in by_column.items():
        usable = [(m, ap) for m, ap in entries if ap is not None and ap.size]
        if not usable:
            continue
        best_method, best_ap = max(usable, key=lambda e: e[1].mean())
        others = [(m, ap) for m, ap in usable if m != best_method]
        p_values = np.array([paired_test(ap, best_ap)[1] if ap.shape == best_ap.shape else np.nan
                             for _m, ap in others])
        adjusted = holm(p_values)
        rows.append({"method": best_method, "imbalance_factor": factor, "bits": bits, "mark": MARK_BEST,
                     "p_vs_best": np.nan, "p_vs_best_holm": np.nan})
        for (method, _ap), p, p_holm in zip(others, p_values, adjusted):
            mark = "" if np.isnan(p) else (MARK_TIED if p_holm >= ALPHA else MARK_BELOW)
            rows.append({"method": method, "imbalance_factor": factor, "bits": bits, "mark": mark,
                         "p_vs_best": p, "p_vs_best_holm": p_holm})
    return pd.DataFrame(rows, columns=["method", "imbalance_factor", "bits", "mark", "p_vs_best", "p_vs_best_holm"])


def wide_table(summary: pd.DataFrame, value: str = "map") -> pd.DataFrame:
    """Rows: methods in the paper's order; columns: (IF, bits) as in Tables 3-4."""
    if summary.empty:
        return pd.DataFrame()
    wide = summary.pivot_table(index="method", columns=["imbalance_factor", "bits"], values=value, aggfunc="first")
    wide = wide.reindex(ordered_methods(summary["method"]))
    return wide.sort_index(axis=1)


def _column_label(factor, bits) -> str:
    return f"IF={factor:g} {bits} bits"


def _rank_marks(wide: pd.DataFrame) -> pd.DataFrame:
    """'best' / 'second' marks per column (ties share a mark), as the paper's bold / underline."""
    marks = pd.DataFrame("", index=wide.index, columns=wide.columns)
    for column in wide.columns:
        values = wide[column].dropna().round(4)
        distinct = sorted(values.unique(), reverse=True)
        if distinct:
            marks.loc[values.index[values == distinct[0]], column] = "best"
        if len(distinct) > 1:
            marks.loc[values.index[values == distinct[1]], column] = "second"
    return marks


def table_caption(frame: pd.DataFrame, dataset: str, mode: str, policy: str) -> str:
    policy_text = ("tie-aware expected AP (McSherry & Najork 2008)" if policy == "tie_aware"
                   else "ties broken by database index order")
    caption = f"MAP on {dataset} ({policy_text}); {MODE_CAPTIONS.get(mode, mode + ' mode')}."
    if not frame.empty:
        default_bits = frame["default_bits"].iloc[0]
        if tuple(default_bits) != PAPER_BITS:
            caption += (f" {dataset} uses {'/'.join(map(str, default_bits))} bits by default instead of the "
                        f"paper's 32/64/96 (its features cannot give 96-bit PCA codes).")
        seeds = frame.groupby(["method", "imbalance_factor", "bits"])["seed"].nunique().max()
        if seeds > 1:
            caption += f" Mean over {seeds} seeds."
        caption += realised_imbalance_text(frame)
        if mode == "features":
            caption += trunk_text(frame)
    return caption


TRUNK_NAMES = {"shared": "the shared trunk Linear(d, 2000) + ReLU under its head",
               "own": "its own direct-feature layer Linear(d, 2000) + ReLU (the shared trunk's shape)",
               "none": "its head alone on the features (no trunk: linear heads)"}


def trunk_text(frame: pd.DataFrame) -> str:
    """' Deep rows: DPSH, CSQ: the shared trunk ...; LTHNet (k=3): its own ...' -- which trunk ran
    under each deep row (from the records' resolved settings); '' without deep rows."""
    if frame.empty or "trunk" not in frame:
        return ""
    deep = frame[(frame["family"] == "deep") & (frame["trunk"] != "")]
    if deep.empty:
        return ""
    by_trunk = {}
    for method in ordered_methods(deep["method"].unique()):
        trunks = sorted(set(deep.loc[deep["method"] == method, "trunk"]))
        by_trunk.setdefault(", ".join(trunks), []).append(method)
    if set(by_trunk) <= {"shared", "own"}:
        return (" Deep rows train the same trunk in features mode, Linear(d, 2000) + ReLU, under their heads "
                "(LTHNet's direct-feature layer is that trunk): equal trainable capacity below the head.")
    return " Deep rows' trunks: " + "; ".join(f"{', '.join(methods)}: {TRUNK_NAMES.get(trunk, trunk)}"
                                              for trunk, methods in by_trunk.items()) + "."


def realised_imbalance_text(frame: pd.DataFrame) -> str:
    """' Realised n_max/n_min of the drawn training splits: IF=50 -> 69.5, ...' for the IFs whose
    drawn split differs from the requested ratio (by more than 1%); '' when none does."""
    if frame.empty or "realised_imbalance_factor" not in frame:
        return ""
    realised = frame.groupby("imbalance_factor")["realised_imbalance_factor"].first().dropna()
    differ = [(f, r) for f, r in realised.items() if not np.isclose(r, f, rtol=0.01)]
    if not differ:
        return ""
    return (" The drawn training splits' realised n_max/n_min differs from the requested IF: "
            + ", ".join(f"IF={f:g}: realised {r:.3g}" for f, r in differ) + ".")


# ---------------------------------------------------------------------------- renderers


def _wide_marks(summary: pd.DataFrame, column: str, value) -> pd.DataFrame | None:
    """A wide (method x (IF, bits)) boolean frame: where ``summary[column] == value``."""
    if summary is None or column not in summary:
        return None
    flags = summary.assign(_flag=(summary[column] == value).astype(float))
    return wide_table(flags, value="_flag").fillna(0).astype(bool)


def to_latex(wide: pd.DataFrame, caption: str, label: str = "tab:map", tied: pd.DataFrame | None = None) -> str:
    """LaTeX (booktabs) table: best bold, second underlined (the paper's marks); ``tied`` (a wide
    boolean frame) adds a dagger to values not significantly different from the best."""
    marks = _rank_marks(wide)
    factors = list(dict.fromkeys(f for f, _ in wide.columns))
    lines = [r"\begin{table*}[t]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}", rf"\label{{{label}}}",
             r"\begin{tabular}{l" + "c" * len(wide.columns) + "}", r"\toprule"]
    header = ["Methods"]
    rules = []
    col = 2
    for factor in factors:
        n = sum(1 for f, _ in wide.columns if f == factor)
        header.append(rf"\multicolumn{{{n}}}{{c}}{{IF={factor:g}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + n - 1}}}")
        col += n
    lines.append(" & ".join(header) + r" \\")
    lines.append(" ".join(rules))
    lines.append(" & ".join([""] + [f"{b} bits" for _, b in wide.columns]) + r" \\")
    lines.append(r"\midrule")
    for method, row in wide.iterrows():
        cells = []
        for column in wide.columns:
            value = row[column]
            text = "--" if pd.isna(value) else f"{value:.4f}"
            if marks.loc[method, column] == "best":
                text = rf"\textbf{{{text}}}"
            elif marks.loc[method, column] == "second":
                text = rf"\underline{{{text}}}"
            if _flag(tied, method, column):
                text += r"$^\dagger$"
            cells.append(text)
        lines.append(" & ".join([_latex_escape(method)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def _flag(flags: pd.DataFrame | None, method, column) -> bool:
    return flags is not None and method in flags.index and column in flags.columns and bool(flags.loc[method, column])


def _latex_escape(text: str) -> str:
    return text.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")


def to_markdown(wide: pd.DataFrame, published: pd.DataFrame | None = None, low: pd.DataFrame | None = None,
                high: pd.DataFrame | None = None, tied: pd.DataFrame | None = None) -> str:
    """Markdown table; best **bold**, second _underlined_; '†' where ``tied`` (not significantly
    different from the best); ' [low, high]' (95% interval) where given; 'ours / paper (diff)'
    where published."""
    marks = _rank_marks(wide)
    columns = [_column_label(f, b) for f, b in wide.columns]
    lines = ["| Method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for method, row in wide.iterrows():
        cells = []
        for column in wide.columns:
            value = row[column]
            text = "–" if pd.isna(value) else f"{value:.4f}"
            if marks.loc[method, column] == "best":
                text = f"**{text}**"
            elif marks.loc[method, column] == "second":
                text = f"<u>{text}</u>"
            if _flag(tied, method, column):
                text += "†"
            if low is not None and high is not None and not pd.isna(value) and method in low.index \
                    and column in low.columns and not pd.isna(low.loc[method, column]):
                text += f" [{low.loc[method, column]:.4f}, {high.loc[method, column]:.4f}]"
            if published is not None and method in published.index and column in published.columns:
                paper = published.loc[method, column]
                if not pd.isna(paper):
                    diff = "" if pd.isna(value) else f" ({value - paper:+.4f})"
                    text += f" / {paper:.4f}{diff}"
            cells.append(text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def marked_markdown(summary: pd.DataFrame, published: bool = True) -> str:
    """The main Markdown table of a summary with intervals and marks (``summary_table(...,
    results=...)``): values, 95% intervals, marks, and the published values beside ours."""
    wide = wide_table(summary)
    published_wide = None
    if published and summary["published"].notna().any():
        published_wide = wide_table(summary.dropna(subset=["published"]), value="published")
    low = wide_table(summary, "map_ci_low") if "map_ci_low" in summary else None
    high = wide_table(summary, "map_ci_high") if "map_ci_high" in summary else None
    return to_markdown(wide, published_wide, low, high, _wide_marks(summary, "mark", MARK_TIED))


# ---------------------------------------------------------------------------- significance


def paired_ttests(source, dataset: str, mode: str = "features", method: str | None = None,
                  policy: str = "tie_aware", method_keys=None, fingerprints=None) -> pd.DataFrame:
    """Paired t-test of ``method`` against the best other method in each (IF, bits) setting.

    Over per-query AP (averaged over the seeds both methods ran), two-sided, scipy.stats.ttest_rel;
    ``across_seeds_p`` tests the per-seed MAPs when both have >= 2 common seeds. ``method`` defaults
    to LTHNet (k=3) when present, else the best method overall. Columns beside the raw ``p_value``:
    ``p_holm`` (Holm-corrected over the table's settings), ``result`` (its direction at
    alpha = 0.05: significantly better / significantly worse / not significant, from ``p_holm``),
    ``significant_0.05`` (the raw flag: raw p < 0.05 and ``method`` better), ``difference`` and the
    95% bootstrap intervals of both MAPs and of the difference (``*_ci_low``, ``*_ci_high``).
    """
    results = as_results(source, dataset)
    frame = results.select(dataset, mode, method_keys, fingerprints)
    if frame.empty:
        return pd.DataFrame()
    summary = summary_table(frame, policy)
    if method is None:
        method = SIGNIFICANCE_TARGET if SIGNIFICANCE_TARGET in set(summary["method"]) else \
            summary.groupby("method")["map"].mean().idxmax()
    rows, items = [], []
    for (factor, bits), group in summary.groupby(["imbalance_factor", "bits"]):
        if method not in set(group["method"]):
            continue
        others = group[group["method"] != method]
        if others.empty:
            continue
        best = others.loc[others["map"].idxmax()]
        setting = frame[(frame["imbalance_factor"] == factor) & (frame["bits"] == bits)]
        ours = results.per_query_ap(setting[setting["method"] == method], policy)
        theirs = results.per_query_ap(setting[setting["method"] == best["method"]], policy)
        common = sorted(set(ours) & set(theirs))
        if not common:
            continue
        a = np.mean([ours[s] for s in common], axis=0)
        b = np.mean([theirs[s] for s in common], axis=0)
        t_stat, p_value = paired_test(a, b)
        seeds_p = np.nan
        if len(common) >= 2:
            ma = [ours[s].mean() for s in common]
            mb = [theirs[s].mean() for s in common]
            if not np.allclose(ma, mb):
                seeds_p = paired_test(ma, mb)[1]
        items += [[(ours[s], None) for s in common], [(theirs[s], None) for s in common],
                  [(ours[s] - theirs[s], None) for s in common]]
        rows.append({
            "imbalance_factor": factor, "bits": bits, "method": method, "best_other": best["method"],
            "map_method": float(a.mean()), "map_best_other": float(b.mean()),
            "difference": float(a.mean() - b.mean()), "t_statistic": float(t_stat),
            "p_value": float(p_value), "n_queries": int(a.size), "n_seeds": len(common),
            "across_seeds_p": seeds_p, "significant_0.05": bool(p_value < 0.05 and a.mean() > b.mean()),
        })
    if not rows:
        return pd.DataFrame()
    tests = pd.DataFrame(rows)
    intervals = bootstrap_intervals(items).reshape(len(rows), 3, 3)
    for j, name in enumerate(("map_method", "map_best_other", "difference")):
        tests[f"{name}_ci_low"], tests[f"{name}_ci_high"] = intervals[:, j, 1], intervals[:, j, 2]
    return with_holm(tests)


def with_holm(tests: pd.DataFrame) -> pd.DataFrame:
    """(Re)compute ``p_holm`` over the rows of a t-test table (the settings it holds) and the
    ``result`` column from it; call again after selecting rows (the family is what is shown)."""
    tests = tests.copy()
    if tests.empty:
        return tests
    tests["p_holm"] = holm(tests["p_value"].to_numpy())
    tests["result"] = [direction(d, p) for d, p in zip(tests["difference"], tests["p_holm"])]
    order = ["imbalance_factor", "bits", "method", "best_other", "map_method", "map_method_ci_low",
             "map_method_ci_high", "map_best_other", "map_best_other_ci_low", "map_best_other_ci_high",
             "difference", "difference_ci_low", "difference_ci_high", "t_statistic", "p_value", "p_holm", "result",
             "significant_0.05", "n_queries", "n_seeds", "across_seeds_p"]
    return tests[[c for c in order if c in tests.columns] + [c for c in tests.columns if c not in order]]


# ---------------------------------------------------------------------------- head / medium / tail


def group_summary(frame: pd.DataFrame, policy: str = "tie_aware", results: StoredResults | None = None) -> pd.DataFrame:
    """MAP over the queries of head, medium and tail classes (thirds of the classes by training-set
    size, see ``benchmark.runner.class_groups``), mean over seeds, per method x IF x bits.

    With ``results`` also the many / medium / few-shot groups by absolute training counts
    (``benchmark.diagnostics.shot_groups``; ``<group>_classes`` counts their classes) and a 95%
    interval for every value (``<name>_ci_low``, ``<name>_ci_high``; ``all`` is the MAP)."""
    columns = [f"{g}_map_{policy}" for g in GROUPS]
    has_records_groups = all(c in frame.columns for c in columns)
    if frame.empty or (results is None and not has_records_groups):
        return pd.DataFrame()
    keys = ["method", "imbalance_factor", "bits"]
    grouped = frame.groupby(keys, sort=False)
    out = grouped[[f"map_{policy}"] + (columns if has_records_groups else [])].mean().reset_index()
    out = out.rename(columns={**{f"{g}_map_{policy}": g for g in GROUPS}, f"map_{policy}": "all"})
    if results is not None:
        intervals = interval_table(results, frame, policy).rename(
            columns={"map_ci_low": "all_ci_low", "map_ci_high": "all_ci_high"})
        if has_records_groups:  # the thirds' values stay the records' own (the same definition)
            intervals = intervals.drop(columns=list(GROUPS))
        out = out.merge(intervals, on=keys, how="left")
        if out[list(GROUPS)].isna().all().all():
            return pd.DataFrame()  # neither the records nor the arrays know the groups
    out["tail_minus_head"] = out["tail"] - out["head"]
    if results is not None:
        ordered = keys + [f"{n}{suffix}" for n in GROUPS + ("all",) for suffix in ("", "_ci_low", "_ci_high")] + \
            ["tail_minus_head"] + [f"{n}{suffix}" for n in SHOT_GROUPS for suffix in ("", "_ci_low", "_ci_high",
                                                                                       "_classes")]
        out = out[ordered]
    order = {m: i for i, m in enumerate(ordered_methods(out["method"]))}
    return out.sort_values(["imbalance_factor", "bits", "method"],
                           key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)


def _middle_bits(groups: pd.DataFrame, bits: int | None) -> int:
    all_bits = sorted(groups["bits"].unique())
    return int(all_bits[len(all_bits) // 2]) if bits is None else int(bits)


def _group_cell(row: pd.DataFrame, name: str) -> str:
    if row.empty or pd.isna(row[name].iloc[0]):
        return "–"
    if f"{name}_ci_low" in row:
        return format_interval(row[name].iloc[0], row[f"{name}_ci_low"].iloc[0], row[f"{name}_ci_high"].iloc[0])
    return f"{row[name].iloc[0]:.4f}"


def _groups_table(groups: pd.DataFrame, bits: int, names, labels) -> list[str]:
    chosen = groups[groups["bits"] == bits]
    factors = sorted(chosen["imbalance_factor"].unique())
    header = ["Method"] + [f"IF={f:g} {label}" for f in factors for label in labels]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
    for method in ordered_methods(chosen["method"]):
        cells = []
        for factor in factors:
            row = chosen[(chosen["method"] == method) & (chosen["imbalance_factor"] == factor)]
            cells += [_group_cell(row, name) for name in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def group_markdown(groups: pd.DataFrame, bits: int | None = None) -> str:
    """Rows: methods; columns: head / medium / tail / all MAP per IF, at one code length (the
    middle one by default: 64 bits on the paper's datasets); with the 95% intervals when the
    groups carry them."""
    if groups.empty:
        return ""
    bits = _middle_bits(groups, bits)
    lines = [f"Head / medium / tail MAP at {bits} bits (classes split into thirds by training-set size; "
             "MAP over the queries of each group's classes).", ""]
    lines += _groups_table(groups, bits, GROUPS + ("all",), GROUPS + ("all",))
    return "\n".join(lines) + "\n"


def shot_markdown(groups: pd.DataFrame, bits: int | None = None) -> str:
    """Rows: methods; columns: many / medium / few-shot MAP per IF (with intervals and the number of
    classes of each group), at one code length; '' without the shot groups."""
    if groups.empty or "few_shot" not in groups:
        return ""
    bits = _middle_bits(groups, bits)
    chosen = groups[groups["bits"] == bits]
    counts = []
    for factor, rows in chosen.groupby("imbalance_factor"):
        counts.append(f"IF={factor:g}: " + "/".join(
            "?" if pd.isna(rows[f"{n}_classes"].iloc[0]) else str(int(rows[f"{n}_classes"].iloc[0]))
            for n in SHOT_GROUPS))
    lines = [f"Many / medium / few-shot MAP at {bits} bits ({SHOT_GROUP_TEXT}; classes per group, many/medium/few: "
             f"{'; '.join(counts)}; '–': the group has no class).", ""]
    lines += _groups_table(groups, bits, SHOT_GROUPS, ("many-shot", "medium-shot", "few-shot"))
    return "\n".join(lines) + "\n"


def tail_summary(results: StoredResults, frame: pd.DataFrame, policy: str = "tie_aware",
                 group: str = "tail") -> pd.DataFrame:
    """The main table's layout for the MAP over one group's queries (the tail third by default):
    method, imbalance_factor, bits, map (of the group), map_ci_low, map_ci_high, mark, p_vs_best,
    p_vs_best_holm (marks from paired tests over the group's queries)."""
    intervals = interval_table(results, frame, policy)
    keys = ["method", "imbalance_factor", "bits"]
    out = intervals[keys + [group, f"{group}_ci_low", f"{group}_ci_high"]].rename(
        columns={group: "map", f"{group}_ci_low": "map_ci_low", f"{group}_ci_high": "map_ci_high"})
    out = out.merge(significance_marks(results, frame, policy, group), on=keys, how="left")
    out["published"] = np.nan
    order = {m: i for i, m in enumerate(ordered_methods(out["method"]))}
    return out.sort_values(keys, key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)


# ---------------------------------------------------------------------------- all reports


def write_reports(source, dataset: str, mode: str = "features", out_dir: str | None = None,
                  policy: str = "tie_aware", ttest_method: str | None = None, method_keys=None,
                  name_suffix: str = "", fingerprints=None) -> dict[str, str]:
    """Write CSV (wide and long, the long one with 95% intervals and marks), LaTeX, Markdown (with
    intervals and marks), the tail-MAP view, t-test and head/medium/tail + many/medium/few-shot
    tables; returns name -> path (+ 'markdown' text). ``method_keys`` restricts them to one run's
    methods; ``name_suffix`` (e.g. ``_table3``) keeps an experiment's tables apart from the main run's."""
    results = as_results(source, dataset)
    out_dir = out_dir or os.path.join(results.store.root, "tables")
    frame = results.select(dataset, mode, method_keys, fingerprints)
    if frame.empty:
        return {}
    summary = summary_table(frame, policy, results)
    wide = wide_table(summary)
    caption = table_caption(frame, dataset, mode, policy)
    stem = os.path.join(out_dir, f"map_{file_slug(dataset)}_{mode}_{policy}{name_suffix}")
    paths = {}

    flat = wide.copy()
    flat.columns = [_column_label(f, b) for f, b in wide.columns]
    paths["csv"] = _write_text(stem + ".csv", flat.to_csv(float_format="%.4f", index_label="method"))
    paths["long_csv"] = _write_text(stem + "_long.csv", csv_text(summary))
    tied = _wide_marks(summary, "mark", MARK_TIED)
    paths["latex"] = _write_text(stem + ".tex", to_latex(wide, f"{caption} {MARKS_LEGEND_LATEX}",
                                                         label=f"tab:{dataset}-{mode}", tied=tied))

    published_wide = None
    if summary["published"].notna().any():
        published_wide = wide_table(summary.dropna(subset=["published"]), value="published")
        diff = wide_table(summary.dropna(subset=["published"]), value="difference")
        paths["latex_difference"] = _write_text(
            stem + "_difference.tex",
            to_latex(diff, f"Our MAP minus the published MAP on {dataset} ({mode} mode).",
                     label=f"tab:{dataset}-{mode}-diff"))
    markdown = f"{caption}\n\n{MARKS_LEGEND_MARKDOWN}\n\n" + marked_markdown(summary)
    if published_wide is not None:
        markdown += "\nCells read 'ours [95% interval] / published (ours - published)'.\n"
    paths["markdown_file"] = _write_text(stem + ".md", markdown)
    paths["tail_markdown"] = _write_text(stem + "_tail.md", tail_markdown(results, frame, policy))

    tests = paired_ttests(results, dataset, mode, ttest_method, policy, method_keys, fingerprints)
    if not tests.empty:
        paths["ttest_csv"] = _write_text(stem + "_ttest.csv", csv_text(tests, digits="%.6g"))
    groups = group_summary(frame, policy, results)
    if not groups.empty:
        paths["groups_csv"] = _write_text(stem + "_head_medium_tail.csv", csv_text(groups))
        paths["groups_markdown"] = _write_text(stem + "_head_medium_tail.md",
                                               group_markdown(groups) + "\n" + shot_markdown(groups))
    paths["markdown"] = markdown
    return paths


TAIL_TEXT = ("Tail MAP: MAP over the queries of the tail third of the classes (the smallest training sets, "
             "`benchmark/runner.py` `class_groups`), with its 95% interval; marks as in the main table, from paired "
             "tests over the tail queries.")


def tail_markdown(results: StoredResults, frame: pd.DataFrame, policy: str = "tie_aware") -> str:
    """The tail-MAP view of a table (``TAIL_TEXT``); '' when the cells carry no query labels."""
    tail = tail_summary(results, frame, policy)
    if tail.empty or tail["map"].isna().all():
        return ""
    return f"{TAIL_TEXT}\n\n" + marked_markdown(tail, published=False)


def csv_text(table: pd.DataFrame, digits: str = "%.4f") -> str:
    """CSV with values to ``digits`` and p-values (``p_*`` columns) to 3 significant digits."""
    table = table.copy()
    for column in table.columns:
        if (column.startswith("p_") or column.endswith("_p")) and pd.api.types.is_float_dtype(table[column]):
            table[column] = [("" if pd.isna(v) else f"{v:.3g}") for v in table[column]]
    return table.to_csv(index=False, float_format=digits)


def _write_text(path: str, text: str) -> str:
    return atomic_write(path, text)
