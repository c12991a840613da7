"""The README's main command, timed and profiled: ``python run_benchmark.py --methods all --if 1 50 100``
(digits, offline) into a fresh results folder, its wall time, and where the cell time goes (per row:
fit, diagnostic, encode, evaluate seconds summed over its cells, from the records the run wrote).

    python benchmarks/default_run.py [--results-dir /tmp/default_run] [--json benchmarks/results/default_run.json]
        [-- extra run_benchmark.py options, e.g. --jobs 1]

Run it on an idle machine: the wall time is the figure README states. The per-row seconds are the
cells' own (a cell runs with the cores divided among the worker processes), so their sum exceeds
the wall time by about the number of workers.

It also prints the floor of the deep rows: the matrix-multiply FLOPs their cells' settings demand
(every epoch of training, the final encodes of query and database, and the diagnostic's encodes),
counted by torch's ``FlopCounterMode`` on a one-epoch stand-in fit of each row with the cell's bits,
batch size, feature width and classes, scaled by the cell's training-set size and epochs; plus the
fused RMSprop's 20 bytes per parameter and step; both in seconds at this machine's single-core
peaks (bench_deep.py's 2048^3 float32 matmul and 256 MiB copy), summed and divided by the cores.
It is a floor: the elementwise work, the DPP and Python are left out.
``--floor-only`` prints it for an existing results folder without running anything.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
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


def machine_rates() -> tuple[float, float]:
    """(matmul FLOP/s, copy bytes/s) of one core: bench_deep.py's measures (the 2048^3 float32
    matmul peak; a 256 MiB float32 copy, read + write), best of 5, on one thread."""
    import torch

    from bench_deep import measure_bandwidth, measure_gemm_rate

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure_gemm_rate(), measure_bandwidth()
    finally:
        torch.set_num_threads(previous)


def _stand_in_flops(key: str, n_bits: int, batch_size: int, n_features: int, n_classes: int) -> tuple[float, float, int]:
    """(training FLOPs per item and epoch, encoding FLOPs per item, trained parameters) of method
    ``key`` in features mode, counted on a one-epoch fit of 8 batches of random features."""
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.specs import parse_method_spec

    n_items = 8 * batch_size
    rng = np.random.default_rng(0)
    features = rng.random((n_items, n_features), dtype=np.float32)
    labels = np.arange(n_items) % n_classes
    method = parse_method_spec(key).build(n_bits=n_bits, random_state=0, n_epochs=1, batch_size=batch_size,
                                          n_threads=1, n_classes=n_classes)
    with FlopCounterMode(display=False) as fit_counter:
        method.fit(features, labels)
    with FlopCounterMode(display=False) as encode_counter:
        method.encode(features)
    modules = [m for m in (method.head_, method.trunk_, method.backbone_) if m is not None]
    n_parameters = sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)
    return fit_counter.get_total_flops() / n_items, encode_counter.get_total_flops() / n_items, n_parameters


def deep_compute_floor(results_dir: str, dataset: str = "digits", rates: tuple[float, float] | None = None,
                       cores: int | None = None) -> dict:
    """Per deep row of the stored run: its cells' matmul FLOPs and optimiser bytes (see the module
    docstring) and the seconds they need on ``cores`` cores at ``rates`` = (FLOP/s, bytes/s) per core
    (measured when None)."""
    from methods._deep.trainer import DIAGNOSTIC_LOG, diagnostic_epochs

    cores = cores or os.cpu_count() or 1
    gemm_rate, bandwidth = rates or machine_rates()
    per_key: dict[tuple, tuple[float, float, int]] = {}
    rows: dict[str, dict] = {}
    for path in glob.glob(os.path.join(results_dir, "records", dataset, "**", "*.json"), recursive=True):
        with open(path) as handle:
            record = json.load(handle)
        method = record["method"]
        if method.get("family") != "deep" or record["cell"].get("mode") != "features":
            continue
        settings, data = method["settings"], record["dataset"]
        n_bits, n_epochs, batch = record["cell"]["n_bits"], int(settings["n_epochs"]), int(settings["batch_size"])
        shape = (method["key"], n_bits, batch, int(data["n_features"]), int(data["n_classes"]))
        if shape not in per_key:
            per_key[shape] = _stand_in_flops(*shape)
        train_flops, encode_flops, n_parameters = per_key[shape]
        n_train = int(data["card"]["long_tail"]["n_train"])
        manifest = data["card"]["long_tail"]["manifest"]
        n_encoded = int(manifest["n_query"]) + int(manifest["n_database"])
        n_diagnostics = len(diagnostic_epochs(n_epochs)) if record["training_log"].get(DIAGNOSTIC_LOG) else 0
        flops = train_flops * n_train * n_epochs + encode_flops * n_encoded * (1 + n_diagnostics)
        optimizer_bytes = 20.0 * n_parameters * math.ceil(n_train / batch) * n_epochs  # one fused RMSprop pass a step
        row = rows.setdefault(method["display"], {"method": method["display"], "cells": 0, "tflop": 0.0,
                                                  "optimizer_gb": 0.0, "cell_s": 0.0})
        row["cells"] += 1
        row["tflop"] += flops / 1e12
        row["optimizer_gb"] += optimizer_bytes / 1e9
        row["cell_s"] += sum(float(record["timings"].get(f"{k}_seconds") or 0.0) for k in ("fit", "diagnostic", "encode"))
    for row in rows.values():
        row["floor_core_s"] = row["tflop"] * 1e12 / gemm_rate + row["optimizer_gb"] * 1e9 / bandwidth
        row["of_floor"] = row["floor_core_s"] / max(row["cell_s"], 1e-9)
    core_seconds = sum(r["floor_core_s"] for r in rows.values())
    return {"matmul_gflops_per_core": round(gemm_rate / 1e9, 1), "copy_gb_per_s_per_core": round(bandwidth / 1e9, 1),
            "cores": cores, "tflop": round(sum(r["tflop"] for r in rows.values()), 2),
            "optimizer_gb": round(sum(r["optimizer_gb"] for r in rows.values()), 1),
            "floor_seconds": round(core_seconds / cores, 1),
            "cell_seconds": round(sum(r["cell_s"] for r in rows.values()), 1),
            "rows": sorted(rows.values(), key=lambda r: -r["floor_core_s"])}


def print_floor(floor: dict) -> None:
    print(f"floor of the deep rows: {floor['tflop']:.1f} TFLOP of matmuls at {floor['matmul_gflops_per_core']:.1f} "
          f"GFLOP/s and {floor['optimizer_gb']:.0f} GB of optimiser traffic at {floor['copy_gb_per_s_per_core']:.1f} GB/s "
          f"per core = {floor['floor_seconds']:.0f} s of wall time on {floor['cores']} cores "
          f"(their cells took {floor['cell_seconds']:.0f} cell-s = {floor['cell_seconds'] / floor['cores']:.0f} s on {floor['cores']} workers)")
    print(f"  {'row':<18} {'cells':>5} {'TFLOP':>7} {'opt GB':>7} {'floor core-s':>12} {'cell s':>7} {'floor/cell':>10}")
    for r in floor["rows"]:
        print(f"  {r['method']:<18} {r['cells']:>5} {r['tflop']:>7.2f} {r['optimizer_gb']:>7.1f} {r['floor_core_s']:>12.1f} "
              f"{r['cell_s']:>7.1f} {100 * r['of_floor']:>9.0f}%")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", default="/tmp/default_run")
    parser.add_argument("--json", default=None)
    parser.add_argument("--floor-only", action="store_true",
                        help="only print the deep rows' compute floor of an existing --results-dir")
    parser.add_argument("extra", nargs="*", help="more run_benchmark.py options (after --)")
    args = parser.parse_args(argv)
    if args.floor_only:
        print_floor(deep_compute_floor(args.results_dir))
        return 0
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
    floor = None
    if completed.returncode == 0:
        floor = deep_compute_floor(args.results_dir)
        print_floor(floor)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump({"command": "python benchmarks/default_run.py " + " ".join(sys.argv[1:]),
                       "run": " ".join(["python", *COMMAND, *args.extra]), "exit": completed.returncode,
                       "wall_seconds": round(wall, 1), "summary": summary,
                       "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
                       "rows": rows, "deep_compute_floor": floor}, handle, indent=1)
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
