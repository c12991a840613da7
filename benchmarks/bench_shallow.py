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
                                       [--fasthash-engines reference numba] [--threads N]
                                       [--digits] [--no-cifar-size]

The default order runs FastHash (the slowest) first, then the other shallow methods in registry
order. Wall seconds and CPU seconds (user + system of the child) are both reported: on a shared
machine wall time depends on the load, CPU time much less. The children run with
``OMP_WAIT_POLICY=PASSIVE`` (unless set already): libgomp's default spin-waiting multiplies the CPU
cost of OpenMP code (scikit-learn's tree grower, torch) several times when other processes compete
for the two cores.

FastHash has two engines with the same model (``methods/fasthash.py``: ``engine='reference'``, the
scikit-learn grower + PyMaxflow, and ``'numba'``); ``--fasthash-engines reference numba`` runs both
side by side as rows ``FastHash[reference]`` and ``FastHash[numba]`` (and checks that their codes
agree), e.g. ``python benchmarks/bench_shallow.py --methods FastHash --fasthash-engines reference
numba --digits``. ``--digits`` adds FastHash's per-cell seconds on the offline digits dataset (the
default run's cells: IF 1/50/100 x 16/32/48 bits; fit on the long-tail training split, encode
query + database, as the runner does). ``--threads N`` limits every child's OpenMP/BLAS threads (as
the runner does for each of its parallel cells; FastHash follows it). A numba engine child first
fits a tiny model (loading or compiling its kernels) outside the timings; that time is the "warm-up".
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
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


def build_method(name: str, bits: int):
    """A method by row name; ``FastHash[numba]`` is FastHash with ``engine='numba'``."""
    from methods.registry import get_method_class

    base, _, engine = name.partition("[")
    method = get_method_class(base)(n_bits=bits)
    if engine:
        method.set_params(engine=engine.rstrip("]"))
    return method


def warm_up(name: str) -> float:
    """Seconds to fit a tiny model of a numba-engine FastHash (kernel loading or compilation); 0 otherwise."""
    if not name.startswith("FastHash") or name.endswith("[reference]"):
        return 0.0
    from datasets.synthetic import make_class_clusters

    X, y = make_class_clusters(4, 20, 8, seed=0)
    start = time.perf_counter()
    build_method(name, 4).set_params(n_trees=2, n_jobs=1).fit(X, y).encode(X)
    return time.perf_counter() - start


def run_child(name: str, n_train: int, n_encode: int, bits: int) -> dict:
    """Runs inside the child process: fit + encode one method, return its measurements."""
    X_train, y_train, X_encode = make_data(n_train, n_encode)
    data_rss = _peak_rss_mib()
    record = {"method": name, "n_train": int(X_train.shape[0]), "n_encode": int(X_encode.shape[0]),
              "bits": bits, "data_peak_rss_mib": data_rss}
    if name == "(data only)":
        record.update(fit_s=0.0, fit_cpu_s=0.0, encode_s=0.0, encode_cpu_s=0.0, peak_rss_mib=data_rss)
        return record
    record["warmup_s"] = warm_up(name)
    method = build_method(name, bits)
    start, cpu = time.perf_counter(), _cpu_seconds()
    method.fit(X_train, y_train if method.uses_labels else None)
    record["fit_s"], record["fit_cpu_s"] = time.perf_counter() - start, _cpu_seconds() - cpu
    start, cpu = time.perf_counter(), _cpu_seconds()
    codes = method.encode(X_encode)
    record["encode_s"], record["encode_cpu_s"] = time.perf_counter() - start, _cpu_seconds() - cpu
    if codes.shape != (X_encode.shape[0], bits):
        raise RuntimeError(f"{name} returned codes of shape {codes.shape}")
    record["bit_balance"] = float(abs(codes.mean(axis=0)).mean())  # 0 = balanced, 1 = constant bits
    record["codes_sha1"] = hashlib.sha1(codes.tobytes()).hexdigest()
    record["peak_rss_mib"] = _peak_rss_mib()
    return record


