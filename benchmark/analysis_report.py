"""REPORT.md and report.html in the results folder: the main tables (95% intervals, marks) beside the
published numbers, tail MAP, head/medium/tail and many/medium/few-shot MAP, Holm-corrected paired
t-tests against the paper's claim, the long-tail diagnostics and the figures of every experiment run there.

Every run (the main grid or ``--experiment NAME``) records what it resolved to (specs, IFs, bits,
seeds) in ``<results>/experiments.json``; the report is rebuilt from that manifest and the result
store alone, so it always shows everything the folder holds.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pandas as pd

from common.errors import BenchmarkError
from common.io import atomic_write, file_slug

from . import diagnostics
from .experiments import FIGURES, SIGNIFICANCE_TARGET, TABLE
from .report import (MARKS_LEGEND_MARKDOWN, PAPER_DATASETS, TAIL_TEXT, csv_text, group_markdown, group_summary,
                     marked_markdown, ordered_methods, paired_ttests, shot_markdown, summary_table, table_caption,
                     tail_summary, with_holm)
from .results import GROUPS, StoredResults, as_results
from .store import ResultStore
from .uncertainty import bootstrap_intervals, format_interval

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
        "map": frame[f"map_{policy}"], "loss": frame["loss"], "cell_key": frame["cell_key"],
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
    tests = with_holm(tests)  # Holm over the settings shown
    long_tail = tests["imbalance_factor"] > 1
    tests["paper_claim"] = np.where(long_tail, "p < 0.05, LTHNet better", "none (balanced)")
    tests["agrees"] = np.where(long_tail, np.where(tests["result"] == "significantly better", "yes", "no"), "–")
    return tests


SIGNIFICANCE_TEXT = (
    "LTHNet (k=3) against the best other method of each setting: two-sided paired t-test over per-query AP "
    "(mean over the seeds both ran); 'p (Holm)' corrects the raw p for the number of settings tested (Holm); "
    "'result' and 'ours agrees' use the Holm-corrected p at 0.05 and the sign of the difference; "
    "[low, high]: 95% bootstrap intervals (the difference's is paired, over the same queries).")


def significance_markdown(tests: pd.DataFrame) -> str:
    if tests.empty:
        return "_No LTHNet (k=3) cells with a competitor in this run: no test._\n"
    lines = [SIGNIFICANCE_TEXT, "",
             "| IF | bits | LTHNet (k=3) | best other method | its MAP | difference | p (per-query AP) | p (Holm) "
             "| result | p (across seeds) | paper's claim | ours agrees |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in tests.iterrows():
        seeds_p = "–" if pd.isna(row["across_seeds_p"]) else f"{row['across_seeds_p']:.3g}"
        ours = format_interval(row["map_method"], row.get("map_method_ci_low"), row.get("map_method_ci_high"))
        theirs = format_interval(row["map_best_other"], row.get("map_best_other_ci_low"),
                                 row.get("map_best_other_ci_high"))
        diff = format_interval(row["difference"], row.get("difference_ci_low"), row.get("difference_ci_high"))
        lines.append(
            f"| {row['imbalance_factor']:g} | {row['bits']} | {ours} | {row['best_other']} | {theirs} | {diff} | "
            f"{row['p_value']:.3g} | {row['p_holm']:.3g} | {row['result']} | {seeds_p} | {row['paper_claim']} | "
            f"{row['agrees']} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- report


DIAGNOSTIC_FIGURES = ("per_class_ap", "query_map_diagnostic", "retrieval_examples")


def _suffix(run: dict) -> str:
    return "" if run["experiment"] == "main" else f"_{run['experiment']}"


def table_data(results: StoredResults, run: dict, mode: str, policy: str = "tie_aware") -> dict:
    """Everything a table run's report shows, computed once per read of the store (REPORT.md and
    report.html share it): frame, summary (intervals and marks), tail (the tail-MAP view), groups,
    tests (significance) and inflation (the per-cell protocol-inflation diagnostic)."""
    def compute():
        frame = run_frame(results, run, mode)
        if frame.empty:
            return {"frame": frame}
        deep = frame[frame["family"] == "deep"]
        return {"frame": frame, "summary": summary_table(frame, policy, results),
                "tail": tail_summary(results, frame, policy), "groups": group_summary(frame, policy, results),
                "tests": significance_table(results, run, mode, policy),
                "inflation": diagnostics.inflation_table(results, deep, policy), "n_deep": len(deep)}

    identity = {k: run.get(k) for k in ("dataset", "experiment", "imbalance_factors", "bits", "seeds", "split_seed",
                                        "fingerprints")}
    identity["points"] = [p["key"] for p in run["points"]]
    key = ("table_data", mode, policy, json.dumps(identity, sort_keys=True, default=repr))
    return results.cached(key, compute)


INFLATION_TEXT = (
    "Protocol-inflation diagnostic (never a table number): the trainer's query MAP after each recorded epoch "
    "(`training_log['query_map_diagnostic']`). 'final' is the final epoch's MAP, the table's number (the selection "
    "rule is the final epoch); 'best on query' the best over the recorded epochs and the final one, which choosing "
    "the epoch on the query set would have reported; 'inflation' their difference (mean over seeds).")


def inflation_markdown(inflation: pd.DataFrame) -> str:
    summary = diagnostics.inflation_summary(inflation)
    if summary.empty:
        return ""
    lines = [INFLATION_TEXT, "", "| Method | IF | bits | final (table) | best on query | inflation | largest over seeds "
             "| seeds | recorded epochs |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary.itertuples(index=False):
        lines.append(f"| {row.method} | {row.imbalance_factor:g} | {row.bits} | {row.final_map:.4f} | "
                     f"{row.best_on_query_map:.4f} | {row.inflation:+.4f} | {row.max_inflation:+.4f} | {row.n_seeds} | "
                     f"{row.n_points} |")
    return "\n".join(lines) + "\n"


def _embedded(results: StoredResults, run: dict, name: str, text: str) -> list[str]:
    png = next((p for p in run.get("figure_files", {}).get(name, ()) if p.endswith(".png")), None)
    if png and os.path.exists(os.path.join(results.store.root, png)):
        return [text, "", f"![{name}]({png})", ""]
    return []


RETRIEVAL_TEXT = (
    "Retrieval examples: queries of the classes with the fewest training items (at the run's largest IF and middle "
    "code length; the first query of each class), each shown method's top 10 by Hamming distance over the stored "
    "codes (ties broken by database index), green frame: same class as the query, red: another class; d: Hamming "
    "distance. Methods: the best shallow method and the best deep baseline of that setting by MAP, and LTHNet (k=3); "
    "each method's lowest seed.")


def _table_section(results: StoredResults, run: dict, mode: str, policy: str) -> list[str]:
    data = table_data(results, run, mode, policy)
    frame = data["frame"]
    if frame.empty:
        return ["_No stored cells yet._", ""]
    summary = data["summary"]
    lines = [table_caption(frame, run["dataset"], mode, policy), "", MARKS_LEGEND_MARKDOWN, "",
             marked_markdown(summary)]
    if summary["published"].notna().any():
        diff = summary["difference"].dropna()
        lines += ["Cells read 'ours [95% interval] / published (ours - published)'. Mean difference to the published "
                  f"MAP: {diff.mean():+.4f} over {diff.size} values (mean absolute {diff.abs().mean():.4f}).", ""]
    elif run["dataset"] not in PAPER_DATASETS:
        lines += [f"The paper publishes no numbers for {run['dataset']}: no differences to show.", ""]
    tail = data["tail"]
    if not tail.empty and tail["map"].notna().any():
        lines += ["#### Tail MAP", "", TAIL_TEXT, "", marked_markdown(tail, published=False)]
    groups = data["groups"]
    lines += ["#### Head / medium / tail classes", "", group_markdown(groups),
              "Thresholds: classes ranked by training-set size (largest first, ties by class index) and cut "
              "into thirds (benchmark/runner.py `class_groups`); at IF = 1 the groups are class-index thirds.", ""]
    shots = shot_markdown(groups)
    if shots:
        lines += ["#### Many / medium / few-shot classes", "", shots]
    lines += _embedded(results, run, "per_class_ap", "#### Per-class AP against training-set size")
    lines += ["#### Significance (paired t-test, two-sided, Holm-corrected)", "",
              significance_markdown(data["tests"]), ""]
    if data["n_deep"]:
        lines += ["#### Protocol-inflation diagnostic (query MAP per epoch)", ""]
        table = inflation_markdown(data["inflation"])
        lines += [table] if table else ["_No deep cell of this run recorded the per-epoch query MAP "
                                        "(`training_log['query_map_diagnostic']`)._", ""]
        lines += _embedded(results, run, "query_map_diagnostic", "MAP against epoch (diagnostic only):")
    lines += _embedded(results, run, "retrieval_examples", "#### Retrieval examples\n\n" + RETRIEVAL_TEXT)
    return lines


def sweep_table(results: StoredResults, frame: pd.DataFrame, sweep: str | None,
                policy: str = "tie_aware") -> pd.DataFrame:
    """An experiment's MAP per row (base method, swept value) x IF x bits, mean over seeds, with its
    95% interval (columns row, imbalance_factor, bits, map, map_ci_low, map_ci_high)."""
    keys = ["base", "value", "imbalance_factor", "bits"]
    groups = list(frame.groupby(keys, dropna=False, sort=False))
    items = [[(results.arrays(k)[f"ap_{policy}"], None) for k in g.sort_values("seed")["cell_key"]] for _, g in groups]
    intervals = bootstrap_intervals(items) if items else np.empty((0, 3))
    data = pd.DataFrame([dict(zip(keys, key)) for key, _ in groups])
    data["map"] = [g["map"].mean() for _, g in groups]
    data["map_ci_low"], data["map_ci_high"] = intervals[:, 1], intervals[:, 2]
    base_order = {b: i for i, b in enumerate(dict.fromkeys(frame["base"]))}
    data["_order"] = data["base"].map(base_order)
    if sweep:
        data = data.sort_values(["_order", "value"], kind="stable")
    data["row"] = data["base"] + (f", {sweep}=" + data["value"].astype(str) if sweep else "")
    return data.drop(columns="_order").reset_index(drop=True)


def _sweep_markdown(data: pd.DataFrame) -> str:
    columns = sorted(set(zip(data["imbalance_factor"], data["bits"])))
    header = ["Run"] + [f"IF={f:g} {b} bits" for f, b in columns]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
    for row in dict.fromkeys(data["row"]):
        cells = []
        for factor, bits in columns:
            hit = data[(data["row"] == row) & (data["imbalance_factor"] == factor) & (data["bits"] == bits)]
            cells.append("–" if hit.empty else format_interval(hit["map"].iloc[0], hit["map_ci_low"].iloc[0],
                                                               hit["map_ci_high"].iloc[0]))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure_section(results: StoredResults, run: dict, mode: str, policy: str) -> list[str]:
    frame = experiment_frame(results, run, mode, policy)
    lines = []
    if run.get("note"):
        lines += [run["note"], ""]
    if frame.empty:
        return lines + ["_No stored cells yet._", ""]
    for name, paths in sorted(run.get("figure_files", {}).items()):
        if name in DIAGNOSTIC_FIGURES:
            continue
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
    lines += ["MAP (mean over seeds) [95% bootstrap interval over queries and seeds]:", "",
              _sweep_markdown(sweep_table(results, frame, run.get("sweep"), policy)), ""]
    return lines


def provenance_lines(records) -> list[str]:
    """A warning when the records come from more than one version of the project (its version and,
    from a git checkout, its commit): their numbers may not be comparable."""
    versions: dict[str, int] = {}
    for record in records:
        found = record.get("versions") or {}
        label = found.get("longtail-hashing-benchmark", "unknown version")
        if found.get("git_commit"):
            label += f" (commit {found['git_commit'][:12]}{'+dirty' if found['git_commit'].endswith('+dirty') else ''})"
        versions[label] = versions.get(label, 0) + 1
    if len(versions) <= 1:
        return []
    listed = "; ".join(f"{label}: {count} cells" for label, count in sorted(versions.items()))
    return [f"**Warning: the cells of this folder come from {len(versions)} different versions of the suite** "
            f"({listed}). Numbers from different versions may not be comparable; `--force` recomputes a "
            "run's cells with the current version.", ""]


def split_manifest_lines(records) -> list[str]:
    """One row per long-tail split the records used: sizes, the sha256 of its index lists and the
    disjointness checks (``datasets.manifest``)."""
    splits = {}
    for record in records:
        long_tail = ((record.get("dataset") or {}).get("card") or {}).get("long_tail") or {}
        manifest = long_tail.get("manifest")
        if manifest:
            key = (float(long_tail.get("imbalance_factor", 0)), int(long_tail.get("split_seed", 0)))
            splits[key] = (long_tail, manifest)
    if not splits:
        return []
    lines = ["### Split manifests", "",
             "The sha256 of each split's row lists (" + next(iter(splits.values()))[1].get("index_hash", "") + "; "
             "first 16 hex digits shown, the full values are in every record) and its checks.", "",
             "| IF | split seed | n_max/n_min | train | query | database | train sha256 | query sha256 | "
             "database sha256 | query ∩ database = ∅ | train ⊆ database |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (factor, seed), (long_tail, m) in sorted(splits.items()):
        realised = long_tail.get("realised_imbalance_factor")
        checks = ["yes" if m.get(name) else "NO" for name in ("query_database_disjoint", "train_in_database")]
        lines.append(f"| {factor:g} | {seed} | {'' if realised is None else f'{realised:g}'} | {m['n_train']} | "
                     f"{m['n_query']} | {m['n_database']} | `{m['train_sha256'][:16]}` | `{m['query_sha256'][:16]}` | "
                     f"`{m['database_sha256'][:16]}` | {checks[0]} | {checks[1]} |")
    return lines + [""]


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
    lines += provenance_lines(results.records.values())
    for setting in sorted(manifest):
        dataset, mode = setting.split("|")
        runs = manifest[setting]
        lines += [f"## {dataset} ({mode} mode)", ""]
        figure2 = os.path.join("figures", f"figure2_{file_slug(dataset)}.png")
        if os.path.exists(os.path.join(store.root, figure2)):
            lines += ["### Fig. 2: long-tail training splits", "", f"![figure2]({figure2})", ""]
        lines += split_manifest_lines(record for record in results.records.values()
                                      if (record.get("cell") or {}).get("dataset") == dataset)
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


def draw_diagnostics(results: StoredResults, run: dict, mode: str, policy: str = "tie_aware",
                     data=None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The long-tail diagnostics of a table run: per-class AP against training-set size, the query
    MAP per epoch (figure and ``tables/query_map_diagnostic_*.csv``, when the trainer recorded it)
    and, when ``data`` has images, the retrieval examples. Returns (figures name -> paths,
    tables name -> path)."""
    from . import figures

    if TABLE not in run.get("outputs", ()):
        return {}, {}
    table = table_data(results, run, mode, policy)
    frame = table["frame"]
    if frame.empty:
        return {}, {}
    dataset = run["dataset"]
    bits = int(run["bits"][len(run["bits"]) // 2])
    tail = f"{file_slug(dataset)}_{mode}{_suffix(run)}"
    root = results.store.root
    drawn, tables = {}, {}
    per_class = diagnostics.per_class_ap(results, frame[frame["bits"] == bits], policy)
    if len(per_class):
        order = {m: i for i, m in enumerate(ordered_methods(per_class["method"]))}
        per_class = per_class.sort_values("method", key=lambda s: s.map(order), kind="stable")
        drawn["per_class_ap"] = figures.plot_per_class_ap(per_class, dataset, bits,
                                                          os.path.join(root, "figures", f"per_class_ap_{tail}"))
    inflation = table["inflation"]
    if not inflation.empty:
        tables["query_map_diagnostic_csv"] = atomic_write(
            os.path.join(root, "tables", f"query_map_diagnostic_{tail}_{policy}.csv"),
            csv_text(inflation.drop(columns=["epochs", "maps"])))
        at_bits = inflation[inflation["bits"] == bits]
        if len(at_bits):
            drawn["query_map_diagnostic"] = figures.plot_query_map_curves(
                diagnostics.inflation_curves(at_bits), at_bits, dataset, bits,
                os.path.join(root, "figures", f"query_map_diagnostic_{tail}"))
    load = diagnostics.image_loader(data)
    if load is not None:
        factor = max(frame["imbalance_factor"])
        setting = frame[(frame["imbalance_factor"] == factor) & (frame["bits"] == bits)]
        target = next((p["display"] for p in run["points"] if p["base"] == SIGNIFICANCE_TARGET), None)
        lthnet = {p["display"] for p in run["points"] if p["base"].startswith("LTHNet")}
        methods = diagnostics.choose_example_methods(setting, target, lthnet, policy)
        examples = diagnostics.retrieval_examples(results, setting, data, methods)
        if examples:
            title = (f"{dataset}, IF={factor:g}, {bits} bits: top {len(examples[0]['items'])} by Hamming distance "
                     "(ties by database index) for tail-class queries; green: same class, red: another class")
            try:
                drawn["retrieval_examples"] = figures.plot_retrieval_examples(
                    examples, load, list(getattr(data, "class_names", ()) or ()), title,
                    os.path.join(root, "figures", f"retrieval_examples_{tail}"))
            except (BenchmarkError, OSError) as error:  # e.g. image files absent beside cached features
                print(f"note: no retrieval examples: {error}", file=sys.stderr)
    return drawn, tables


def finish_run(results: StoredResults, run: dict, mode: str, policy: str = "tie_aware", data=None) -> dict[str, str]:
    """After a run: draw its figures and diagnostics, record it in the manifest and rewrite
    REPORT.md and report.html. ``data`` (the run's BenchmarkData, optional) serves what needs the
    dataset itself (the retrieval examples' images). Returns name -> path of every file written
    (e.g. ``figure3.png``, ``per_class_ap.png``, ``report``, ``html_report``)."""
    from .html_report import write_html

    figure_paths = draw_figures(results, run, mode)
    diagnostic_paths, tables = draw_diagnostics(results, run, mode, policy, data)
    figure_paths.update(diagnostic_paths)
    record_run(results.store, run, mode, figure_paths)
    written = {f"{name}.{path.rsplit('.', 1)[-1]}": path for name, files in figure_paths.items() for path in files}
    written.update(tables)
    written["report"] = write_report(results, policy)
    written["html_report"] = write_html(results, policy)
    return written
