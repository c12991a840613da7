"""Speed and memory of the evaluator (benchmark/metrics.py) at the paper's dataset sizes.

Speed, CIFAR-100 size (10,000 queries x 50,000 database items, 64 bits, 100 classes)::

    python benchmarks/bench_evaluator.py speed [--naive-queries 500] [--threads 1 2]

times ``evaluate`` (all queries, default options: both tie policies, precision@k, PR curve) against
a straightforward evaluator written below (per query: Hamming distances by a dot product, a stable
argsort of the whole database, AP from the ranked relevance), asserts that both give the same
index-order AP for every query the naive one ran (allclose, atol 1e-12) and reports both times and
the ratio. The naive evaluator runs on the first ``--naive-queries`` queries and its time is
extrapolated linearly to all queries (each query costs the same: one sort of the whole database).

Memory, ImageNet100 size (5,000 x 128,503, 64 bits, 100 classes)::

    python benchmarks/bench_evaluator.py memory

runs ``evaluate`` in a fresh subprocess and reports the peak of traced NumPy/Python allocations
(tracemalloc) and the growth of the process's peak resident set (ru_maxrss) during the call.
Target: < 2 GB.

``python benchmarks/bench_evaluator.py`` runs both. Codes are class-structured (each item is its
class's random centre code with every bit flipped with probability 0.25), so MAP is neither 0 nor 1
and Hamming distances tie heavily, as with learned codes.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmark.metrics import evaluate  # noqa: E402

CIFAR100 = dict(n_queries=10_000, n_database=50_000, n_bits=64, n_classes=100)
IMAGENET100 = dict(n_queries=5_000, n_database=128_503, n_bits=64, n_classes=100)


def make_codes(n_queries, n_database, n_bits, n_classes, flip=0.25, seed=0):
    """Class-structured {-1,+1} int8 codes and balanced labels (query and database)."""
    rng = np.random.default_rng(seed)
    centres = np.where(rng.random((n_classes, n_bits)) < 0.5, 1, -1).astype(np.int8)

    def draw(n):
        labels = rng.permutation(np.arange(n) % n_classes)
        flips = np.where(rng.random((n, n_bits)) < flip, -1, 1).astype(np.int8)
        return centres[labels] * flips, labels

    query_codes, query_labels = draw(n_queries)
    database_codes, database_labels = draw(n_database)
    return query_codes, database_codes, query_labels, database_labels


def naive_index_order_ap(query_codes, database_codes, query_labels, database_labels):
    """The straightforward evaluator: per query, distances, a stable argsort, AP over the ranking."""
    n_bits = query_codes.shape[1]
    database = database_codes.astype(np.float64)
    average_precision = np.zeros(len(query_codes))
    for i, (code, label) in enumerate(zip(query_codes.astype(np.float64), query_labels)):
        distances = 0.5 * (n_bits - database @ code)
        order = np.argsort(distances, kind="stable")
        relevant = database_labels[order] == label
        n_relevant = relevant.sum()
        if n_relevant == 0:
            continue
        ranks = np.flatnonzero(relevant) + 1.0
        average_precision[i] = np.mean(np.arange(1, n_relevant + 1) / ranks)
    return average_precision


def _timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def bench_speed(naive_queries: int, thread_counts: list[int]) -> None:
    print(f"CIFAR-100 size: {CIFAR100}; numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    query_codes, database_codes, query_labels, database_labels = make_codes(**CIFAR100)
    evaluate(query_codes[:50], database_codes, query_labels[:50], database_labels)  # warm-up

    subset = min(naive_queries, len(query_codes))
    naive_ap, naive_wall, naive_cpu = _timed(naive_index_order_ap, query_codes[:subset], database_codes,
                                             query_labels[:subset], database_labels)
    scale = len(query_codes) / subset
    extrapolated = "" if subset == len(query_codes) else \
        f" (measured on the first {subset} queries: {naive_wall:.2f} s wall, {naive_cpu:.2f} s CPU; x{scale:g})"
    print(f"  naive per-query stable argsort, index-order AP only: {naive_wall * scale:.1f} s wall, "
          f"{naive_cpu * scale:.1f} s CPU for all {len(query_codes)} queries{extrapolated}")

    for n_threads in thread_counts:
        result, wall, cpu = _timed(evaluate, query_codes, database_codes, query_labels, database_labels,
                                   n_threads=n_threads)
        np.testing.assert_allclose(result.ap_index_order[:subset], naive_ap, rtol=0, atol=1e-12)
        naive_map, fast_map = float(naive_ap.mean()), float(result.ap_index_order[:subset].mean())
        assert abs(naive_map - fast_map) <= 1e-12, (naive_map, fast_map)
        print(f"  evaluate(n_threads={n_threads}), all {len(query_codes)} queries, both tie policies + "
              f"precision@100/1000 + PR curve: {wall:.2f} s wall, {cpu:.2f} s CPU; "
              f"MAP tie-aware {result.map_tie_aware:.6f}, index-order {result.map_index_order:.6f}")
        print(f"    index-order AP equal to the naive one on its {subset} queries (allclose atol 1e-12); "
              f"MAP there {fast_map:.15f} vs {naive_map:.15f}")
        print(f"    speed ratio naive / evaluate: {naive_wall * scale / wall:.0f}x wall-clock, "
              f"{naive_cpu * scale / cpu:.0f}x CPU time (target >= 100x)")


def _memory_child(codes_path: str, n_threads: int) -> None:
    """Run in a fresh process: evaluate at ImageNet100 size, print peaks as JSON."""
    import tracemalloc

    with np.load(codes_path) as saved:
        arrays = [saved[name] for name in ("query_codes", "database_codes", "query_labels", "database_labels")]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as statm:  # current resident set before the call
        rss_now_kib = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    tracemalloc.start()
    result, wall, cpu = _timed(evaluate, *arrays, n_threads=n_threads)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"traced_peak_bytes": traced_peak, "rss_before_kib": rss_before,
                      "rss_after_kib": rss_after, "rss_now_kib": rss_now_kib, "wall": wall, "cpu": cpu,
                      "map_tie_aware": result.map_tie_aware, "map_index_order": result.map_index_order}))


def bench_memory(n_threads: int) -> None:
    import tempfile

    print(f"ImageNet100 size: {IMAGENET100}; evaluate(n_threads={n_threads}) in a fresh subprocess "
          "that only loads the int8 codes first")
    with tempfile.TemporaryDirectory() as folder:
        codes_path = os.path.join(folder, "codes.npz")
        query_codes, database_codes, query_labels, database_labels = make_codes(**IMAGENET100)
        np.savez(codes_path, query_codes=query_codes, database_codes=database_codes,
                 query_labels=query_labels, database_labels=database_labels)
        output = subprocess.run([sys.executable, os.path.abspath(__file__), "_memory_child",
                                 "--codes", codes_path, "--threads", str(n_threads)],
                                check=True, capture_output=True, text=True)
    report = json.loads(output.stdout.strip().splitlines()[-1])
    gib = 1024 ** 3
    traced = report["traced_peak_bytes"] / gib
    rss_growth = (report["rss_after_kib"] - report["rss_before_kib"]) * 1024 / gib
    print(f"  evaluate: {report['wall']:.2f} s wall, {report['cpu']:.2f} s CPU; MAP tie-aware "
          f"{report['map_tie_aware']:.6f}, index-order {report['map_index_order']:.6f}")
    print(f"  peak traced allocations during evaluate (tracemalloc): {traced:.3f} GiB")
    print(f"  peak RSS growth during evaluate (ru_maxrss after - before): {rss_growth:.3f} GiB; "
          f"process peak {report['rss_after_kib'] / 1024 ** 2:.3f} GiB incl. Python, NumPy, imports and "
          f"the inputs (resident just before evaluate: {report['rss_now_kib'] / 1024 ** 2:.3f} GiB)")
    print(f"  target < 2 GB peak: {'met' if max(traced, rss_growth) * gib < 2e9 else 'MISSED'}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["all", "speed", "memory", "_memory_child"])
    parser.add_argument("--naive-queries", type=int, default=500,
                        help="queries the naive evaluator runs (its time is extrapolated to all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="evaluate(n_threads=...) values to time (memory uses the first)")
    parser.add_argument("--codes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.what == "_memory_child":
        _memory_child(args.codes, args.threads[0])
        return
    if args.what in ("all", "speed"):
        bench_speed(args.naive_queries, args.threads)
    if args.what in ("all", "memory"):
        bench_memory(args.threads[0])


if __name__ == "__main__":
    main()