DIGITS_IF = (1, 50, 100)
DIGITS_BITS = (16, 32, 48)


def run_digits_child(name: str) -> dict:
    """Per-cell seconds of one FastHash engine on digits: fit on the long-tail training split,
    encode query + database (what the runner times per cell)."""
    import numpy as np

    from datasets import load_dataset, make_long_tail

    record = {"method": name, "warmup_s": warm_up(name), "cells": []}
    data = load_dataset("digits")
    for factor in DIGITS_IF:
        split = make_long_tail(data, factor, seed=0)
        X_train = np.asarray(split.features[split.train], dtype=np.float32)
        y_train = split.labels[split.train]
        X_encode = np.asarray(split.features[np.concatenate([split.query_index, split.database_index])],
                              dtype=np.float32)
        for bits in DIGITS_BITS:
            method = build_method(name, bits)
            start, cpu = time.perf_counter(), _cpu_seconds()
            method.fit(X_train, y_train)
            fit_s, fit_cpu = time.perf_counter() - start, _cpu_seconds() - cpu
            start = time.perf_counter()
            codes = method.encode(X_encode)
            record["cells"].append({"if": factor, "bits": bits, "n_train": int(X_train.shape[0]), "fit_s": fit_s,
                                    "fit_cpu_s": fit_cpu, "encode_s": time.perf_counter() - start,
                                    "codes_sha1": hashlib.sha1(codes.tobytes()).hexdigest()})
    return record


def shallow_methods() -> list[str]:
    from methods.registry import registered_methods

    names = [n for n, cls in registered_methods().items() if getattr(cls, "family", None) == "shallow"]
    return [n for n in SLOW_FIRST if n in names] + [n for n in names if n not in SLOW_FIRST]


def format_row(r: dict) -> str:
    if "error" in r:
        return f"| {r['method']} | – | – | – | – | – | {r['error']} |"
    notes = []
    if "bit_balance" in r:
        notes.append("mean abs bit mean %.2f" % r["bit_balance"])
    if r.get("warmup_s"):
        notes.append("warm-up %.1f s" % r["warmup_s"])
    if "codes_sha1" in r:
        notes.append("codes " + r["codes_sha1"][:10])
    return (f"| {r['method']} | {r['fit_s']:.1f} | {r['fit_cpu_s']:.1f} | {r['encode_s']:.1f} | "
            f"{r['encode_cpu_s']:.1f} | {r['peak_rss_mib'] / 1024:.2f} | {'; '.join(notes)} |")


DIGITS_HEADER = ("| engine | IF | bits | n train | fit wall s | fit CPU s | encode wall s | cell wall s | codes |\n"
                 "|---|---:|---:|---:|---:|---:|---:|---:|---|")


def format_digits(record: dict) -> list[str]:
    if "error" in record:
        return [f"| {record['method']} | – | – | – | – | – | – | – | {record['error']} |"]
    rows = [f"| {record['method']} | {c['if']} | {c['bits']} | {c['n_train']} | {c['fit_s']:.2f} | {c['fit_cpu_s']:.2f} | "
            f"{c['encode_s']:.2f} | {c['fit_s'] + c['encode_s']:.2f} | {c['codes_sha1'][:10]} |" for c in record["cells"]]
    total = sum(c["fit_s"] + c["encode_s"] for c in record["cells"])
    rows.append(f"| {record['method']} | all | | | | | | {total:.1f} | warm-up {record['warmup_s']:.1f} s |")
    return rows


def same_codes_note(records: list[dict]) -> str:
    """Whether rows of one method (different engines) produced the same codes."""
    hashes = {r["method"]: r["codes_sha1"] for r in records if "codes_sha1" in r and r["method"].startswith("FastHash")}
    if len(hashes) < 2:
        return ""
    return ("FastHash engines: identical codes" if len(set(hashes.values())) == 1
            else "FastHash engines: codes DIFFER " + str(hashes))


