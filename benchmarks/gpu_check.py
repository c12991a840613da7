"""The GPU check: one prepared command for a lent CUDA machine (at most ~5 minutes), measuring
features-mode deep training (cells per minute on the CIFAR-100-sized synthetic grid) and
fine-tuning throughput (ResNet34 at 224 px, images/s at batch 8 and 64, bf16 autocast,
channels-last), printed as a short table and written as JSON.

Runs from the working tree without installing anything (it imports neither dask nor PyMaxflow):

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu_check.json            # on the GPU machine
    python benchmarks/gpu_check.py --quick --device cpu --out /tmp/gpu.json        # the CPU smoke form (CI)

Features mode: every deep row of the table (the registry's deep methods with their table variants)
is fitted once at 64 bits on the synthetic CIFAR-100 stand-in (100 classes, 512-d) at IF 100 with its
default settings (a whole cell), and at IF 1 for ``--if1-epochs`` epochs, whose per-epoch time is
extrapolated to the method's full epochs (the IF-1 training split has 50,000 items). From these
per-cell seconds the script estimates the whole features-mode grid (IF 1/50/100 x 32/64/96 bits; IF
50 is taken as IF 100 scaled by its training-set size) and reports cells per minute. Fine-tuning:
ResNet34 (random weights: no download) plus a 64-bit head, RMSprop steps on random 224 x 224 images,
after warm-up; synchronised timing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

IF_TRAIN_SIZES = {1.0: 50000, 50.0: 3732, 100.0: 2598}  # CIFAR-100's Table 2 training-set sizes


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def deep_rows(quick: bool):
    """(display, class, params) of every deep table row (LTHNet k=0/k=3 ...), registry order."""
    from methods.registry import registered_methods

    rows = []
    for name, cls in registered_methods().items():
        if cls.family != "deep":
            continue
        variants = cls.table_variants or ({},)
        for variant in variants:
            label = name + (" (" + ", ".join(f"{k}={v}" for k, v in variant.items()) + ")" if variant else "")
            params = dict(variant)
            if quick:
                params.update({key: value for key, value in cls.test_params.items() if key != "n_threads"})
            rows.append((label, cls, params))
    return rows[:3] if quick else rows


def _data(imbalance_factor: float, quick: bool):
    from datasets import load_dataset, make_long_tail

    if quick:
        data = load_dataset("synthetic", n_classes=10, query_per_class=10, database_per_class=120, dim=32)
    else:
        data = load_dataset("synthetic-cifar100")
    return make_long_tail(data, imbalance_factor, seed=0)


def time_fit(cls, params: dict, data, device: str, n_epochs: int | None = None) -> tuple[float, int, int]:
    """(seconds of one fit, epochs run, epochs of the method's own settings)."""
    method = cls(n_bits=64, random_state=0, device=device, **params)
    full_epochs = int(method.resolved_settings()["n_epochs"])
    if n_epochs is not None:
        method.set_params(n_epochs=n_epochs)
    X, y = data.subset(data.train)
    torch_device = torch.device(device)
    _synchronise(torch_device)
    start = time.perf_counter()
    method.fit(X, y)
    _synchronise(torch_device)
    return time.perf_counter() - start, int(method.resolved_settings()["n_epochs"]), full_epochs


def features_mode(device: str, quick: bool, if1_epochs: int) -> dict:
    rows = []
    low, high = _data(100.0, quick), _data(1.0, quick)
    for label, cls, params in deep_rows(quick):
        cell_if100, _, _ = time_fit(cls, params, low, device)
        seconds, ran, full = time_fit(cls, params, high, device, n_epochs=if1_epochs)
        cell_if1 = seconds / ran * full
        cell_if50 = cell_if100 * IF_TRAIN_SIZES[50.0] / IF_TRAIN_SIZES[100.0]
        rows.append({"row": label, "if100_cell_s": cell_if100, "if1_cell_s_extrapolated": cell_if1,
                     "if1_epochs_timed": ran, "epochs": full, "if50_cell_s_estimated": cell_if50})
    grid_seconds = 3 * sum(r["if100_cell_s"] + r["if50_cell_s_estimated"] + r["if1_cell_s_extrapolated"]
                           for r in rows)  # three code lengths; bits barely change the cost
    n_cells = 3 * 3 * len(rows)
    return {"rows": rows, "grid_cells": n_cells, "grid_seconds_estimated": grid_seconds,
            "cells_per_minute": n_cells / grid_seconds * 60.0}


def finetune_throughput(device: str, batch_sizes, steps: int, warmup: int, image_size: int) -> list[dict]:
    from datasets.features import build_backbone

    torch_device = torch.device(device)
    out = []
    for batch in batch_sizes:
        torch.manual_seed(0)
        backbone = build_backbone("random").to(torch_device).train()
        head = torch.nn.Linear(512, 64).to(torch_device)
        if torch_device.type == "cuda":
            backbone = backbone.to(memory_format=torch.channels_last)
        parameters = list(backbone.parameters()) + list(head.parameters())
        optimizer = torch.optim.RMSprop(parameters, lr=1e-5, weight_decay=5e-4)
        images = torch.randn(batch, 3, image_size, image_size, device=torch_device)
        if torch_device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        target = torch.randn(batch, 64, device=torch_device).sign()

        def step():
            with torch.autocast(device_type=torch_device.type, dtype=torch.bfloat16,
                                enabled=torch_device.type == "cuda"):
                codes = torch.tanh(head(backbone(images)))
                loss = ((codes - target) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(warmup):
            step()
        _synchronise(torch_device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _synchronise(torch_device)
        seconds = time.perf_counter() - start
        out.append({"batch_size": batch, "images_per_second": batch * steps / seconds, "steps": steps,
                    "bf16_autocast": torch_device.type == "cuda", "channels_last": torch_device.type == "cuda"})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU smoke form run by the tests")
    parser.add_argument("--if1-epochs", type=int, default=2, help="epochs timed at IF 1 (then extrapolated)")
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    quick = args.quick
    info = {"device": args.device, "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None, "quick": quick}
    features = features_mode(args.device, quick, 1 if quick else args.if1_epochs)
    finetune = finetune_throughput(args.device, (8, 64) if not quick else (2, 4), steps=3 if quick else 30,
                                   warmup=1 if quick else 5, image_size=64 if quick else 224)
    result = {"info": info, "features_mode": features, "finetune": finetune,
              "seconds": time.perf_counter() - started}
    print(f"device: {info['gpu'] or args.device}  torch {info['torch']}  ({'quick' if quick else 'full'} form)")
    print("\nfeatures mode, 64 bits, synthetic CIFAR-100 stand-in")
    print(f"{'row':<24} {'IF100 cell s':>12} {'IF1 cell s (extrap.)':>21} {'epochs':>6}")
    for row in features["rows"]:
        print(f"{row['row']:<24} {row['if100_cell_s']:>12.1f} {row['if1_cell_s_extrapolated']:>21.1f} {row['epochs']:>6}")
    print(f"whole features grid: {features['grid_cells']} cells in ~{features['grid_seconds_estimated'] / 60:.1f} min "
          f"= {features['cells_per_minute']:.2f} cells/min")
    print(f"\nfine-tuning ResNet34 at {64 if quick else 224} px")
    for row in finetune:
        print(f"batch {row['batch_size']:>3}: {row['images_per_second']:8.1f} images/s")
    print(f"\ntotal {result['seconds']:.0f} s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
