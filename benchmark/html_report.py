"""report.html in the results folder: one self-contained, offline page (inline CSS and JS, figures as
base64 PNG) with every run's tables (sortable), intervals, marks, published values, figures and method cards.

Built from the same manifest and computed tables as REPORT.md (``benchmark.analysis_report``), so
the two always agree; nothing on the page loads anything from the network.
"""
from __future__ import annotations

import base64
import html
import os
import time

import numpy as np
import pandas as pd

from common.io import atomic_write, file_slug

from .experiments import TABLE
from .report import MARK_TIED, MARKS_LEGEND_MARKDOWN, TAIL_TEXT, _rank_marks, ordered_methods, table_caption
from .results import GROUPS, StoredResults, as_results
from .uncertainty import format_interval

HTML_NAME = "report.html"
#: The Markdown legend of the marks with its two Markdown marks as HTML.
MARKS_LEGEND_HTML = html.escape(MARKS_LEGEND_MARKDOWN).replace("**Bold**", "<strong>Bold</strong>").replace(
    "&lt;u&gt;underlined&lt;/u&gt;", "<u>underlined</u>").replace("`", "")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1400px;
     padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.1em;margin-top:1.6em}h4{font-size:1em;margin-bottom:.3em}
p.note,p.caption{font-size:.88em;color:#444;max-width:110ch}
.wrap{overflow-x:auto;margin:.5em 0 1em}
table{border-collapse:collapse;font-size:.82em}
th,td{border:1px solid #d0d0d0;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f0f2f5;position:sticky;top:0}
td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#999;font-size:.8em}
table.sortable th.asc:after{content:" \\2191";color:#000}table.sortable th.desc:after{content:" \\2193";color:#000}
tr:nth-child(even) td{background:#fafafa}
.ci{color:#666;font-size:.9em}.pub{color:#225;font-size:.9em}.tied{color:#b35c00}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figure.small img{max-width:min(100%,400px)}figcaption{font-size:.85em;color:#444}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em .8em;font-size:.8em;width:22em;background:#fcfcfd}
.card h5{margin:0 0 .3em;font-size:1.05em}.card dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:.1em .6em}
.card dt{color:#555}.card dd{margin:0;word-break:break-word}
details summary{cursor:pointer;font-size:.9em;color:#225}
"""

SCRIPT = """
(function(){
  function key(cell){var v=cell.getAttribute('data-sort');if(v===null)v=cell.textContent;
    var n=parseFloat(v);return (v!==''&&!isNaN(n)&&isFinite(v))?n:v.toLowerCase();}
  function sortBy(th){
    var table=th.closest('table'),body=table.tBodies[0],index=Array.prototype.indexOf.call(th.parentNode.children,th);
    var asc=!th.classList.contains('asc');
    Array.prototype.forEach.call(th.parentNode.children,function(h){h.classList.remove('asc','desc');});
    th.classList.add(asc?'asc':'desc');
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=key(a.cells[index]),y=key(b.cells[index]);
      var empty=function(v){return v===''||v==='\\u2013';};
      if(empty(x)&&!empty(y))return 1;if(empty(y)&&!empty(x))return -1;
      if(typeof x===typeof y){return (x<y?-1:x>y?1:0)*(asc?1:-1);}return (typeof x==='number'?-1:1);});
    rows.forEach(function(r){body.appendChild(r);});
  }
  document.querySelectorAll('table.sortable th').forEach(function(th){
    th.addEventListener('click',function(){sortBy(th);});});
  function status(){
    var imgs=document.querySelectorAll('img'),ok=0;
    imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});
    document.body.setAttribute('data-rendered',JSON.stringify({tables:document.querySelectorAll('table').length,
      rows:document.querySelectorAll('tbody tr').length,images:imgs.length,images_loaded:ok}));
    if(location.hash==='#selftest'){
      var th=document.querySelector('table.sortable th:nth-child(2)');
      if(th){sortBy(th);sortBy(th);var c=th.closest('table').tBodies[0].rows[0].cells[1];
        document.body.setAttribute('data-selftest-first',c.getAttribute('data-sort')||c.textContent);}
    }
  }
  if(document.readyState==='complete')status();else window.addEventListener('load',status);
})();
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num(value, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _p(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.3g}"


def _sort_value(value) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return ""
    return str(value)


def html_table(header: list[str], rows: list[list[tuple[str, object]]], sortable: bool = True) -> str:
    """A table from rows of (inner HTML, sort value) cells; click a header to sort (numeric where
    the sort values are numbers)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td data-sort="{_e(_sort_value(v))}">{cell}</td>' for cell, v in row) + "</tr>"
                   for row in rows)
    klass = ' class="sortable"' if sortable else ""
    return f'<div class="wrap"><table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def frame_table(frame: pd.DataFrame, columns: dict[str, str] | None = None) -> str:
    """A DataFrame as a sortable table (floats to 4 digits, ``p_*`` columns to 3 significant)."""
    columns = columns or {c: c for c in frame.columns}
    rows = []
    for record in frame[list(columns)].to_dict("records"):
        row = []
        for name, value in record.items():
            if isinstance(value, (float, np.floating)):
                text = _p(value) if name.startswith("p_") or name.endswith("_p") else _num(value)
            else:
                text = _e(value)
            row.append((text, value if not isinstance(value, (list, dict)) else ""))
        rows.append(row)
    return html_table(list(columns.values()), rows)


def marked_wide_html(summary: pd.DataFrame, published: bool = True) -> str:
    """The Table 3/4 layout: best bold, second underlined, † not significantly different from the
    best, the 95% interval and (where the paper has it) the published value and the difference."""
    if summary.empty:
        return "<p><em>No stored cells.</em></p>"
    summary = summary.copy()
    wide = summary.pivot_table(index="method", columns=["imbalance_factor", "bits"], values="map", aggfunc="first")
    wide = wide.reindex(ordered_methods(summary["method"])).sort_index(axis=1)
    ranks = _rank_marks(wide)
    lookup = {(r["method"], r["imbalance_factor"], r["bits"]): r for r in summary.to_dict("records")}
    header = ["Method"] + [f"IF={f:g} {b} bits" for f, b in wide.columns]
    rows = []
    for method in wide.index:
        row = [(_e(method), method)]
        for factor, bits in wide.columns:
            record = lookup.get((method, factor, bits))
            if record is None or pd.isna(record["map"]):
                row.append(("–", ""))
                continue
            text = _num(record["map"])
            mark = ranks.loc[method, (factor, bits)]
            text = f"<strong>{text}</strong>" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text
            if record.get("mark") == MARK_TIED:
                text += '<span class="tied" title="not significantly different from the best">†</span>'
            if not pd.isna(record.get("map_ci_low", np.nan)):
                text += f' <span class="ci">[{_num(record["map_ci_low"])}, {_num(record["map_ci_high"])}]</span>'
            if published and not pd.isna(record.get("published", np.nan)):
                text += (f' <span class="pub">/ {_num(record["published"])} '
                         f'({record["map"] - record["published"]:+.4f})</span>')
            row.append((text, record["map"]))
        rows.append(row)
    return html_table(header, rows)


def _groups_html(groups: pd.DataFrame, names, labels) -> str:
    if groups.empty or not all(n in groups for n in names):
        return ""
    rows = []
    for record in groups.to_dict("records"):
        row = [(_e(record["method"]), record["method"]),
               (f"{record['imbalance_factor']:g}", record["imbalance_factor"]), (str(record["bits"]), record["bits"])]
        for name in names:
            value = record.get(name, np.nan)
            row.append((_e(format_interval(value, record.get(f"{name}_ci_low"), record.get(f"{name}_ci_high"))),
                        value))
        rows.append(row)
    return html_table(["Method", "IF", "bits"] + list(labels), rows)


def _figure(root: str, relative: str, caption: str, small: bool = False) -> str:
    path = os.path.join(root, relative)
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    klass = ' class="small"' if small else ""
    return (f'<figure{klass}><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _run_figures(results: StoredResults, run: dict, names=None) -> str:
    parts = []
    for name, paths in sorted(run.get("figure_files", {}).items()):
        if names is not None and name not in names:
            continue
        png = next((p for p in paths if p.endswith(".png")), None)
        if png:
            parts.append(_figure(results.store.root, png, f"{name} ({png})"))
    return "".join(parts)


def _card_rows(record: dict, frame_rows: pd.DataFrame) -> list[tuple[str, str]]:
    method = record.get("method", {})
    params = method.get("params") or {}
    settings = method.get("settings") or {}
    family = method.get("family", "shallow")
    preset = str(settings.get("preset", params.get("settings", "–"))) if family == "deep" else "–"
    factors = "/".join(f"{f:g}" for f in sorted(set(frame_rows["imbalance_factor"])))
    rows = [("spec", method.get("key", "")), ("family", family),
            ("mode", ", ".join(sorted(set(frame_rows["mode"])))),
            ("trunk", str(params["trunk"]) if params.get("trunk") is not None else
             (str(settings["trunk"]) if settings.get("trunk") is not None else "–")),
            ("settings preset", preset),
            ("selection rule", "final epoch (the query set chooses nothing)" if family == "deep"
             else "none (no epochs to choose)"),
            ("cells", f"{len(frame_rows)} (IF {factors}, "
                      f"bits {'/'.join(map(str, sorted(set(frame_rows['bits']))))}, "
                      f"seeds {'/'.join(map(str, sorted(set(frame_rows['seed']))))})")]
    if settings:
        rows.append(("settings", ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))))
    shown = {k: v for k, v in sorted(params.items()) if v is not None}
    if shown:
        rows.append(("parameters", ", ".join(f"{k}={v}" for k, v in shown.items())))
    versions = record.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    return rows


def method_cards(results: StoredResults, frame: pd.DataFrame) -> str:
    """A card per method row of a run: spec, family, mode, trunk (when the method has one), settings
    preset, selection rule (final epoch), resolved settings and parameters, read from its records."""
    cards = []
    for method in ordered_methods(frame["method"]):
        rows = frame[frame["method"] == method]
        record = results.records.get(rows["cell_key"].iloc[0], {})
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _card_rows(record, rows))
        cards.append(f'<div class="card"><h5>{_e(method)}</h5><dl>{items}</dl></div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _table_run_html(results: StoredResults, run: dict, mode: str, policy: str) -> str:
    from .analysis_report import (INFLATION_TEXT, RETRIEVAL_TEXT, SIGNIFICANCE_TEXT, table_data)
    from .diagnostics import SHOT_GROUP_TEXT, SHOT_GROUPS, inflation_summary
    from .report import PAPER_DATASETS

    data = table_data(results, run, mode, policy)
    frame = data["frame"]
    if frame.empty:
        return "<p><em>No stored cells yet.</em></p>"
    summary = data["summary"]
    parts = [f'<p class="caption">{_e(table_caption(frame, run["dataset"], mode, policy))}</p>',
             f'<p class="note">{MARKS_LEGEND_HTML}</p>', marked_wide_html(summary)]
    if summary["published"].notna().any():
        diff = summary["difference"].dropna()
        parts.append(f'<p class="note">Cells read "ours [95% interval] / published (ours − published)". Mean '
                     f"difference {diff.mean():+.4f} over {diff.size} values (mean absolute {diff.abs().mean():.4f}).</p>")
    elif run["dataset"] not in PAPER_DATASETS:
        parts.append(f'<p class="note">The paper publishes no numbers for {_e(run["dataset"])}.</p>')
    long = summary.rename(columns={"imbalance_factor": "IF"})
    parts.append("<details><summary>Every value (long table: intervals, published, marks, p against the "
                 "column's best)</summary>" + frame_table(long) + "</details>")
    tail = data["tail"]
    if not tail.empty and tail["map"].notna().any():
        parts += ["<h4>Tail MAP</h4>", f'<p class="note">{_e(TAIL_TEXT.replace("`", ""))}</p>',
                  marked_wide_html(tail, published=False)]
    groups = data["groups"]
    if not groups.empty:
        parts += ["<h4>Head / medium / tail classes</h4>",
                  '<p class="note">Classes ranked by training-set size and cut into thirds; MAP over each '
                  "group's queries [95% interval].</p>", _groups_html(groups, GROUPS + ("all",), GROUPS + ("all",))]
        if "few_shot" in groups:
            parts += ["<h4>Many / medium / few-shot classes</h4>", f'<p class="note">{_e(SHOT_GROUP_TEXT)}.</p>',
                      _groups_html(groups, SHOT_GROUPS, ("many-shot", "medium-shot", "few-shot"))]
    parts.append(_run_figures(results, run, ("per_class_ap",)))
    tests = data["tests"]
    parts.append("<h4>Significance (paired t-test, Holm-corrected)</h4>")
    if tests.empty:
        parts.append("<p><em>No LTHNet (k=3) cells with a competitor in this run: no test.</em></p>")
    else:
        parts += [f'<p class="note">{_e(SIGNIFICANCE_TEXT)}</p>', frame_table(tests, {
            "imbalance_factor": "IF", "bits": "bits", "method": "method", "map_method": "its MAP",
            "map_method_ci_low": "CI low", "map_method_ci_high": "CI high", "best_other": "best other",
            "map_best_other": "best other MAP", "difference": "difference", "difference_ci_low": "diff. CI low",
            "difference_ci_high": "diff. CI high", "p_value": "p (raw)", "p_holm": "p (Holm)", "result": "result",
            "across_seeds_p": "p (across seeds)", "paper_claim": "paper's claim", "agrees": "ours agrees"})]
    if data["n_deep"]:
        parts.append("<h4>Protocol-inflation diagnostic</h4>")
        inflation = inflation_summary(data["inflation"])
        if inflation.empty:
            parts.append("<p><em>No deep cell of this run recorded the per-epoch query MAP.</em></p>")
        else:
            parts += [f'<p class="note">{_e(INFLATION_TEXT)}</p>', frame_table(inflation, {
                "method": "method", "imbalance_factor": "IF", "bits": "bits", "final_map": "final (table)",
                "best_on_query_map": "best on query", "inflation": "inflation", "max_inflation": "largest over seeds",
                "n_seeds": "seeds", "n_points": "recorded epochs"}),
                _run_figures(results, run, ("query_map_diagnostic",))]
    examples = _run_figures(results, run, ("retrieval_examples",))
    if examples:
        parts += ["<h4>Retrieval examples</h4>", f'<p class="note">{_e(RETRIEVAL_TEXT)}</p>', examples]
    parts += ["<h4>Methods</h4>", method_cards(results, frame)]
    return "".join(parts)


def _figure_run_html(results: StoredResults, run: dict, mode: str, policy: str) -> str:
    from .analysis_report import DIAGNOSTIC_FIGURES, experiment_frame, sweep_table

    frame = experiment_frame(results, run, mode, policy)
    parts = [f'<p class="note">{_e(run["note"])}</p>'] if run.get("note") else []
    if frame.empty:
        return "".join(parts) + "<p><em>No stored cells yet.</em></p>"
    names = [n for n in run.get("figure_files", {}) if n not in DIAGNOSTIC_FIGURES]
    parts.append(_run_figures(results, run, names))
    sweep = sweep_table(results, frame, run.get("sweep"), policy)
    parts += ["<h4>MAP (mean over seeds) and 95% interval</h4>", frame_table(sweep, {
        "row": "run", "imbalance_factor": "IF", "bits": "bits", "map": "MAP", "map_ci_low": "CI low",
        "map_ci_high": "CI high"})]
    return "".join(parts)


def render_html(source, policy: str = "tie_aware") -> str:
    """The page's HTML for every run in the folder's manifest."""
    from .analysis_report import load_manifest

    results = as_results(source)
    root = results.store.root
    manifest = load_manifest(results.store)
    body = [f"<h1>Long-tail hashing benchmark: report</h1>",
            f'<p class="note">Generated {_e(time.strftime("%Y-%m-%d %H:%M:%S"))} from the result store in '
            f'{_e(os.path.abspath(root))}; MAP with the {"tie-aware" if policy == "tie_aware" else "index-order"} tie '
            "policy. Click a table header to sort by it. The same content as REPORT.md beside this file.</p>"]
    if not manifest:
        body.append("<p><em>Nothing has been run into this folder yet.</em></p>")
    for setting in sorted(manifest):
        dataset, mode = setting.split("|")
        runs = manifest[setting]
        body.append(f"<h2>{_e(dataset)} ({_e(mode)} mode)</h2>")
        figure2 = os.path.join("figures", f"figure2_{file_slug(dataset)}.png")
        body.append(_figure(root, figure2, "Fig. 2: long-tail training splits (class sizes by rank, log-log)",
                            small=True))
        table_runs = [n for n in runs if TABLE in runs[n].get("outputs", ())]
        for name in sorted(table_runs) + sorted(n for n in runs if n not in table_runs):
            run = runs[name]
            settings = (f"IF {'/'.join(f'{f:g}' for f in run['imbalance_factors'])}, bits "
                        f"{'/'.join(map(str, run['bits']))}, seeds {'/'.join(map(str, run['seeds']))}")
            params = run.get("method_params") or {}
            if params:
                settings += ", method parameters " + ", ".join(f"{k}={v}" for k, v in params.items())
            body += [f"<h3>{_e(run['title'])} — <code>{_e(name)}</code></h3>",
                     f'<p class="note">Run settings: {_e(settings)}.</p>']
            body.append(_table_run_html(results, run, mode, policy) if TABLE in run.get("outputs", ())
                        else _figure_run_html(results, run, mode, policy))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>Long-tail hashing benchmark: report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n")


def write_html(source, policy: str = "tie_aware") -> str:
    """(Re)write ``<results>/report.html``; returns its path."""
    results = as_results(source)
    return atomic_write(os.path.join(results.store.root, HTML_NAME), render_html(results, policy))
