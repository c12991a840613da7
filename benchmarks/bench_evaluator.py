"""Speed and memory of the evaluator (benchmark/metrics.py) at the paper's dataset sizes and beyond,
as ratios to a naive per-query argsort evaluator and to a compiled floor that only counts.

Speed, CIFAR-100 size (10,000 queries x 50,000 database items, 64 bits, 100 classes)::

    python benchmarks/bench_evaluator.py speed [--naive-queries 500] [--threads 1 2] [--repeats 3]

times, in one run, side by side:

* ``naive``: a straightforward evaluator written below (per query: Hamming distances by a dot
  product, a stable argsort of the whole database, AP from the ranked relevance; index-order AP
  only), run on the first ``--naive-queries`` queries and extrapolated linearly to all (each query
  costs the same: one sort of the whole database);
* ``floor``: the least any exact evaluator must do, compiled (numba, written below): per (query,
  item) an XOR, a popcount and one increment of a histogram keyed by (distance, relevance); it
  computes no metric at all. The evaluator's kernel may run below it: it walks the database in
  segments between the query's relevant items, so its inner loop tests no label, and it counts into
  two interleaved histograms (benchmark/_metrics_kernel.py);
* ``evaluate_packed`` on both backends, MAP only (both tie policies, ``precision_ks=()``,
  ``pr_curve=False``) and with the default options (+ precision@100/1000 + PR curve), and
  ``evaluate`` from the {-1,+1} codes (+ checking and packing them);

and prints the ratio table: naive / evaluator (target >= 50x), evaluator / floor (target <= 1.5x),
NumPy path / compiled path. It asserts that the backends give the same per-query AP under both tie
policies (atol 1e-12) and that the index-order AP equals the naive one on its queries. Each timing
is the best of ``--repeats`` runs (the naive one runs once).

Memory, ImageNet100 size (5,000 x 128,503, 64 bits, 100 classes), and one million items
(1,000 queries x 1,000,000 items, 64 bits, 100 classes)::

    python benchmarks/bench_evaluator.py memory
    python benchmarks/bench_evaluator.py million

run ``evaluate`` in a fresh subprocess per backend and report time, the peak of traced NumPy/Python
allocations (tracemalloc) and the growth of the process's peak resident set (ru_maxrss). Target:
< 2 GB.

First-call cost of the compiled kernel (numba compiles it once, then loads it from its cache)::

    python benchmarks/bench_evaluator.py compile

times ``_load_kernel`` in a fresh process with an empty numba cache, then again with the cache
that run wrote.

``python benchmarks/bench_evaluator.py`` runs all four; ``--json PATH`` also writes the figures.
Codes are class-structured (each item is its class's random centre code with every bit flipped
with probability 0.25), so MAP is neither 0 nor 1 and Hamming distances tie heavily, as with learned
codes. Timings on a machine shared with other work are indicative only; the load average at the
start is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from benchmark import metrics  # noqa: E402
from benchmark.metrics import evaluate, evaluate_packed, pack_codes  # noqa: E402

CIFAR100 = dict(n_queries=10_000, n_database=50_000, n_bits=64, n_classes=100)
IMAGENET100 = dict(n_queries=5_000, n_database=128_503, n_bits=64, n_classes=100)
MILLION = dict(n_queries=1_000, n_database=1_000_000, n_bits=64, n_classes=100)


def make_codes(n_queries, n_database, n_bits, n_classes, flip=0.25, seed=0):
    """Class-structured {-1,+1} int8 codes and balanced labels (query and database)."""
    rng = np.random.default_rng(seed)
    centres = np.where(rng.random((n_classes, n_bits)) < 0.5, 1, -1).astype(np.int8)

    def draw(n):
        labels = rng.permutation(np.arange(n) % n_classes)
        codes = centres[labels]
        for start in range(0, n, 100_000):  # bounded temporaries at a million items
            block = codes[start:start + 100_000]
            block *= np.where(rng.random(block.shape) < flip, -1, 1).astype(np.int8)
        return codes, labels

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


def _floor_kernel():
    """The compiled floor: XOR, popcount and one histogram increment per (query, item), nothing else."""
    import numba

    from benchmark._metrics_kernel import popcount64

    @numba.njit(parallel=True, cache=True)
    def floor_histograms(query_words, query_class, database_words, database_class, histogram):
        """histogram[q, 2 * d + r] += 1 for each database item at distance d (r: same class)."""
        for q in numba.prange(query_words.shape[0]):
            word, label, row = query_words[q], query_class[q], histogram[q]
            for j in range(database_words.shape[0]):
                row[2 * popcount64(word ^ database_words[j]) + (database_class[j] == label)] += 1

    return floor_histograms


def _best_of(repeats, function, *args, **kwargs):
    """(value, best wall-clock seconds, CPU seconds of that run) over ``repeats`` calls."""
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        value = function(*args, **kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[1]:
            best = (value, wall, cpu)
    return best


def bench_speed(naive_queries: int, thread_counts: list[int], repeats: int) -> dict:
    import numba

    print(f"CIFAR-100 size: {CIFAR100}; numpy {np.__version__}, numba {numba.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (shared machine: "
          "indicative only)")
    query_codes, database_codes, query_labels, database_labels = make_codes(**CIFAR100)
    packed_query, packed_database = pack_codes(query_codes), pack_codes(database_codes)
    n_queries, n_bits = len(query_codes), CIFAR100["n_bits"]
    packed_args = (packed_query, packed_database, query_labels, database_labels)
    map_only = dict(n_bits=n_bits, precision_ks=(), pr_curve=False)
    floor = _floor_kernel()
    # the floor's inputs, prepared outside its timing: one uint64 word per code, class ids
    classes, class_ids = np.unique(np.concatenate([database_labels, query_labels]), return_inverse=True)
    floor_args = (np.ascontiguousarray(packed_query.view(np.uint64)[:, 0]),
                  class_ids[len(database_labels):].astype(np.int64),
                  np.ascontiguousarray(packed_database.view(np.uint64)[:, 0]),
                  class_ids[:len(database_labels)].astype(np.int64))
    histogram = np.zeros((n_queries, 2 * (n_bits + 1)), dtype=np.int64)
    floor(*(array[:2] for array in floor_args), histogram[:2])  # compile (or load) before timing
    for backend in ("numba", "numpy"):  # warm-up
        evaluate_packed(packed_query[:50], packed_database, query_labels[:50], database_labels,
                        backend=backend, **map_only)

    subset = min(naive_queries, n_queries)
    wall = time.perf_counter()
    naive_ap = naive_index_order_ap(query_codes[:subset], database_codes, query_labels[:subset], database_labels)
    naive_wall = (time.perf_counter() - wall) * n_queries / subset
    print(f"  naive per-query stable argsort, index-order AP only: {naive_wall:.1f} s for all {n_queries} "
          f"queries (measured on {subset}, extrapolated x{n_queries / subset:g})")

    rows, figures = [], {"size": CIFAR100, "naive_s": naive_wall, "threads": {}}
    for n_threads in thread_counts:
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))

        def run_floor():
            histogram.fill(0)
            floor(*floor_args, histogram)
            return histogram

        counted, floor_wall, _ = _best_of(repeats, run_floor)
        relevant_per_class = np.bincount(floor_args[3], minlength=len(classes))
        assert np.all(counted.sum(axis=1) == len(database_labels))
        assert np.all(counted[:, 1::2].sum(axis=1) == relevant_per_class[floor_args[1]])
        timed = {"floor": floor_wall}
        results = {}
        for backend in ("numba", "numpy"):
            results[backend], timed[f"{backend} MAP"], _ = _best_of(
                repeats, evaluate_packed, *packed_args, n_threads=n_threads, backend=backend, **map_only)
            _, timed[f"{backend} all"], _ = _best_of(repeats, evaluate_packed, *packed_args, n_bits=n_bits,
                                                     n_threads=n_threads, backend=backend)
        _, timed["numba all, from +-1 codes"], _ = _best_of(repeats, evaluate, query_codes, database_codes,
                                                            query_labels, database_labels, n_threads=n_threads)
        compiled, reference = results["numba"], results["numpy"]
        tie_gap = float(np.abs(compiled.ap_tie_aware - reference.ap_tie_aware).max())
        index_gap = float(np.abs(compiled.ap_index_order - reference.ap_index_order).max())
        naive_gap = float(np.abs(compiled.ap_index_order[:subset] - naive_ap).max())
        assert max(tie_gap, index_gap, naive_gap) <= 1e-12, (tie_gap, index_gap, naive_gap)
        figures["threads"][n_threads] = dict(seconds=timed, max_ap_difference_numba_numpy=dict(
            tie_aware=tie_gap, index_order=index_gap), max_ap_difference_naive=naive_gap,
            map_tie_aware=compiled.map_tie_aware, map_index_order=compiled.map_index_order)
        rows.append((n_threads, timed, tie_gap, index_gap, naive_gap))
        print(f"  threads={n_threads}: " + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in timed.items()))
        print(f"    MAP tie-aware {compiled.map_tie_aware:.6f}, index-order {compiled.map_index_order:.6f}; "
              f"max |AP numba - AP numpy| tie-aware {tie_gap:.1e}, index-order {index_gap:.1e}; "
              f"max |AP - naive AP| on {subset} queries {naive_gap:.1e}")

    print("\n  ratio table (wall-clock, best of %d; MAP = both tie policies, nothing else)" % repeats)
    print("  | threads | naive / numba MAP (>= 50x) | numba MAP / floor (<= 1.5x) | numba all / floor "
          "| numpy MAP / numba MAP | numpy all / numba all |")
    print("  |---|---|---|---|---|---|")
    for n_threads, timed, *_ in rows:
        print(f"  | {n_threads} | {naive_wall / timed['numba MAP']:.0f}x | {timed['numba MAP'] / timed['floor']:.2f}x "
              f"| {timed['numba all'] / timed['floor']:.2f}x | {timed['numpy MAP'] / timed['numba MAP']:.1f}x "
              f"| {timed['numpy all'] / timed['numba all']:.1f}x |")
    return figures


def _memory_child(codes_path: str, n_threads: int, backend: str) -> None:
    """Run in a fresh process: evaluate the saved codes, print time and peaks as JSON."""
    import tracemalloc

    with np.load(codes_path) as saved:
        arrays = [saved[name] for name in ("query_codes", "database_codes", "query_labels", "database_labels")]
    evaluate(arrays[0][:2], arrays[1][:2], arrays[2][:2], arrays[3][:2], backend=backend)  # compile / load
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as statm:  # current resident set before the call
        rss_now_kib = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate(*arrays, n_threads=n_threads, backend=backend)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"traced_peak_bytes": traced_peak, "rss_before_kib": rss_before,
                      "rss_after_kib": rss_after, "rss_now_kib": rss_now_kib, "wall": wall, "cpu": cpu,
                      "map_tie_aware": result.map_tie_aware, "map_index_order": result.map_index_order}))


def bench_memory(size: dict, label: str, n_threads: int) -> dict:
    print(f"{label} size: {size}; evaluate(n_threads={n_threads}) in a fresh subprocess per backend that "
          f"only loads the int8 codes first; load average {os.getloadavg()[0]:.1f}")
    figures = {"size": size}
    gib = 1024 ** 3
    with tempfile.TemporaryDirectory() as folder:
        codes_path = os.path.join(folder, "codes.npz")
        query_codes, database_codes, query_labels, database_labels = make_codes(**size)
        np.savez(codes_path, query_codes=query_codes, database_codes=database_codes,
                 query_labels=query_labels, database_labels=database_labels)
        del query_codes, database_codes
        for backend in ("numba", "numpy"):
            output = subprocess.run([sys.executable, os.path.abspath(__file__), "_memory_child", "--codes",
                                     codes_path, "--threads", str(n_threads), "--backend", backend],
                                    check=True, capture_output=True, text=True)
            report = json.loads(output.stdout.strip().splitlines()[-1])
            traced = report["traced_peak_bytes"] / gib
            rss_growth = (report["rss_after_kib"] - report["rss_before_kib"]) * 1024 / gib
            figures[backend] = dict(report, traced_peak_gib=traced, rss_growth_gib=rss_growth)
            print(f"  {backend}: {report['wall']:.2f} s wall, {report['cpu']:.2f} s CPU; MAP tie-aware "
                  f"{report['map_tie_aware']:.6f}, index-order {report['map_index_order']:.6f}; peak traced "
                  f"allocations {traced:.3f} GiB, peak RSS growth {rss_growth:.3f} GiB (process peak "
                  f"{report['rss_after_kib'] / 1024 ** 2:.3f} GiB incl. Python, NumPy, numba, imports and the "
                  f"inputs; resident just before evaluate: {report['rss_now_kib'] / 1024 ** 2:.3f} GiB); "
                  f"target < 2 GB: {'met' if max(traced, rss_growth) * gib < 2e9 else 'MISSED'}")
    return figures


def bench_compile() -> dict:
    """First-call cost: compile into an empty numba cache, then load from it, each in a fresh process."""
    code = ("import time; t0 = time.perf_counter(); from benchmark import metrics; t1 = time.perf_counter(); "
            "import numba; t2 = time.perf_counter(); k, reason = metrics._load_kernel(); "
            "assert k is not None, reason; t3 = time.perf_counter(); print(t1 - t0, t2 - t1, t3 - t2)")
    figures = {}
    print(f"First call of the compiled evaluator, each in a fresh process; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=os.path.abspath(ROOT))
        for name in ("empty numba cache (compiles)", "cache written by the run before (loads)"):
            output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                    env=env, cwd=os.path.abspath(ROOT))
            parts = [float(value) for value in output.stdout.strip().splitlines()[-1].split()]
            figures[name] = dict(zip(("import_benchmark_metrics_s", "import_numba_s", "kernel_s"), parts))
            print(f"  {name}: import benchmark.metrics {parts[0]:.2f} s, import numba {parts[1]:.2f} s, "
                  f"kernel compile or load + first call {parts[2]:.2f} s")
    return figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all",
                        choices=["all", "speed", "memory", "million", "compile", "_memory_child"])
    parser.add_argument("--naive-queries", type=int, default=500,
                        help="queries the naive evaluator runs (its time is extrapolated to all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to time (memory and million use the first)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per evaluator (the best counts)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--codes", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.what == "_memory_child":
        _memory_child(args.codes, args.threads[0], args.backend)
        return
    figures = {"command": "python benchmarks/bench_evaluator.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "load_average_at_start": os.getloadavg()[0], "cpus": os.cpu_count()}
    if args.what in ("all", "compile"):
        figures["first_call_s"] = bench_compile()
    if args.what in ("all", "speed"):
        figures["speed"] = bench_speed(args.naive_queries, args.threads, args.repeats)
    if args.what in ("all", "memory"):
        figures["memory_imagenet100"] = bench_memory(IMAGENET100, "ImageNet100", args.threads[0])
    if args.what in ("all", "million"):
        figures["memory_million"] = bench_memory(MILLION, "One million items", args.threads[0])
    if args.json:
        from common.io import atomic_write

        atomic_write(args.json, json.dumps(figures, indent=2, default=float) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
