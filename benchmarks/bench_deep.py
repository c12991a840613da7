"""Speed of the shared deep trainer in features mode, and the validation study behind
``settings="features"``.

Speed (training steps per second on this CPU, LTHNet k=3, 64 bits, CIFAR-100 IF=1 size:
50,000 x 512 synthetic features, 100 classes)::

    python benchmarks/bench_deep.py speed [--steps 300] [--batch-sizes 8 32] [--threads N]

It times N optimisation steps (after a warm-up) and one memory rebuild (the per-epoch pass over
the whole training set plus the DPP), then extrapolates a full 100-epoch run.

Validation (never the query set: a stratified part of the *training* split is held out as
validation queries; the rest is both the training set and the retrieval database)::

    python benchmarks/bench_deep.py validate [--imbalance-factor 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from methods._deep import DeepTrainer  # noqa: E402
from methods.lthnet import LTHNet  # noqa: E402


# ----------------------------------------------------------------------------- speed

def bench_speed(n_steps: int, batch_sizes: list[int], n_threads: int | None) -> None:
    from datasets.synthetic import make_class_clusters

    if n_threads:
        torch.set_num_threads(n_threads)
    X, y = make_class_clusters(100, 500, 512, seed=0, noise=1.0)
    print(f"data {X.shape}, {len(np.unique(y))} classes, torch threads {torch.get_num_threads()}")
    for batch_size in batch_sizes:
        method = LTHNet(n_bits=64, k=3, batch_size=batch_size, n_epochs=1)
        method.n_classes_ = 100
        settings = method.resolved_settings()
        generator = method._generator()
        with method._torch_context(torch.device("cpu")):
            torch.manual_seed(0)
            trainer = DeepTrainer(method, X, y, settings, torch.device("cpu"), generator)
            method.on_fit_start(trainer)
            start = time.perf_counter()
            method.on_epoch_start(0, trainer)  # memory: forward_all + centroids + DPP
            memory_seconds = time.perf_counter() - start
            batches = trainer._epoch_batches()

            def step():
                inputs, index = next(batches)
                labels = trainer.train_labels.index_select(0, index)
                loss = method.loss(trainer.head(inputs), labels, index)
                trainer.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                trainer.optimizer.step()
                trainer.scheduler.step()
                return loss.detach()

            for _ in range(20):
                step()
            start = time.perf_counter()
            total = torch.zeros(())
            for _ in range(n_steps):
                total += step()
            total.item()
            seconds = time.perf_counter() - start
        steps_per_second = n_steps / seconds
        steps_per_epoch = math.ceil(len(y) / batch_size)
        epoch_seconds = steps_per_epoch / steps_per_second + memory_seconds
        print(f"batch {batch_size:4d}: {steps_per_second:8.1f} steps/s ({batch_size * steps_per_second:9.0f} "
              f"samples/s); memory rebuild {memory_seconds:.2f} s; epoch ~{epoch_seconds / 60:.1f} min; "
              f"100 epochs ~{100 * epoch_seconds / 3600:.1f} h")


# ----------------------------------------------------------------------------- validation

def hamming_map(query_codes, database_codes, query_labels, database_labels) -> float:
    """Plain MAP over the full Hamming ranking (stable order on ties)."""
    n_bits = query_codes.shape[1]
    distances = 0.5 * (n_bits - query_codes.astype(np.float32) @ database_codes.astype(np.float32).T)
    aps = []
    for i in range(len(query_codes)):
        order = np.argsort(distances[i], kind="stable")
        relevant = database_labels[order] == query_labels[i]
        if not relevant.any():
            continue
        hits = np.cumsum(relevant)
        aps.append(np.mean(hits[relevant] / (np.flatnonzero(relevant) + 1)))
    return float(np.mean(aps))


def validation_split(labels: np.ndarray, fraction: float, seed: int):
    """Stratified hold-out of the training split: ~fraction of each class (none from 1-item classes)."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_held = int(round(fraction * len(rows))) if len(rows) > 1 else 0
        held.extend(rows[:max(n_held, 1 if len(rows) > 1 else 0)])
    held = np.sort(np.asarray(held, dtype=np.int64))
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


VALIDATION_GRID = [
    ("paper: rmsprop lr1e-5 bs8 100ep", dict(settings="paper")),
    ("rmsprop lr1e-5 bs8 30ep", dict(settings="paper", n_epochs=30)),
    ("rmsprop lr1e-4 bs8 30ep", dict(settings="paper", learning_rate=1e-4, n_epochs=30)),
    ("rmsprop lr1e-4 bs32 30ep", dict(settings="paper", learning_rate=1e-4, batch_size=32, n_epochs=30)),
    ("rmsprop lr1e-3 bs64 30ep", dict(settings="paper", learning_rate=1e-3, batch_size=64, n_epochs=30)),
]


def validate(imbalance_factor: float, n_threads: int, bits: int, only: list[int] | None) -> None:
    from datasets import load_dataset, make_long_tail

    data = load_dataset("synthetic", n_classes=20, query_per_class=20, database_per_class=100, dim=512,
                        noise=3.0)
    data = make_long_tail(data, imbalance_factor, seed=0)
    X_train, y_train = data.subset(data.train)
    kept, held = validation_split(y_train, 0.2, seed=1)
    print(f"training split {len(y_train)} items (IF={imbalance_factor}); fit on {len(kept)}, "
          f"validate {len(held)} held-out queries against the {len(kept)} kept items")
    print("| setting | k | validation MAP | final-epoch loss | fit seconds |")
    print("|---|---|---|---|---|")
    for row, (label, params) in enumerate(VALIDATION_GRID):
        if only and row not in only:
            continue
        for k in (0, 3):
            start = time.perf_counter()
            method = LTHNet(n_bits=bits, k=k, n_threads=n_threads, **params).fit(X_train[kept], y_train[kept])
            seconds = time.perf_counter() - start
            score = hamming_map(method.encode(X_train[held]), method.encode(X_train[kept]), y_train[held],
                                y_train[kept])
            print(f"| {label} | {k} | {score:.4f} | {method.training_log_['loss'][-1]:.4f} | {seconds:.0f} |",
                  flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed")
    speed.add_argument("--steps", type=int, default=300)
    speed.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    speed.add_argument("--threads", type=int, default=None)
    val = sub.add_parser("validate")
    val.add_argument("--imbalance-factor", type=float, default=10.0)
    val.add_argument("--threads", type=int, default=1)
    val.add_argument("--bits", type=int, default=64)
    val.add_argument("--only", type=int, nargs="*", default=None, help="rows of VALIDATION_GRID to run")
    args = parser.parse_args(argv)
    if args.command == "speed":
        bench_speed(args.steps, args.batch_sizes, args.threads)
    else:
        validate(args.imbalance_factor, args.threads, args.bits, args.only)


if __name__ == "__main__":
    main()
