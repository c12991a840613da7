#!/usr/bin/env python
"""Measure what the reports cost on a stored run: reading the store once, the tables
(``report.write_reports``) and ``analysis_report.finish_run`` (figures, diagnostics, REPORT.md, report.html).

    python run_benchmark.py --dataset digits --methods LSH ITQ SDH CSQ 'LTHNet(k=3)' --if 1 50 100 --bits 16 \\
        --set n_epochs=2 --no-progress --results-dir /tmp/f_run
    python benchmarks/bench_report.py --results-dir /tmp/f_run [--repeat 3]

Also times the bootstrap alone on a CIFAR-100-sized synthetic table (17 methods x 9 settings,
10,000 queries, 7 values per cell) with ``--synthetic``. Prints one line per step (best of --repeat).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _best(repeat, step):
    """(best wall seconds, best CPU seconds of this process, value): the CPU time is the steadier
    number on a shared machine (a busy machine stretches wall time, not the work done)."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        value = step()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return f"{min(walls):.2f} s wall, {min(cpus):.2f} s CPU", value


def synthetic(repeat: int) -> None:
    import numpy as np

    from benchmark.uncertainty import bootstrap_intervals

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 100, 10_000)
    masks = [np.isin(labels, np.arange(i * 33, (i + 1) * 33)) for i in range(3)] + [
        labels < 10, (labels >= 10) & (labels < 50), labels >= 50]
    items = []
    for _ in range(17 * 9):
        ap = rng.random(10_000)
        items += [[(ap, None)]] + [[(ap, m)] for m in masks]
    seconds, _ = _best(repeat, lambda: bootstrap_intervals(items))
    print(f"bootstrap, CIFAR-100-sized table ({len(items)} intervals, 10,000 queries, 2,000 resamples): {seconds}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", help="a results folder with a finished run (its experiments.json)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--synthetic", action="store_true", help="time the bootstrap on a CIFAR-100-sized table")
    args = parser.parse_args(argv)
    if args.synthetic:
        synthetic(args.repeat)
    if not args.results_dir:
        return 0
    from benchmark import analysis_report
    from benchmark.report import write_reports
    from benchmark.results import StoredResults
    from benchmark.store import ResultStore
    from datasets import load_dataset

    store = ResultStore(args.results_dir)
    manifest = analysis_report.load_manifest(store)
    for setting, runs in sorted(manifest.items()):
        dataset, mode = setting.split("|")
        data = load_dataset(dataset)
        for name, run in sorted(runs.items()):
            keys = [p["key"] for p in run["points"]]
            display = next((p["display"] for p in run["points"] if p["base"] == "LTHNet (k=3)"), None)
            seconds, results = _best(args.repeat, lambda: StoredResults.load(store, dataset))
            print(f"{setting} {name}: read the store ({len(results.frame)} cells): {seconds}")
            if "table" in run.get("outputs", ()):
                suffix = "" if name == "main" else f"_{name}"
                seconds, _ = _best(args.repeat, lambda: write_reports(
                    StoredResults.load(store, dataset), dataset, mode, ttest_method=display, method_keys=keys,
                    name_suffix=suffix, fingerprints=run.get("fingerprints")))
                print(f"{setting} {name}: write_reports (incl. a fresh read): {seconds}")
            seconds, written = _best(args.repeat, lambda: analysis_report.finish_run(
                StoredResults.load(store, dataset), run, mode, data=data))
            print(f"{setting} {name}: finish_run (incl. a fresh read; {len(written)} files): {seconds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
