"""Fit/encode time and peak memory of every registered shallow method at CIFAR-100 IF=1 size.

Each method fits on synthetic class-clustered features (``datasets.synthetic.make_class_clusters``:
100 classes, 512 dimensions; 50,000 training items by default, 500 per class) at 64 bits, then
encodes 60,000 items (the training items plus 10,000 held-out items of the same classes, i.e. the
CIFAR-100 database + query). Every method runs in its own child process, so the peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in the child) is that method's alone; it includes the
data (60,000 x 512 float32 = 117 MiB) and the imported libraries, whose share is printed as the
"(data only)" baseline row.

    python benchmarks/bench_shallow.py [--methods FastHash SDH ...] [--n-train 50000] [--bits 64]
                                       [--n-encode 60000] [--timeout SECONDS] [--out table.md]

The default order runs FastHash (the slowest) first, then the other shallow methods in registry
order. Wall seconds and CPU seconds (user + system of the child) are both reported: on a shared
machine wall time depends on the load, CPU time much less. The children run with
``OMP_WAIT_POLICY=PASSIVE`` (unless set already): libgomp's default spin-waiting multiplies the CPU
cost of OpenMP code (scikit-learn's tree grower, torch) several times when other processes compete
for the two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

N_CLASSES = 100
DIM = 512
SLOW_FIRST = ("FastHash",)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def make_data(n_train: int, n_encode: int, seed: int = 0):
    """(train X, train y, encode X): class-major clusters; the first n_train/C items of each class train."""
    import numpy as np

    from datasets.synthetic import make_class_clusters

    per_class_train = -(-n_train // N_CLASSES)
    per_class = max(per_class_train, -(-n_encode // N_CLASSES))
    features, labels = make_class_clusters(N_CLASSES, per_class, DIM, seed=seed)
    within = np.tile(np.arange(per_class), N_CLASSES)
    train = np.flatnonzero(within < per_class_train)[:n_train]
    return features[train], labels[train], features[:n_encode]


def run_child(name: str, n_train: int, n_encode: int, bits: int) -> dict:
    """Runs inside the child process: fit + encode one method, return its measurements."""
    from methods.registry import get_method_class

    X_train, y_train, X_encode = make_data(n_train, n_encode)
    data_rss = _peak_rss_mib()
    record = {"method": name, "n_train": int(X_train.shape[0]), "n_encode": int(X_encode.shape[0]),
              "bits": bits, "data_peak_rss_mib": data_rss}
    if name == "(data only)":
        record.update(fit_s=0.0, fit_cpu_s=0.0, encode_s=0.0, encode_cpu_s=0.0, peak_rss_mib=data_rss)
        return record
    method = get_method_class(name)(n_bits=bits)
    start, cpu = time.perf_counter(), _cpu_seconds()
    method.fit(X_train, y_train if method.uses_labels else None)
    record["fit_s"], record["fit_cpu_s"] = time.perf_counter() - start, _cpu_seconds() - cpu
    start, cpu = time.perf_counter(), _cpu_seconds()
    codes = method.encode(X_encode)
    record["encode_s"], record["encode_cpu_s"] = time.perf_counter() - start, _cpu_seconds() - cpu
    if codes.shape != (X_encode.shape[0], bits):
        raise RuntimeError(f"{name} returned codes of shape {codes.shape}")
    record["bit_balance"] = float(abs(codes.mean(axis=0)).mean())  # 0 = balanced, 1 = constant bits
    record["peak_rss_mib"] = _peak_rss_mib()
    return record


def shallow_methods() -> list[str]:
    from methods.registry import registered_methods

    names = [n for n, cls in registered_methods().items() if getattr(cls, "family", None) == "shallow"]
    return [n for n in SLOW_FIRST if n in names] + [n for n in names if n not in SLOW_FIRST]


def format_row(r: dict) -> str:
    if "error" in r:
        return f"| {r['method']} | – | – | – | – | – | {r['error']} |"
    return (f"| {r['method']} | {r['fit_s']:.1f} | {r['fit_cpu_s']:.1f} | {r['encode_s']:.1f} | "
            f"{r['encode_cpu_s']:.1f} | {r['peak_rss_mib'] / 1024:.2f} | "
            f"{'' if 'bit_balance' not in r else 'mean abs bit mean %.2f' % r['bit_balance']} |")


HEADER = ("| method | fit wall s | fit CPU s | encode wall s | encode CPU s | peak RSS GiB | note |\n"
          "|---|---:|---:|---:|---:|---:|---|")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", help="method names (default: every registered shallow method)")
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-encode", type=int, default=60_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per method (default: none)")
    parser.add_argument("--out", help="also write the Markdown table here (rewritten after every method)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for option in ("n_train", "n_encode", "bits"):
        if getattr(args, option) <= 0:
            parser.error(f"--{option.replace('_', '-')} must be positive")

    if args.child:
        print("RESULT " + json.dumps(run_child(args.child, args.n_train, args.n_encode, args.bits)), flush=True)
        return 0

    names = ["(data only)"] + (args.methods or shallow_methods())
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    print(f"# shallow methods: {args.n_train} x {DIM} training features, {N_CLASSES} classes, {args.bits} bits, "
          f"encode {args.n_encode}; {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    rows = []
    for name in names:
        command = [sys.executable, os.path.abspath(__file__), "--child", name, "--n-train", str(args.n_train),
                   "--n-encode", str(args.n_encode), "--bits", str(args.bits)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout, cwd=ROOT)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                record = {"method": name, "error": f"failed (exit {done.returncode}): {tail[:150]}"}
            else:
                record = json.loads(lines[-1][len("RESULT "):])
        except subprocess.TimeoutExpired:
            record = {"method": name, "error": f"not finished within {args.timeout:.0f} s"}
        rows.append(record)
        print(format_row(record), flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                handle.write(HEADER + "\n" + "\n".join(format_row(r) for r in rows) + "\n")
    print()
    print(HEADER)
    for record in rows:
        print(format_row(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
