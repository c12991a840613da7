"""The README's main command, timed and profiled: ``python run_benchmark.py --methods all --if 1 50 100``
(digits, offline) into a fresh results folder, its wall time, and where the cell time goes (per row:
fit, diagnostic, encode, evaluate seconds summed over its cells, from the records the run wrote).

    python benchmarks/default_run.py [--results-dir /tmp/default_run] [--json benchmarks/results/default_run.json]
        [-- extra run_benchmark.py options, e.g. --jobs 1]

Run it on an idle machine: the wall time is the figure README states. The per-row seconds are the
cells' own (a cell runs with the cores divided among the worker processes), so their sum exceeds
the wall time by about the number of workers.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = ["run_benchmark.py", "--methods", "all", "--if", "1", "50", "100"]


def profile(results_dir: str, dataset: str = "digits") -> list[dict]:
    """Per method row: cells, and the fit / diagnostic / encode / evaluate seconds over its cells
    (the records of ``dataset``, the main command's)."""
    rows: dict[str, dict] = {}
    for path in glob.glob(os.path.join(results_dir, "records", dataset, "**", "*.json"), recursive=True):
        with open(path) as handle:
            record = json.load(handle)
        timings = record.get("timings") or {}
        row = rows.setdefault(record["method"]["display"], {"method": record["method"]["display"],
                                                            "family": record["method"].get("family", "shallow"),
                                                            "cells": 0, "fit_s": 0.0, "diagnostic_s": 0.0,
                                                            "encode_s": 0.0, "evaluate_s": 0.0})
        row["cells"] += 1
        for key in ("fit", "diagnostic", "encode", "evaluate"):
            row[f"{key}_s"] += float(timings.get(f"{key}_seconds") or 0.0)
    return sorted(rows.values(), key=lambda r: -(r["fit_s"] + r["diagnostic_s"] + r["encode_s"] + r["evaluate_s"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", default="/tmp/default_run")
    parser.add_argument("--json", default=None)
    parser.add_argument("extra", nargs="*", help="more run_benchmark.py options (after --)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.results_dir, ignore_errors=True)
    command = [sys.executable, *COMMAND, "--results-dir", args.results_dir, "--no-progress", *args.extra]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = next((line for line in completed.stdout.splitlines() if line.startswith("cells:")), "")
    rows = profile(args.results_dir)
    total = sum(r["fit_s"] + r["diagnostic_s"] + r["encode_s"] + r["evaluate_s"] for r in rows)
    print(f"{' '.join(COMMAND + args.extra)}: exit {completed.returncode}, {wall:.1f} s wall; {summary}")
    print(f"{'row':<18} {'cells':>5} {'fit s':>8} {'diag s':>7} {'encode s':>8} {'eval s':>7} {'share':>6}")
    for r in rows:
        cell_total = r["fit_s"] + r["diagnostic_s"] + r["encode_s"] + r["evaluate_s"]
        print(f"{r['method']:<18} {r['cells']:>5} {r['fit_s']:>8.1f} {r['diagnostic_s']:>7.1f} {r['encode_s']:>8.2f} "
              f"{r['evaluate_s']:>7.2f} {100 * cell_total / max(total, 1e-9):>5.1f}%")
    print(f"{'all cells':<18} {sum(r['cells'] for r in rows):>5} {total:>8.1f} s of cell time; "
          f"the rest of the wall time: start-up, splits, the report and figures")
    if completed.returncode != 0:
        print(completed.stdout[-2000:], completed.stderr[-2000:])
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump({"command": "python benchmarks/default_run.py " + " ".join(sys.argv[1:]),
                       "run": " ".join(["python", *COMMAND, *args.extra]), "exit": completed.returncode,
                       "wall_seconds": round(wall, 1), "summary": summary,
                       "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
                       "rows": rows}, handle, indent=1)
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
