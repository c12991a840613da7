"""REPORT.md in the results folder: the main tables beside the published numbers, head/medium/tail
MAP, paired t-tests against the paper's claim, and the figures of every experiment run there.

Every run (the main grid or ``--experiment NAME``) records what it resolved to (specs, IFs, bits,
seeds) in ``<results>/experiments.json``; the report is rebuilt from that manifest and the result
store alone, so it always shows everything the folder holds.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd

from common.io import atomic_write, file_slug

from .experiments import FIGURES, SIGNIFICANCE_TARGET, TABLE
from .report import (PAPER_DATASETS, group_markdown, group_summary, paired_ttests, summary_table, table_caption,
                     to_markdown, wide_table)
from .results import GROUPS, StoredResults, as_results
from .store import ResultStore

MANIFEST = "experiments.json"


# ---------------------------------------------------------------------------- manifest


def load_manifest(store: ResultStore) -> dict:
    path = os.path.join(store.root, MANIFEST)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def record_run(store: ResultStore, run: dict, mode: str, figures: dict[str, list[str]] | None = None) -> None:
    """Remember a resolved run (``ExperimentRun.to_dict()``) and its figure files in the manifest."""
    manifest = load_manifest(store)
    entry = dict(run, mode=mode, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 figure_files={name: [os.path.relpath(p, store.root) for p in paths]
                               for name, paths in (figures or {}).items()})
    manifest.setdefault(f"{run['dataset']}|{mode}", {})[run["experiment"]] = entry
    atomic_write(os.path.join(store.root, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True, default=repr))


# ---------------------------------------------------------------------------- frames


def run_frame(results: StoredResults, run: dict, mode: str) -> pd.DataFrame:
    """The stored cells of one run: its specs, IFs, bits, seeds, split seed and data fingerprints."""
    frame = results.select(run["dataset"], mode, [p["key"] for p in run["points"]], run.get("fingerprints"))
    if frame.empty:
        return frame
    keep = (frame["imbalance_factor"].isin([float(f) for f in run["imbalance_factors"]])
            & frame["bits"].isin([int(b) for b in run["bits"]])
            & frame["seed"].isin([int(s) for s in run["seeds"]])
            & (frame["split_seed"] == int(run["split_seed"])))
    return frame[keep].reset_index(drop=True)


def experiment_frame(results, run: dict, mode: str, policy: str = "tie_aware") -> pd.DataFrame:
    """One row per stored cell of the run: base row, swept value, IF, bits, seed, MAP, loss curve."""
    frame = run_frame(as_results(results, run["dataset"]), run, mode)
    if frame.empty:
        return pd.DataFrame()
    points = {p["key"]: p for p in run["points"]}
    out = pd.DataFrame({
        "base": [points[key]["base"] for key in frame["method_key"]],
        "value": [points[key]["value"] for key in frame["method_key"]],
        "display": frame["method"], "method_key": frame["method_key"],
        "imbalance_factor": frame["imbalance_factor"], "bits": frame["bits"], "seed": frame["seed"],
        "map": frame[f"map_{policy}"], "loss": frame["loss"],
    })
    for group in GROUPS:
        column = f"{group}_map_{policy}"
        out[group] = frame[column] if column in frame else np.nan
    return out


# ---------------------------------------------------------------------------- figures


def draw_figures(results, run: dict, mode: str) -> dict[str, list[str]]:
    """Draw the run's declared figures (PNG and PDF) under ``<results>/figures`` (the dispatch is
    ``benchmark.experiments.FIGURES``); returns name -> paths."""
    from . import figures

    results = as_results(results, run["dataset"])
    frame = experiment_frame(results, run, mode)
    out = {}
    if frame.empty:
        return out
    middle = int(run["bits"][len(run["bits"]) // 2])
    is_lthnet = frame["base"].str.startswith("LTHNet")
    for name in run["outputs"]:
        if name == TABLE:
            continue
        figure = FIGURES[name]
        rows = {"all": frame, "lthnet": frame[is_lthnet], "baselines": frame[~is_lthnet]}[figure.rows]
        if len(rows):
            stem = os.path.join(results.store.root, "figures", f"{figure.stem}_{file_slug(run['dataset'])}_{mode}")
            out[name] = getattr(figures, figure.draw)(rows, run["dataset"], middle, stem)
    return out


# ---------------------------------------------------------------------------- significance


def significance_table(results, run: dict, mode: str, policy: str = "tie_aware") -> pd.DataFrame:
    """Paired t-tests (per-query AP, and per-seed MAP when several seeds ran) of LTHNet (k=3) in
    this run's configuration against the best other method of each setting, beside the paper's
    claim (LTHNet (k=3) > the best baseline with p < 0.05 on the long-tail settings, §6.4)."""
    target = next((p["display"] for p in run["points"] if p["base"] == SIGNIFICANCE_TARGET), None)
    if target is None:
        return pd.DataFrame()
    tests = paired_ttests(results, run["dataset"], mode, target, policy, [p["key"] for p in run["points"]],
                          run.get("fingerprints"))
    if tests.empty:
        return tests
    tests = tests[tests["imbalance_factor"].isin([float(f) for f in run["imbalance_factors"]])
                  & tests["bits"].isin([int(b) for b in run["bits"]])].reset_index(drop=True)
    long_tail = tests["imbalance_factor"] > 1
    tests["paper_claim"] = np.where(long_tail, "p < 0.05, LTHNet better", "none (balanced)")
    tests["agrees"] = np.where(long_tail, np.where(tests["significant_0.05"], "yes", "no"), "–")
    return tests


def significance_markdown(tests: pd.DataFrame) -> str:
    if tests.empty:
        return "_No LTHNet (k=3) cells with a competitor in this run: no test._\n"
    lines = ["| IF | bits | LTHNet (k=3) | best other method | its MAP | p (per-query AP) | p (across seeds) "
             "| paper's claim | ours agrees |", "|---|---|---|---|---|---|---|---|---|"]
    for _, row in tests.iterrows():
        seeds_p = "–" if pd.isna(row["across_seeds_p"]) else f"{row['across_seeds_p']:.3g}"
        lines.append(
            f"| {row['imbalance_factor']:g} | {row['bits']} | {row['map_method']:.4f} | {row['best_other']} | "
            f"{row['map_best_other']:.4f} | {row['p_value']:.3g} | {seeds_p} | {row['paper_claim']} | {row['agrees']} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- report


def _table_section(results: StoredResults, run: dict, mode: str, policy: str) -> list[str]:
    frame = run_frame(results, run, mode)
    if frame.empty:
        return ["_No stored cells yet._", ""]
    summary = summary_table(frame, policy)
    wide = wide_table(summary)
    lines = [table_caption(frame, run["dataset"], mode, policy), ""]
    published = None
    if summary["published"].notna().any():
        published = wide_table(summary.dropna(subset=["published"]), value="published")
    lines.append(to_markdown(wide, published))
    if published is not None:
        diff = summary["difference"].dropna()
        lines += ["Cells read 'ours / published (ours - published)'. Mean difference to the published MAP: "
                  f"{diff.mean():+.4f} over {diff.size} values (mean absolute {diff.abs().mean():.4f}).", ""]
    elif run["dataset"] not in PAPER_DATASETS:
        lines += [f"The paper publishes no numbers for {run['dataset']}: no differences to show.", ""]
    lines += ["#### Head / medium / tail classes", "", group_markdown(group_summary(frame, policy)),
              "Thresholds: classes ranked by training-set size (largest first, ties by class index) and cut "
              "into thirds (benchmark/runner.py `class_groups`); at IF = 1 the groups are class-index thirds.",
              "", "#### Significance (paired t-test, two-sided)", "", significance_markdown(
                  significance_table(results, run, mode, policy)), ""]
    return lines


def _sweep_markdown(frame: pd.DataFrame, sweep: str | None) -> str:
    data = frame.groupby(["base", "value", "imbalance_factor", "bits"], dropna=False, sort=False)["map"] \
        .mean().reset_index()
    base_order = {b: i for i, b in enumerate(dict.fromkeys(frame["base"]))}
    data["_order"] = data["base"].map(base_order)
    if sweep:
        data = data.sort_values(["_order", "value"], kind="stable")
    data["row"] = data["base"] + (f", {sweep}=" + data["value"].astype(str) if sweep else "")
    wide = data.pivot_table(index="row", columns=["imbalance_factor", "bits"], values="map", aggfunc="first",
                            sort=False)
    wide = wide.sort_index(axis=1)
    header = ["Run"] + [f"IF={f:g} {b} bits" for f, b in wide.columns]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
    for row, values in wide.iterrows():
        lines.append(f"| {row} | " + " | ".join("–" if pd.isna(v) else f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def _figure_section(results: StoredResults, run: dict, mode: str, policy: str) -> list[str]:
    frame = experiment_frame(results, run, mode, policy)
    lines = []
    if run.get("note"):
        lines += [run["note"], ""]
    if frame.empty:
        return lines + ["_No stored cells yet._", ""]
    for name, paths in sorted(run.get("figure_files", {}).items()):
        png = next((p for p in paths if p.endswith(".png")), None)
        if png and os.path.exists(os.path.join(results.store.root, png)):
            lines += [f"![{name}]({png})", ""]
    if run["experiment"] == "convergence":
        lines += ["| IF | bits | seed | epochs | first loss | last loss | last / max |", "|---|---|---|---|---|---|---|"]
        for _, row in frame.sort_values(["imbalance_factor", "bits", "seed"]).iterrows():
            loss = row["loss"] or []
            if loss:
                lines.append(f"| {row['imbalance_factor']:g} | {row['bits']} | {row['seed']} | {len(loss)} | "
                             f"{loss[0]:.4f} | {loss[-1]:.4f} | {loss[-1] / max(loss):.3f} |")
        lines.append("")
    lines += ["MAP (mean over seeds):", "", _sweep_markdown(frame, run.get("sweep")), ""]
    return lines


def write_report(source, policy: str = "tie_aware") -> str:
    """(Re)write ``<results>/REPORT.md`` from the manifest and the store; returns its path."""
    results = as_results(source)
    store = results.store
    manifest = load_manifest(store)
    lines = ["# Long-tail hashing benchmark: report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from the result store in this folder "
             f"(`records/`); MAP with the {'tie-aware' if policy == 'tie_aware' else 'index-order'} tie policy. "
             "Re-running any experiment only computes missing cells and rewrites this file.", ""]
    if not manifest:
        lines += ["_Nothing has been run into this folder yet._"]
    for setting in sorted(manifest):
        dataset, mode = setting.split("|")
        runs = manifest[setting]
        lines += [f"## {dataset} ({mode} mode)", ""]
        figure2 = os.path.join("figures", f"figure2_{file_slug(dataset)}.png")
        if os.path.exists(os.path.join(store.root, figure2)):
            lines += ["### Fig. 2: long-tail training splits", "", f"![figure2]({figure2})", ""]
        table_runs = [n for n in runs if TABLE in runs[n].get("outputs", ())]
        for name in sorted(table_runs) + sorted(n for n in runs if n not in table_runs):
            run = runs[name]
            params = run.get("method_params") or {}
            settings = (f"IF {'/'.join(f'{f:g}' for f in run['imbalance_factors'])}, bits "
                        f"{'/'.join(map(str, run['bits']))}, seeds {'/'.join(map(str, run['seeds']))}"
                        + (f", method parameters {', '.join(f'{k}={v}' for k, v in params.items())}" if params else ""))
            lines += [f"### {run['title']} — `{name}`", "", f"Run settings: {settings}.", ""]
            if TABLE in run.get("outputs", ()):
                lines += _table_section(results, run, mode, policy)
            else:
                lines += _figure_section(results, run, mode, policy)
    return atomic_write(os.path.join(store.root, "REPORT.md"), "\n".join(lines) + "\n")


def finish_run(results: StoredResults, run: dict, mode: str, policy: str = "tie_aware", data=None) -> dict[str, str]:
    """After a run: draw its figures, record it in the manifest and rewrite REPORT.md. ``data`` (the
    run's BenchmarkData, optional) serves what needs the dataset itself. Returns name -> path of
    every file written (e.g. ``figure3.png``, ``report``)."""
    figure_paths = draw_figures(results, run, mode)
    record_run(results.store, run, mode, figure_paths)
    written = {f"{name}.{path.rsplit('.', 1)[-1]}": path for name, files in figure_paths.items() for path in files}
    written["report"] = write_report(results, policy)
    return written
