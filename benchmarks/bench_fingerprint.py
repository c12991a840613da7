"""Cost of ``BenchmarkData.fingerprint()`` (datasets/manifest.py) at CIFAR-100 and ImageNet100 size.

Synthetic float32 features of the real sizes (CIFAR-100: 10,000 queries + 50,000 database rows;
ImageNet100: 5,000 + 128,503, both 512-d) with CIFAR-100's balanced and ImageNet100's uneven class
counts; one long-tail split per IF (1, 50, 100) under each dataset's protocol. Reported per dataset:
the first split's fingerprint (hashes the query and database rows: the dominant cost), each later
split's (shares that row hash through ``with_train``: only index lists), a repeated call (cached),
and the cost of drawing the split itself for comparison. Wall seconds; on a shared machine they
depend on the load.

    python benchmarks/bench_fingerprint.py [--repeats 3] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets import BenchmarkData, make_long_tail  # noqa: E402
from datasets.cifar100 import CIFAR100_PROTOCOL  # noqa: E402
from datasets.imagenet100 import IMAGENET100_PROTOCOL  # noqa: E402


def synthetic(name: str) -> BenchmarkData:
    rng = np.random.default_rng(0)
    if name == "cifar100":
        query_counts, database_counts, protocol = np.full(100, 100), np.full(100, 500), CIFAR100_PROTOCOL
    else:  # ImageNet100: 50 queries per class, 1,029..1,300 database images per class, 128,503 in all
        database_counts = np.full(100, 1300)
        database_counts[:100] -= np.linspace(0, 271, 100).astype(int)
        database_counts[0] += 128_503 - database_counts.sum()
        query_counts, protocol = np.full(100, 50), IMAGENET100_PROTOCOL
    labels = np.concatenate([np.repeat(np.arange(100), query_counts), np.repeat(np.arange(100), database_counts)])
    n_query = int(query_counts.sum())
    features = rng.random((labels.size, 512), dtype=np.float32)
    return BenchmarkData(name=name, features=features, labels=labels.astype(np.int64),
                         query_index=np.arange(n_query), database_index=np.arange(n_query, labels.size),
                         class_names=tuple(str(c) for c in range(100)), long_tail_protocol=protocol)


def measure(name: str, repeats: int) -> dict:
    best = {"first_split_s": np.inf, "later_split_s": np.inf, "cached_call_s": np.inf, "draw_split_s": np.inf}
    for _ in range(repeats):
        data = synthetic(name)
        started = time.perf_counter()
        splits = [make_long_tail(data, factor) for factor in (1, 50, 100)]
        best["draw_split_s"] = min(best["draw_split_s"], (time.perf_counter() - started) / 3)
        started = time.perf_counter()
        splits[0].fingerprint()
        best["first_split_s"] = min(best["first_split_s"], time.perf_counter() - started)
        started = time.perf_counter()
        splits[1].fingerprint(), splits[2].fingerprint()
        best["later_split_s"] = min(best["later_split_s"], (time.perf_counter() - started) / 2)
        started = time.perf_counter()
        splits[0].fingerprint()
        best["cached_call_s"] = min(best["cached_call_s"], time.perf_counter() - started)
    return {"rows": int(data.features.shape[0]), "dim": 512, "mib": round(data.features.nbytes / 2**20, 1),
            **{key: round(value, 4) for key, value in best.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = {"machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}, "
                          f"numpy {np.__version__}",
               "command": "python benchmarks/bench_fingerprint.py --repeats %d" % args.repeats,
               "datasets": {name: measure(name, args.repeats) for name in ("cifar100", "imagenet100")}}
    print(json.dumps(results, indent=1))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