HEADER = ("| method | fit wall s | fit CPU s | encode wall s | encode CPU s | peak RSS GiB | note |\n"
          "|---|---:|---:|---:|---:|---:|---|")


def _run(command: list[str], env: dict, timeout, name: str) -> dict:
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"method": name, "error": f"failed (exit {done.returncode}): {tail[:150]}"}
        return json.loads(lines[-1][len("RESULT "):])
    except subprocess.TimeoutExpired:
        return {"method": name, "error": f"not finished within {timeout:.0f} s"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", help="method names (default: every registered shallow method)")
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-encode", type=int, default=60_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per method (default: none)")
    parser.add_argument("--out", help="also write the Markdown table here (rewritten after every method)")
    parser.add_argument("--fasthash-engines", nargs="+", choices=("auto", "numba", "reference"),
                        help="run FastHash once per engine (rows FastHash[engine]) instead of once as registered")
    parser.add_argument("--threads", type=int, help="OpenMP/BLAS thread limit of every child (threadpoolctl)")
    parser.add_argument("--digits", action="store_true", help="also FastHash's per-cell seconds on digits")
    parser.add_argument("--no-cifar-size", action="store_true", help="skip the CIFAR-100-size rows")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--digits-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for option in ("n_train", "n_encode", "bits", "threads"):
        if getattr(args, option) is not None and getattr(args, option) <= 0:
            parser.error(f"--{option.replace('_', '-')} must be positive")

    if args.child or args.digits_child:
        limit = contextlib.nullcontext()
        if args.threads:
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(limits=args.threads)
        with limit:
            record = (run_child(args.child, args.n_train, args.n_encode, args.bits) if args.child
                      else run_digits_child(args.digits_child))
        print("RESULT " + json.dumps(record), flush=True)
        return 0

    names = args.methods or shallow_methods()
    if args.fasthash_engines:
        names = [e for n in names for e in ([f"FastHash[{engine}]" for engine in args.fasthash_engines]
                                            if n == "FastHash" else [n])]
    names = ["(data only)"] + names
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    rows = []
    if not args.no_cifar_size:
        print(f"# shallow methods: {args.n_train} x {DIM} training features, {N_CLASSES} classes, {args.bits} bits, "
              f"encode {args.n_encode}; {os.cpu_count()} CPUs, Python {platform.python_version()}"
              f"{'' if args.threads is None else f', {args.threads} thread(s) per child'}", flush=True)
        for name in names:
            command = [sys.executable, os.path.abspath(__file__), "--child", name, "--n-train", str(args.n_train),
                       "--n-encode", str(args.n_encode), "--bits", str(args.bits)] + threads
            record = _run(command, env, args.timeout, name)
            rows.append(record)
            print(format_row(record), flush=True)
            if args.out:
                with open(args.out, "w") as handle:
                    handle.write(HEADER + "\n" + "\n".join(format_row(r) for r in rows) + "\n")
        print()
        print(HEADER)
        for record in rows:
            print(format_row(record))
        note = same_codes_note(rows)
        if note:
            print("\n" + note)
    if args.digits:
        engines = [n for n in names if n.startswith("FastHash")] or ["FastHash"]
        print(f"\n# FastHash on digits, per cell (IF {'/'.join(map(str, DIGITS_IF))} x "
              f"{'/'.join(map(str, DIGITS_BITS))} bits)\n")
        digit_rows = [_run([sys.executable, os.path.abspath(__file__), "--digits-child", name] + threads, env,
                           args.timeout, name) for name in engines]
        print(DIGITS_HEADER)
        for record in digit_rows:
            print("\n".join(format_digits(record)))
        hashes = [tuple(c["codes_sha1"] for c in r["cells"]) for r in digit_rows if "cells" in r]
        if len(hashes) > 1:
            print("\nFastHash engines on digits: " + ("identical codes in every cell" if len(set(hashes)) == 1
                                                      else "codes DIFFER"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
