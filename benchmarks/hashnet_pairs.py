"""How many similar pairs HashNet's loss sees per training batch on CIFAR-100's long-tail class sizes
(Table 2: IF 1, 50, 100), under three pairings: within one batch (the old pairing), between two
independently drawn batches (the reference's, thuml/HashNet train.py), and against the memory bank of
all training items (methods/hashnet.py now).

Batches are the shared trainer's: a permutation per epoch from the generator HashNet seeds with
``random_state`` (the second batch from a second permutation of the same generator); the masks are
``methods.hashnet.pair_weights``, those of the loss (ordered pairs, self-pairs excluded). Per
(IF, batch size, pairing): the share of batches whose pairs include no similar pair and the mean
number of similar pairs per batch. Labels only: no features, no training; the numbers depend only on
the seed, not on the machine.

    python benchmarks/hashnet_pairs.py [--batch-sizes 8 32] [--epochs 1] [--out benchmarks/results/hashnet_pairs.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.io import atomic_write  # noqa: E402
from datasets.cifar100 import CIFAR100_PROTOCOL  # noqa: E402
from datasets.longtail import long_tail_class_sizes  # noqa: E402
from methods.hashnet import HashNet, pair_weights  # noqa: E402

PAIRINGS = ("in_batch", "second_batch", "memory_bank")
#: batches per setting whose memory-bank count is also taken from the loss's masks (pair_weights)
CHECKED_BANK_BATCHES = 50
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "hashnet_pairs.json")


def cifar100_training_labels(imbalance_factor: float) -> np.ndarray:
    """The labels of CIFAR-100's long-tail training split at ``imbalance_factor`` (Table 2 sizes:
    500 database items per class, the CIFAR-100 protocol's s_1 and mu), class-major."""
    database_labels = np.repeat(np.arange(100), 500)
    sizes, _, _ = long_tail_class_sizes(database_labels, 100, imbalance_factor, CIFAR100_PROTOCOL)
    return np.repeat(np.arange(100), sizes)


def similar_pairs_per_batch(labels: np.ndarray, batch_size: int, n_epochs: int = 1,
                            random_state: int = 0) -> dict[str, np.ndarray]:
    """Pairing -> the number of similar pairs of every training batch (``n_epochs`` epochs of the
    trainer's batches; "second_batch": batch b of a second permutation of the same generator)."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    n = labels.numel()
    class_sizes = torch.bincount(labels)
    generator = HashNet(random_state=random_state)._generator()  # the trainer's batch generator
    counts: dict[str, list[float]] = {name: [] for name in PAIRINGS}
    for _ in range(n_epochs):
        order = torch.randperm(n, generator=generator)
        second = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            other = second[start:start + batch_size]
            batch = labels[rows]
            counts["in_batch"].append(pair_weights(batch, batch, torch.arange(rows.numel()))[0].sum().item())
            counts["second_batch"].append(pair_weights(batch, labels[other])[0].sum().item())
            # against the bank every item meets its classmates: sum of (class size - 1), checked
            # against the loss's masks on the first batches (the full masks are n_train wide)
            bank = float((class_sizes[batch] - 1).sum())
            if len(counts["memory_bank"]) < CHECKED_BANK_BATCHES:
                masked = pair_weights(batch, labels, rows)[0].sum().item()
                if masked != bank:
                    raise AssertionError(f"memory-bank pairs {masked} from pair_weights != {bank} from the class sizes")
            counts["memory_bank"].append(bank)
    return {name: np.asarray(values) for name, values in counts.items()}


def measure(imbalance_factors: list[float], batch_sizes: list[int], n_epochs: int, random_state: int) -> list[dict]:
    rows = []
    for factor in imbalance_factors:
        labels = cifar100_training_labels(factor)
        sizes = np.bincount(labels)
        for batch_size in batch_sizes:
            counts = similar_pairs_per_batch(labels, batch_size, n_epochs, random_state)
            for pairing, values in counts.items():
                rows.append({
                    "imbalance_factor": factor, "n_train": int(labels.size), "n_max": int(sizes.max()),
                    "n_min": int(sizes.min()), "batch_size": batch_size, "pairing": pairing,
                    "n_batches": int(values.size),
                    "share_without_similar_pair": round(float(np.mean(values == 0)), 4),
                    "mean_similar_pairs": round(float(values.mean()), 2),
                })
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| IF | n_train | batch | pairing | batches | share without a similar pair | similar pairs per batch |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['imbalance_factor']:g} | {row['n_train']} | {row['batch_size']} | {row['pairing']} | "
                     f"{row['n_batches']} | {row['share_without_similar_pair']:.3f} | {row['mean_similar_pairs']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imbalance-factors", type=float, nargs="+", default=[1.0, 50.0, 100.0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=1, help="epochs of batches counted per setting")
    parser.add_argument("--random-state", type=int, default=0, help="HashNet's random_state (the batch order)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON file of the rows ('' to skip)")
    args = parser.parse_args(argv)
    rows = measure(args.imbalance_factors, args.batch_sizes, args.epochs, args.random_state)
    print(table(rows), flush=True)
    if args.out:
        document = {"command": " ".join(["python benchmarks/hashnet_pairs.py", *(argv if argv is not None else sys.argv[1:])]),
                    "description": __doc__.split("\n\n")[0].replace("\n", " "), "rows": rows}
        atomic_write(args.out, json.dumps(document, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
