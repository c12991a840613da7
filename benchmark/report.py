"""Tables from the result store: the paper's Table 3/4 layout as CSV, LaTeX and Markdown, the
published numbers and differences beside ours, and paired t-tests over per-query AP.

Reads only the result store, once per run (``benchmark.results.StoredResults``), and the published
numbers shipped in ``results/``. Every function here takes that table (or a store, read once).
"""
from __future__ import annotations

import os
from importlib import resources

import numpy as np
import pandas as pd

from common.io import atomic_write, file_slug

from .experiments import SIGNIFICANCE_TARGET
from .results import GROUPS, StoredResults, as_results

POLICIES = ("tie_aware", "index_order")
PAPER_BITS = (32, 64, 96)
PAPER_DATASETS = ("cifar100", "imagenet100")

MODE_CAPTIONS = {
    "features": ("features mode: every method hashes the dataset's frozen features (cached ResNet34 features "
                 "for image datasets, the raw features for digits and feature files); deep methods train only "
                 "their heads (the paper fine-tunes deep methods end to end, so deep rows are not "
                 "directly comparable to its numbers)"),
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


def summary_table(frame: pd.DataFrame, policy: str = "tie_aware") -> pd.DataFrame:
    """Mean (and std) MAP over seeds per method x IF x bits, with published value and difference."""
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
    return summary.sort_values(["method", "imbalance_factor", "bits"], key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)


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
    return caption


# ---------------------------------------------------------------------------- renderers


def to_latex(wide: pd.DataFrame, caption: str, label: str = "tab:map") -> str:
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
            cells.append(text)
        lines.append(" & ".join([_latex_escape(method)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return text.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")


def to_markdown(wide: pd.DataFrame, published: pd.DataFrame | None = None) -> str:
    """Markdown table; best **bold**, second _underlined_; 'ours / paper (diff)' where published."""
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
            if published is not None and method in published.index and column in published.columns:
                paper = published.loc[method, column]
                if not pd.isna(paper):
                    diff = "" if pd.isna(value) else f" ({value - paper:+.4f})"
                    text += f" / {paper:.4f}{diff}"
            cells.append(text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- significance


def paired_ttests(source, dataset: str, mode: str = "features", method: str | None = None,
                  policy: str = "tie_aware", method_keys=None, fingerprints=None) -> pd.DataFrame:
    """Paired t-test of ``method`` against the best other method in each (IF, bits) setting.

    Over per-query AP (averaged over the seeds both methods ran), two-sided, scipy.stats.ttest_rel;
    ``across_seeds_p`` tests the per-seed MAPs when both have >= 2 common seeds. ``method`` defaults
    to LTHNet (k=3) when present, else the best method overall.
    """
    from scipy import stats

    results = as_results(source, dataset)
    frame = results.select(dataset, mode, method_keys, fingerprints)
    if frame.empty:
        return pd.DataFrame()
    summary = summary_table(frame, policy)
    if method is None:
        method = SIGNIFICANCE_TARGET if SIGNIFICANCE_TARGET in set(summary["method"]) else \
            summary.groupby("method")["map"].mean().idxmax()
    rows = []
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
        if np.allclose(a, b):
            t_stat, p_value = 0.0, 1.0
        else:
            t_stat, p_value = stats.ttest_rel(a, b)
        seeds_p = np.nan
        if len(common) >= 2:
            ma = [ours[s].mean() for s in common]
            mb = [theirs[s].mean() for s in common]
            if not np.allclose(ma, mb):
                seeds_p = float(stats.ttest_rel(ma, mb).pvalue)
        rows.append({
            "imbalance_factor": factor, "bits": bits, "method": method, "best_other": best["method"],
            "map_method": float(a.mean()), "map_best_other": float(b.mean()), "t_statistic": float(t_stat),
            "p_value": float(p_value), "n_queries": int(a.size), "n_seeds": len(common),
            "across_seeds_p": seeds_p, "significant_0.05": bool(p_value < 0.05 and a.mean() > b.mean()),
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- head / medium / tail


def group_summary(frame: pd.DataFrame, policy: str = "tie_aware") -> pd.DataFrame:
    """MAP over the queries of head, medium and tail classes (thirds of the classes by training-set
    size, see ``benchmark.runner.class_groups``), mean over seeds, per method x IF x bits."""
    columns = [f"{g}_map_{policy}" for g in GROUPS]
    if frame.empty or not all(c in frame.columns for c in columns):
        return pd.DataFrame()
    grouped = frame.groupby(["method", "imbalance_factor", "bits"], sort=False)
    out = grouped[columns + [f"map_{policy}"]].mean().reset_index()
    out = out.rename(columns={**{f"{g}_map_{policy}": g for g in GROUPS}, f"map_{policy}": "all"})
    out["tail_minus_head"] = out["tail"] - out["head"]
    order = {m: i for i, m in enumerate(ordered_methods(out["method"]))}
    return out.sort_values(["imbalance_factor", "bits", "method"],
                           key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)


def group_markdown(groups: pd.DataFrame, bits: int | None = None) -> str:
    """Rows: methods; columns: head / medium / tail / all MAP per IF, at one code length (the
    middle one by default: 64 bits on the paper's datasets)."""
    if groups.empty:
        return ""
    all_bits = sorted(groups["bits"].unique())
    bits = int(all_bits[len(all_bits) // 2]) if bits is None else int(bits)
    chosen = groups[groups["bits"] == bits]
    factors = sorted(chosen["imbalance_factor"].unique())
    header = ["Method"] + [f"IF={f:g} {g}" for f in factors for g in GROUPS + ("all",)]
    lines = [f"Head / medium / tail MAP at {bits} bits (classes split into thirds by training-set size; "
             "MAP over the queries of each group's classes).", "",
             "| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
    for method in ordered_methods(chosen["method"]):
        cells = []
        for factor in factors:
            row = chosen[(chosen["method"] == method) & (chosen["imbalance_factor"] == factor)]
            for g in GROUPS + ("all",):
                cells.append("–" if row.empty or pd.isna(row[g].iloc[0]) else f"{row[g].iloc[0]:.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- all reports


def write_reports(source, dataset: str, mode: str = "features", out_dir: str | None = None,
                  policy: str = "tie_aware", ttest_method: str | None = None, method_keys=None,
                  name_suffix: str = "", fingerprints=None) -> dict[str, str]:
    """Write CSV (wide and long), LaTeX, Markdown, t-test and head/medium/tail tables; returns
    name -> path (+ 'markdown' text). ``method_keys`` restricts them to one run's methods;
    ``name_suffix`` (e.g. ``_table3``) keeps an experiment's tables apart from the main run's."""
    results = as_results(source, dataset)
    out_dir = out_dir or os.path.join(results.store.root, "tables")
    frame = results.select(dataset, mode, method_keys, fingerprints)
    if frame.empty:
        return {}
    summary = summary_table(frame, policy)
    wide = wide_table(summary)
    caption = table_caption(frame, dataset, mode, policy)
    stem = os.path.join(out_dir, f"map_{file_slug(dataset)}_{mode}_{policy}{name_suffix}")
    paths = {}

    flat = wide.copy()
    flat.columns = [_column_label(f, b) for f, b in wide.columns]
    paths["csv"] = _write_text(stem + ".csv", flat.to_csv(float_format="%.4f", index_label="method"))
    paths["long_csv"] = _write_text(stem + "_long.csv", summary.to_csv(index=False, float_format="%.4f"))
    paths["latex"] = _write_text(stem + ".tex", to_latex(wide, caption, label=f"tab:{dataset}-{mode}"))

    published_wide = None
    if summary["published"].notna().any():
        published_wide = wide_table(summary.dropna(subset=["published"]), value="published")
        diff = wide_table(summary.dropna(subset=["published"]), value="difference")
        paths["latex_difference"] = _write_text(
            stem + "_difference.tex",
            to_latex(diff, f"Our MAP minus the published MAP on {dataset} ({mode} mode).",
                     label=f"tab:{dataset}-{mode}-diff"))
    markdown = f"{caption}\n\n" + to_markdown(wide, published_wide)
    if published_wide is not None:
        markdown += "\nCells read 'ours / published (ours - published)'.\n"
    paths["markdown_file"] = _write_text(stem + ".md", markdown)

    tests = paired_ttests(results, dataset, mode, ttest_method, policy, method_keys, fingerprints)
    if not tests.empty:
        paths["ttest_csv"] = _write_text(stem + "_ttest.csv", tests.to_csv(index=False, float_format="%.6g"))
    groups = group_summary(frame, policy)
    if not groups.empty:
        paths["groups_csv"] = _write_text(stem + "_head_medium_tail.csv", groups.to_csv(index=False, float_format="%.4f"))
        paths["groups_markdown"] = _write_text(stem + "_head_medium_tail.md", group_markdown(groups))
    paths["markdown"] = markdown
    return paths


def _write_text(path: str, text: str) -> str:
    return atomic_write(path, text)
