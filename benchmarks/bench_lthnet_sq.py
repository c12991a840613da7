"""Why LTHNet_sq (the square loss of §6.6, eq. 15) fails on 100 classes at the reference-like settings:
per-variant MAP, its curve over the epochs and the state of the trained network, on synthetic data.

Data: ``datasets.synthetic.make_class_clusters(C, 220, 512, seed, noise)``; per class the first 200
items are the training set (20,000 items for C = 100) and the database, the last 20 the queries (a
held-out draw of the same clusters). Settings: 10 epochs, lr 1e-4, batch 128 (the LTHNet reference's
settings scale), RMSprop, weight decay 5e-4, per-step cosine annealing; k = 3 (``--k``), 64 bits.

    python benchmarks/bench_lthnet_sq.py [--classes 100 10] [--noise 7] [--k 3] [--no-meta-embedding]
        [--variants sq ce sq-mean ...]

Variants (``VARIANTS``): ``ce`` LTHNet (cross-entropy); ``sq`` LTHNet_sq as in eq. 15 (sum over the C
classes); ``sq-mean`` the mean over classes (= sum / C); ``sq-wd0`` eq. 15 without weight decay;
``sq-mean-wd0``; ``sq-zero-classifier`` eq. 15 with the classifier FC q -> C initialised to zero
(y_hat = 0 at the start); ``sq-lr1e-3``; ``sq-lr1e-5``. Columns: tie-aware MAP (final epoch), the MAP after
epochs 1, 2, 5, 10 (the trainer's diagnostic hook), the last epoch's mean loss, mean |h| of the relaxed
training codes, the share of bits with |h| > 0.9, the norm of the classifier weights, the training
accuracy of argmax y_hat and the number of distinct training codes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from benchmark.metrics import evaluate  # noqa: E402
from datasets.synthetic import make_class_clusters  # noqa: E402
from methods.lthnet import LTHNet, LTHNetSquare  # noqa: E402

SETTINGS = dict(settings="paper", n_epochs=10, learning_rate=1e-4, batch_size=128)

#: name -> (class, parameters on top of SETTINGS)
VARIANTS = {
    "ce": (LTHNet, {}),
    "sq": (LTHNetSquare, {}),
    "sq-mean": (LTHNetSquare, {"square_loss_reduction": "mean"}),
    "sq-wd0": (LTHNetSquare, {"weight_decay": 0.0}),
    "sq-mean-wd0": (LTHNetSquare, {"square_loss_reduction": "mean", "weight_decay": 0.0}),
    "sq-zero-classifier": (LTHNetSquare, {"classifier_init": "zeros"}),
    "sq-lr1e-3": (LTHNetSquare, {"learning_rate": 1e-3}),
    "sq-lr1e-5": (LTHNetSquare, {"learning_rate": 1e-5}),
}


def split(n_classes: int, noise: float, seed: int, n_train: int = 200, n_query: int = 20):
    X, y = make_class_clusters(n_classes, n_train + n_query, 512, seed, noise=noise)
    within = np.tile(np.arange(n_train + n_query), n_classes)
    train, query = within < n_train, within >= n_train
    return X[train], y[train], X[query], y[query]


def network_state(method, X, y) -> dict:
    """mean |h|, share |h| > 0.9, classifier norm, training accuracy, distinct codes."""
    with torch.no_grad():
        outputs = method.head_.eval()(torch.from_numpy(X))
    codes, logits = outputs["codes"], outputs["logits"]
    return {"mean_abs_h": float(codes.abs().mean()), "saturated": float((codes.abs() > 0.9).float().mean()),
            "classifier_norm": float(method.head_.classifier.weight.detach().norm()),
            "train_accuracy": float((logits.argmax(1).numpy() == y).mean()),
            "distinct_codes": int(np.unique(np.where(codes.numpy() >= 0, 1, -1), axis=0).shape[0])}


def run(variant: str, n_classes: int, noise: float, seed: int, threads: int, k: int = 3,
        use_meta_embedding: bool = True) -> dict:
    X, y, Xq, yq = split(n_classes, noise, seed)
    cls, params = VARIANTS[variant]
    method = cls(n_bits=64, random_state=seed, k=k, use_meta_embedding=use_meta_embedding, n_threads=threads,
                 **{**SETTINGS, **params})

    def diagnostic(encode):
        return evaluate(encode(Xq), encode(X), yq, y, pr_curve=False, precision_ks=()).map_tie_aware

    method.diagnostic_callback_ = diagnostic
    start = time.perf_counter()
    method.fit(X, y)
    seconds = time.perf_counter() - start - method.training_log_["diagnostic_seconds"]
    curve = {p["epoch"]: p["map"] for p in method.training_log_["query_map_diagnostic"]}
    final = evaluate(method.encode(Xq), method.encode(X), yq, y, pr_curve=False, precision_ks=()).map_tie_aware
    return {"variant": variant, "classes": n_classes, "map": final, "curve": curve,
            "loss": method.training_log_["loss"][-1], "fit_seconds": seconds, **network_state(method, X, y)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 10])
    parser.add_argument("--noise", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, default=3, help="DPP prototypes per class (0: centroids only)")
    parser.add_argument("--no-meta-embedding", action="store_true",
                        help="without the extended dynamic meta-embedding (the Fig. 5 ablation; 6x cheaper)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    print(f"# make_class_clusters(C, 220, 512, seed={args.seed}, noise={args.noise:g}): 200 train + 20 query "
          f"per class; {SETTINGS}; k={args.k}{', no meta-embedding' if args.no_meta_embedding else ''}, 64 bits; torch {torch.__version__}, {args.threads} threads")
    print("| C | variant | MAP | MAP ep 1/2/5/10 | last loss | mean abs h | share abs h > 0.9 | classifier norm "
          "| train acc | distinct codes | fit s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n_classes in args.classes:
        for variant in args.variants:
            r = run(variant, n_classes, args.noise, args.seed, args.threads, args.k, not args.no_meta_embedding)
            curve = "/".join(f"{r['curve'].get(e, float('nan')):.3f}" for e in (1, 2, 5, 10))
            print(f"| {n_classes} | {variant} | {r['map']:.4f} | {curve} | {r['loss']:.4f} | {r['mean_abs_h']:.3f} | "
                  f"{r['saturated']:.3f} | {r['classifier_norm']:.2f} | {r['train_accuracy']:.3f} | "
                  f"{r['distinct_codes']} | {r['fit_seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
