"""The deep table's fair fight, measured: LTHNet (k=3) minus the best deep baseline, with its 95%
interval, per IF, in features mode on the CIFAR-100-sized synthetic features (noise 7: classes that
overlap like real features) and on digits; and the protocol-inflation table.

    # the grid, into a result store (any checkout: --tree runs an older one, e.g. the code before
    # the fair-comparison issue, with its own heads and presets)
    python benchmarks/fair_fight.py run --results-dir /tmp/fair_after
    git worktree add /tmp/fair_before fc25c07
    python benchmarks/fair_fight.py run --tree /tmp/fair_before --results-dir /tmp/fair_before_run

    # the comparison (this checkout's report code reads both stores)
    python benchmarks/fair_fight.py compare --before /tmp/fair_before_run --after /tmp/fair_after \
        --json benchmarks/results/fair_fight.json

The difference's interval is the paired bootstrap over queries of per-query AP (LTHNet's minus the
baseline's; benchmark.uncertainty, 2,000 resamples); "best deep baseline" is the deep row other
than LTHNet / LTHNet_sq with the highest MAP in that setting (chosen on the query set's MAP, as a
table reader would: a conservative choice for LTHNet's margin).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = {"synthetic-cifar100": {"noise": 7.0}, "digits": {}}
#: s_1 of the synthetic IF-1 split (the paper's ImageNet100 rule, as benchmarks/validate_deep.py):
#: 50 items per class instead of 500, a 2-core cost cut; IF 50 and 100 keep s_1 = 500
BALANCED_CLASS_SIZE = {"synthetic-cifar100": 50}
METHODS = ["DPSH", "HashNet", "DSDH", "CSQ", "DHN", "ACHNet", "OrthoHash", "LTHNet(k=3)"]


def run(args) -> int:
    sys.path.insert(0, os.path.abspath(args.tree))
    from datasets import load_dataset

    try:
        from benchmark.specs import expand_method_specs
        from methods.registry import registered_methods
    except ImportError:  # an older checkout: the registry lived in benchmark/
        from benchmark.registry import expand_method_specs, registered_methods
    from benchmark.runner import plan_grid, run_grid
    from benchmark.store import ResultStore

    store = ResultStore(args.results_dir)
    specs = [spec for spec in _specs(expand_method_specs, registered_methods())
             if spec.key not in set(args.exclude) and spec.name not in set(args.exclude)]
    for name in args.datasets:
        data = load_dataset(name, **DATASETS[name])
        if name in BALANCED_CLASS_SIZE and args.balanced_class_size:
            protocol = dataclasses.replace(data.long_tail_protocol, balanced_class_size=args.balanced_class_size)
            data = dataclasses.replace(data, long_tail_protocol=protocol)
        bits = args.bits or [list(data.default_bits)[len(data.default_bits) // 2]]
        plan = plan_grid(data, args.factors, bits, specs, [0])
        outcomes = run_grid(data, plan, specs, store, jobs=args.jobs, progress=True)
        failed = [o for o in outcomes if o.status == "failed"]
        print(f"{name}: {sum(o.status == 'done' for o in outcomes)} computed, {len(failed)} failed")
        for outcome in failed:
            print("  " + outcome.message)
    return 0


def _specs(expand_method_specs, registered):
    """The deep rows that exist in this checkout (an older one lacks DHN, ACHNet, OrthoHash)."""
    wanted = [name for name in METHODS if name.split("(")[0] in registered]
    return expand_method_specs(wanted)


def compare(args) -> int:
    sys.path.insert(0, os.path.dirname(HERE))
    import numpy as np

    from benchmark.results import StoredResults
    from benchmark.store import ResultStore
    from benchmark.uncertainty import bootstrap_intervals

    out = {}
    for label, root in (("before", args.before), ("after", args.after)):
        if not root:
            continue
        results = StoredResults.load(ResultStore(root))
        frame = results.frame
        results.arrays = _arrays_by_record_file(root)  # an older checkout's store names its files its own way
        rows = []
        for (dataset, factor, bits), group in frame.groupby(["dataset", "imbalance_factor", "bits"]):
            target = group[group["method"] == "LTHNet (k=3)"]
            others = group[(group["family"] == "deep") & ~group["method"].str.startswith("LTHNet")]
            if args.baselines:  # e.g. the paper's four, for a like-for-like before/after
                others = others[others["method"].isin(args.baselines)]
            if target.empty or others.empty:
                continue
            best = others.loc[others["map_tie_aware"].idxmax()]
            ours = results.arrays(target.iloc[0]["cell_key"])["ap_tie_aware"]
            theirs = results.arrays(best["cell_key"])["ap_tie_aware"]
            (estimate, low, high), = bootstrap_intervals([[(ours - theirs, None)]])
            ci = bootstrap_intervals([[(ours, None)]])[0]
            rows.append({"dataset": dataset, "imbalance_factor": float(factor), "bits": int(bits),
                         "lthnet_map": float(ours.mean()), "lthnet_ci": [float(ci[1]), float(ci[2])],
                         "best_baseline": best["method"], "baseline_map": float(theirs.mean()),
                         "difference": float(estimate), "difference_ci": [float(low), float(high)]})
        inflation = []
        for key, record in results.records.items():
            log = record.get("training_log") or {}
            points = log.get("query_map_diagnostic")
            if record["method"].get("family") != "deep" or not points:
                continue
            final = record["metrics"]["map_tie_aware"]
            best_point = max(points, key=lambda p: p["map"])
            inflation.append({"dataset": record["cell"]["dataset"], "method": record["method"]["display"],
                              "imbalance_factor": float(record["cell"]["imbalance_factor"]),
                              "final_map": final, "best_on_query": max(best_point["map"], final),
                              "best_epoch": best_point["epoch"], "inflation": max(best_point["map"], final) - final,
                              "diagnostic_seconds": (record.get("timings") or {}).get("diagnostic_seconds"),
                              "fit_seconds": (record.get("timings") or {}).get("fit_seconds")})
        maps = []
        for _, row in frame[frame["family"] == "deep"].iterrows():
            ap = results.arrays(row["cell_key"])["ap_tie_aware"]
            _, low, high = bootstrap_intervals([[(ap, None)]])[0]
            maps.append({"dataset": row["dataset"], "imbalance_factor": float(row["imbalance_factor"]),
                         "bits": int(row["bits"]), "method": row["method"], "map": float(ap.mean()),
                         "ci": [float(low), float(high)], "fit_seconds": float(row["fit_seconds"])})
        out[label] = {"maps": sorted(maps, key=lambda r: (r["dataset"], r["method"], r["imbalance_factor"])),
                      "differences": sorted(rows, key=lambda r: (r["dataset"], r["imbalance_factor"])),
                      "inflation": sorted(inflation, key=lambda r: (r["dataset"], r["method"], r["imbalance_factor"]))}
    for label, block in out.items():
        print(f"\n{label}: deep rows, tie-aware MAP [95% bootstrap interval over queries]")
        for dataset in sorted({r["dataset"] for r in block["maps"]}):
            factors = sorted({r["imbalance_factor"] for r in block["maps"] if r["dataset"] == dataset})
            print(f"{dataset:<20} " + " ".join(f"{'IF=' + format(f, 'g'):>24}" for f in factors))
            for method in sorted({r["method"] for r in block["maps"] if r["dataset"] == dataset}):
                cells = {r["imbalance_factor"]: r for r in block["maps"] if r["dataset"] == dataset and r["method"] == method}
                print(f"  {method:<18} " + " ".join(
                    f"{cells[f]['map']:.4f} [{cells[f]['ci'][0]:.3f}, {cells[f]['ci'][1]:.3f}]" if f in cells else f"{'-':>24}"
                    for f in factors))
        print(f"\n{label}: LTHNet (k=3) minus the best deep baseline (tie-aware MAP, 95% paired bootstrap interval)")
        print(f"{'dataset':<20} {'IF':>4} {'bits':>4} {'LTHNet':>8} {'best baseline':<16} {'its MAP':>8} {'difference':>26}")
        for r in block["differences"]:
            print(f"{r['dataset']:<20} {r['imbalance_factor']:>4g} {r['bits']:>4} {r['lthnet_map']:>8.4f} "
                  f"{r['best_baseline']:<16} {r['baseline_map']:>8.4f} {r['difference']:>+8.4f} "
                  f"[{r['difference_ci'][0]:+.4f}, {r['difference_ci'][1]:+.4f}]")
        if block["inflation"]:
            print(f"\n{label}: protocol inflation (best-on-query MAP minus the final epoch's, diagnostic only)")
            for r in block["inflation"]:
                share = (r["diagnostic_seconds"] or 0) / max(r["fit_seconds"] or 1e-9, 1e-9)
                print(f"{r['dataset']:<20} {r['method']:<16} IF={r['imbalance_factor']:<4g} final {r['final_map']:.4f} "
                      f"best {r['best_on_query']:.4f} (epoch {r['best_epoch']}) +{r['inflation']:.4f} "
                      f"diagnostic cost {100 * share:.1f}% of the fit")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)
    del np
    return 0


def _arrays_by_record_file(root: str):
    """cell key -> the .npz beside its record (any store layout: file names from an older checkout
    hash the cell differently from this one's ``Cell.key``)."""
    import glob

    import numpy as np

    paths = {}
    for path in glob.glob(os.path.join(root, "records", "**", "*.json"), recursive=True):
        with open(path) as handle:
            record = json.load(handle)
        paths[record.get("cell_key")] = path[:-len(".json")] + ".npz"
    cache = {}

    def arrays(cell_key):
        if cell_key not in cache:
            with np.load(paths[cell_key]) as npz:
                cache[cell_key] = {name: npz[name] for name in npz.files}
        return cache[cell_key]

    return arrays


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the deep grid into a result store")
    run_parser.add_argument("--tree", default=os.path.dirname(HERE), help="the checkout to run (default: this one)")
    run_parser.add_argument("--results-dir", required=True)
    run_parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    run_parser.add_argument("--if", dest="factors", nargs="+", type=float, default=[1.0, 50.0, 100.0])
    run_parser.add_argument("--bits", nargs="+", type=int, default=None,
                            help="default: 64 on synthetic-cifar100, 32 on digits (their middle lengths)")
    run_parser.add_argument("--jobs", type=int, default=2)
    run_parser.add_argument("--exclude", nargs="+", default=[], help="rows to leave out (e.g. ACHNet: its cells "
                            "cost ~10x a single-layer head's)")
    run_parser.add_argument("--balanced-class-size", type=int, default=BALANCED_CLASS_SIZE["synthetic-cifar100"],
                            help="items per class of synthetic-cifar100's IF-1 split (0: its own 500)")
    compare_parser = sub.add_parser("compare", help="LTHNet (k=3) minus the best deep baseline, before and after")
    compare_parser.add_argument("--before", default=None)
    compare_parser.add_argument("--after", required=True)
    compare_parser.add_argument("--json", default=None)
    compare_parser.add_argument("--baselines", nargs="+", default=None,
                                help="the deep rows LTHNet is compared with (default: every deep row but LTHNet's)")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
