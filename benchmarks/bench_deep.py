"""Speed of the shared deep trainer in features mode, and the validation study behind
``settings="features"``.

Speed (training steps per second on this CPU in features mode, 64 bits, CIFAR-100 IF=1 size:
50,000 x 512 synthetic features, 100 classes; LTHNet k=3 and CSQ on the shared trunk)::

    python benchmarks/bench_deep.py speed [--steps 300] [--batch-sizes 8 32] [--methods LTHNet CSQ] [--threads 2]

It times N optimisation steps of the trainer's own step function (after a warm-up) and one memory
rebuild (LTHNet's per-epoch forward pass over the whole training set, then the DPP), then
extrapolates one table cell (a fit on 50,000 items) under the paper's and under the feature-mode
epochs. Beside each step rate it gives the step's bound on this CPU (``step_bound``: the step's own
matrix products timed alone plus one optimiser pass at the measured copy bandwidth) and the share
of it reached, with the regime (memory- or compute-bound) of the step. On a shared machine the
numbers are indicative only: run it on an idle one, or with ``--threads 1 --clock process`` (CPU
time of the one thread, which leaves out the time the process waits for a core).

Validation (never the query set: a stratified part of the *training* split is held out as
validation queries; the rest is both the training set and the retrieval database)::

    python benchmarks/bench_deep.py validate [--imbalance-factor 10] [--threads 1] [--out FILE.csv]

``--out`` appends one CSV row per (method, configuration) in the format of
methods/data/deep_feature_validation.csv, the evidence behind ``settings="features"`` (the exact
commands that produced it: methods/data/README.md).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from methods._deep import DeepTrainer  # noqa: E402


# ----------------------------------------------------------------------------- speed

#: the clock of the speed measurements: wall time, or with --clock process this process's CPU time
#: (a fairer proxy on a shared machine, single-threaded only: it leaves out time spent descheduled)
_CLOCK = {"clock": time.perf_counter}


def _clock() -> float:
    return _CLOCK["clock"]()


def _trainer(method, X, y):
    """The trainer a fit of ``method`` would build (under its seed), with its fit-start hook run."""
    method.validate_params()
    method.n_classes_ = int(y.max()) + 1
    device = torch.device("cpu")
    trainer = DeepTrainer(method, X, y, method.resolved_settings(), device, method._generator())
    method.trainer_ = trainer
    method.on_fit_start(trainer)
    return trainer


def _batch_stream(trainer):
    while True:
        yield from trainer._epoch_batches()


def _time_training(method, X, y, n_steps: int, n_warmup: int = 20, repeats: int = 3):
    """(steps per second of the real training step, seconds of the per-epoch work outside the steps:
    LTHNet's memory rebuild split into (forward pass over the training set, DPP), else zeros).

    Runs the trainer's own step (``DeepTrainer._train_step``) ``n_steps`` times after a warm-up,
    with one host synchronisation at the end; the best of ``repeats`` such runs (the bound's parts
    are best-of timings too, and a shared virtual machine's neighbours only ever slow a run down).
    Also returns the minor page faults per timed step (``getrusage``), the allocator's share."""
    with method._torch_context(torch.device("cpu")):
        trainer = _trainer(method, X, y)
        try:
            rebuild = (0.0, 0.0)
            if getattr(trainer.head, "use_meta_embedding", False):
                from methods.lthnet import build_memory

                start = _clock()
                direct = trainer.forward_all(trainer.head.direct)
                middle = _clock()
                trainer.head.memory.copy_(build_memory(direct, trainer.train_labels, trainer.n_classes, int(method.k)))
                rebuild = (middle - start, _clock() - middle)
            trainer.head.train()
            loss_sum = torch.zeros((), dtype=torch.float64)
            stream = _batch_stream(trainer)
            for _ in range(n_warmup):
                trainer._train_step(*next(stream), loss_sum)
            seconds = math.inf
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(repeats):
                start = _clock()
                for _ in range(n_steps):
                    trainer._train_step(*next(stream), loss_sum)
                loss_sum.item()
                seconds = min(seconds, _clock() - start)
            faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / (repeats * n_steps)
        finally:
            del method.trainer_
    return n_steps / seconds, rebuild, faults


def _best_seconds(fn, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = _clock()
        fn()
        best = min(best, _clock() - start)
    return best


def measure_bandwidth(n_bytes: int = 256 << 20, repeats: int = 5) -> float:
    """Bytes per second of a large float32 copy (read + write), the best of ``repeats``."""
    source = torch.rand(n_bytes // 4)
    target = torch.empty_like(source)
    return 2 * n_bytes / _best_seconds(lambda: target.copy_(source), repeats)


def measure_gemm_rate(size: int = 2048, repeats: int = 5) -> float:
    """FLOP per second of a large square float32 matmul (the machine's matmul peak)."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    return 2 * size**3 / _best_seconds(lambda: a @ b, repeats)


_MATMULS = ("mm", "addmm", "bmm", "baddbmm")


def _step_matmuls(method, X, y):
    """The matrix products of one training step (forward and backward), as
    [(op, [("tensor", shape, stride) or ("value", value)], kwargs)]."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.split(".")[0] in _MATMULS:
                calls.append((func, [("tensor", tuple(a.shape), tuple(a.stride())) if isinstance(a, torch.Tensor)
                                     else ("value", a) for a in args], dict(kwargs or {})))
            return func(*args, **(kwargs or {}))

    with method._torch_context(torch.device("cpu")):
        trainer = _trainer(method, X, y)
        try:
            stream = _batch_stream(trainer)
            loss_sum = torch.zeros((), dtype=torch.float64)
            trainer._train_step(*next(stream), loss_sum)
            with Record():
                trainer._train_step(*next(stream), loss_sum)
        finally:
            del method.trainer_
    return calls, sum(p.numel() for p in trainer.optimizer.param_groups[0]["params"])


def _dense(shape, stride) -> torch.Tensor:
    """A random tensor of ``shape`` laid out like ``stride`` (e.g. a transposed matrix)."""
    order = sorted(range(len(shape)), key=lambda i: stride[i], reverse=True)
    return torch.rand([shape[i] for i in order]).permute([order.index(i) for i in range(len(shape))])


def step_bound(method, X, y, bandwidth: float, gemm_rate: float) -> dict:
    """The lower bound of one training step on this CPU and its parts:

    * ``matmul_s``: the step's matrix products (forward and backward, recorded from a real step),
      each timed alone on fresh tensors of its shapes and layout (best of 20): the arithmetic at
      this CPU's matmul speed for exactly these shapes (at batch 8 they are memory-bound: reading
      the weight matrix dominates);
    * ``optimizer_s``: one pass of the optimiser at the measured copy bandwidth -- RMSprop reads
      param, grad, square_avg and writes param, square_avg: 20 bytes per float32 parameter;
    * ``bound_s`` = matmul_s + optimizer_s (activations and the loss are left out: small at these
      batch sizes, so the bound is optimistic);
    * ``regime``: "memory" when the step's minimal traffic (the weights read in the forward and the
      backward pass, the gradients written, the optimiser's pass: 32 bytes per parameter) at the
      copy bandwidth takes longer than its FLOPs at the matmul peak, else "compute"."""
    calls, n_parameters = _step_matmuls(method, X, y)
    matmul_s = flops = 0.0
    for func, args, kwargs in calls:
        real = [_dense(a[1], a[2]) if a[0] == "tensor" else a[1] for a in args]
        matmul_s += _best_seconds(lambda: func(*real, **kwargs), 20)
        left, right = [a[1] for a in args if a[0] == "tensor"][-2:]
        flops += 2.0 * (left[0] if len(left) == 3 else 1) * left[-2] * left[-1] * right[-1]
    optimizer_s = 20 * n_parameters / bandwidth
    memory_s, compute_s = 32 * n_parameters / bandwidth, flops / gemm_rate
    return {"parameters": n_parameters, "flops": flops, "matmul_s": matmul_s, "optimizer_s": optimizer_s,
            "bound_s": matmul_s + optimizer_s, "memory_s": memory_s, "compute_s": compute_s,
            "regime": "memory" if memory_s > compute_s else "compute"}


def bench_speed(n_steps: int, batch_sizes: list[int], n_threads: int | None, methods: list[str],
                clock: str = "wall", allocator: str = "project") -> None:
    from datasets.synthetic import make_class_clusters
    from methods._deep import FEATURE_SETTINGS, PAPER_SETTINGS
    from methods.registry import get_method_class

    if n_threads:
        torch.set_num_threads(n_threads)
    if clock == "process":
        if torch.get_num_threads() != 1:
            raise SystemExit("--clock process measures one thread's CPU time: pass --threads 1.")
        _CLOCK["clock"] = time.process_time
    if allocator == "glibc-initial":  # a fresh process's thresholds, pinned, and no trainer raises them
        from common.allocator import GLIBC_INITIAL_THRESHOLD, set_malloc_thresholds
        from methods._deep import trainer as deep_trainer

        set_malloc_thresholds(GLIBC_INITIAL_THRESHOLD, GLIBC_INITIAL_THRESHOLD)
        deep_trainer.keep_freed_memory = lambda: False
    X, y = make_class_clusters(100, 500, 512, seed=0, noise=1.0)
    bandwidth, gemm_rate = measure_bandwidth(), measure_gemm_rate()
    print(f"data {X.shape} (CIFAR-100 IF=1 size), {len(np.unique(y))} classes, 64 bits, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {clock} clock; measured: copy bandwidth {bandwidth / 1e9:.1f} GB/s, "
          f"matmul peak {gemm_rate / 1e9:.1f} GFLOP/s (2048^3); allocator: {allocator}")
    print("| method | trunk | batch | params | steps/s | bound steps/s | of bound | regime | matmul ms | optimizer ms "
          "| rebuild s (forward + DPP) | epoch min | paper cell h | features cell h | faults/step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in methods:
        cls = get_method_class(name)
        for batch_size in batch_sizes:
            params = {"k": 3} if name.startswith("LTHNet") else {}
            method = cls(n_bits=64, batch_size=batch_size, n_threads=n_threads, **params)
            steps_per_second, (forward_s, dpp_s), faults = _time_training(method, X, y, n_steps)
            bound = step_bound(method, X, y, bandwidth, gemm_rate)
            steps_per_epoch = math.ceil(len(y) / batch_size)
            epoch_seconds = steps_per_epoch / steps_per_second + forward_s + dpp_s
            cells = [epochs * epoch_seconds / 3600 for epochs in (PAPER_SETTINGS["n_epochs"], FEATURE_SETTINGS["n_epochs"])]
            print(f"| {name} | {method.resolved_settings()['trunk']} | {batch_size} | {bound['parameters'] / 1e6:.2f}M "
                  f"| {steps_per_second:.1f} | {1 / bound['bound_s']:.1f} | {bound['bound_s'] * steps_per_second:.0%} "
                  f"| {bound['regime']} | {bound['matmul_s'] * 1e3:.1f} | {bound['optimizer_s'] * 1e3:.1f} "
                  f"| {forward_s:.2f} + {dpp_s:.2f} | {epoch_seconds / 60:.2f} | {cells[0]:.2f} | {cells[1]:.2f} "
                  f"| {faults:.0f} |",
                  flush=True)


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


def _row(lr: float, batch: int, epochs: int) -> tuple[str, dict]:
    label = f"lr {lr:g}, batch {batch}, {epochs} ep" + (" (paper)" if (lr, batch, epochs) == (1e-5, 8, 100) else "")
    # settings="paper" + overrides: RMSprop, weight decay 5e-4 and cosine annealing stay the paper's
    return label, dict(settings="paper", learning_rate=lr, batch_size=batch, n_epochs=epochs)


#: (learning rate, batch size, epochs); row 0 is the paper's §6.3 setting.
VALIDATION_GRID = [_row(*values) for values in [
    (1e-5, 8, 100), (1e-5, 8, 30), (1e-4, 8, 30), (1e-3, 8, 30),
    (1e-4, 32, 30), (1e-3, 32, 30), (1e-4, 32, 100),
    (1e-4, 64, 30), (1e-3, 64, 30), (1e-3, 64, 100),
]]

METHOD_PARAMS = {"LTHNet": {"k": 3}, "CSQ": {}, "DPSH": {}, "HashNet": {}, "DSDH": {}, "LTHNet_sq": {"k": 3}}

#: the columns of methods/data/deep_feature_validation.csv (protocol, configuration, results)
VALIDATION_COLUMNS = (
    "dataset", "dataset_noise", "imbalance_factor", "long_tail_seed", "holdout_fraction", "holdout_seed",
    "n_train_split", "n_fit", "n_validation", "n_bits", "metric", "epoch", "method", "method_params",
    "grid_row", "optimizer", "learning_rate", "weight_decay", "lr_schedule", "n_epochs", "batch_size",
    "configuration", "validation_map", "final_loss", "fit_seconds",
)


def append_validation_rows(path: str, rows: list[dict]) -> None:
    """Append rows to a validation CSV (header first when the file is new or empty)."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=VALIDATION_COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def validation_data(dataset: str, imbalance_factor: float, noise: float, holdout: float, seed: int):
    """(X_fit, y_fit, X_val, y_val): the long-tail training split with a stratified part held out."""
    from datasets import load_dataset, make_long_tail

    kwargs = {"noise": noise} if dataset.startswith("synthetic") else {}
    data = make_long_tail(load_dataset(dataset, **kwargs), imbalance_factor, seed=0)
    X_train, y_train = data.subset(data.train)  # the training split only: the query set is never read
    kept, held = validation_split(y_train, holdout, seed=seed)
    return X_train[kept], y_train[kept], X_train[held], y_train[held]


def validate(dataset: str, imbalance_factor: float, noise: float, methods: list[str], rows: list[int] | None,
             n_threads: int, bits: int, holdout: float, seeds: list[int], out: str | None) -> None:
    """Fit every (method, grid row) on the kept part of the training split and score it by the MAP of
    the held-out part against the kept part; with several hold-out seeds, the mean over them.
    ``out``: a CSV file the rows are appended to (format of methods/data/deep_feature_validation.csv)."""
    from benchmark.metrics import evaluate
    from methods.registry import get_method_class

    splits = [validation_data(dataset, imbalance_factor, noise, holdout, seed) for seed in seeds]
    n_fit, n_val = len(splits[0][1]), len(splits[0][3])
    header = (f"# {dataset}{f' (noise {noise:g})' if dataset.startswith('synthetic') else ''} IF={imbalance_factor:g}: "
              f"training split {n_fit + n_val} items; fit on {n_fit}, {n_val} held-out validation queries "
              f"retrieve from the {n_fit} fitted items; {bits} bits; tie-aware MAP, mean over hold-out "
              f"seeds {seeds}")
    lines = [header, "| method | setting | validation MAP | final-epoch loss | fit s |", "|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name in methods:
        cls = get_method_class(name)
        for index, (label, params) in enumerate(VALIDATION_GRID):
            if rows is not None and index not in rows:
                continue
            scores, losses = [], []
            start = time.perf_counter()
            for X_fit, y_fit, X_val, y_val in splits:
                method = cls(n_bits=bits, n_threads=n_threads, **METHOD_PARAMS.get(name, {}), **params)
                method.fit(X_fit, y_fit)
                result = evaluate(method.encode(X_val), method.encode(X_fit), y_val, y_fit, pr_curve=False,
                                  precision_ks=())
                scores.append(result.map_tie_aware)
                losses.append(method.training_log_["loss"][-1])
            seconds = (time.perf_counter() - start) / len(splits)
            spread = f" ± {np.std(scores):.3f}" if len(scores) > 1 else ""
            line = (f"| {name} | {label} | {np.mean(scores):.4f}{spread} | {np.mean(losses):.4f} | {seconds:.0f} |")
            print(line, flush=True)
            lines.append(line)
            if out:
                resolved = method.resolved_settings()
                method_params = METHOD_PARAMS.get(name, {})
                append_validation_rows(out, [{
                    "dataset": dataset, "dataset_noise": f"{noise:g}" if dataset.startswith("synthetic") else "",
                    "imbalance_factor": f"{imbalance_factor:g}", "long_tail_seed": 0,
                    "holdout_fraction": f"{holdout:g}", "holdout_seed": " ".join(map(str, seeds)),
                    "n_train_split": n_fit + n_val, "n_fit": n_fit, "n_validation": n_val, "n_bits": bits,
                    "metric": "map_tie_aware", "epoch": "final", "method": name,
                    "method_params": " ".join(f"{key}={value}" for key, value in method_params.items()),
                    "grid_row": index, **{key: resolved[key] for key in
                                          ("optimizer", "weight_decay", "lr_schedule", "n_epochs", "batch_size")},
                    "learning_rate": f"{resolved['learning_rate']:g}", "configuration": label,
                    "validation_map": f"{np.mean(scores):.4f}", "final_loss": f"{np.mean(losses):.4f}",
                    "fit_seconds": f"{seconds:.0f}",
                }])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed")
    speed.add_argument("--steps", type=int, default=300)
    speed.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    speed.add_argument("--methods", nargs="+", default=["LTHNet", "CSQ"])
    speed.add_argument("--threads", type=int, default=None)
    speed.add_argument("--clock", choices=["wall", "process"], default="wall",
                       help="process: this process's CPU time (with --threads 1), for a busy machine")
    speed.add_argument("--allocator", choices=["project", "glibc-initial"], default="project",
                       help="glibc-initial: pin malloc's thresholds at glibc's initial 128 KiB instead of the "
                            "trainer's (common/allocator.py), to measure what keep_freed_memory saves")
    val = sub.add_parser("validate")
    val.add_argument("--dataset", default="synthetic-cifar100")
    val.add_argument("--imbalance-factor", type=float, default=50.0)
    val.add_argument("--noise", type=float, default=7.0, help="synthetic datasets: cluster noise")
    val.add_argument("--methods", nargs="+", default=["LTHNet", "CSQ"])
    val.add_argument("--rows", type=int, nargs="*", default=None, help="rows of VALIDATION_GRID to run")
    val.add_argument("--threads", type=int, default=1)
    val.add_argument("--bits", type=int, default=64)
    val.add_argument("--holdout", type=float, default=0.2, help="fraction of each class held out")
    val.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds of the hold-out draw (mean)")
    val.add_argument("--out", default=None, help="also append each row to this CSV file (format of "
                     "methods/data/deep_feature_validation.csv)")
    args = parser.parse_args(argv)
    if args.command == "speed":
        bench_speed(args.steps, args.batch_sizes, args.threads, args.methods, args.clock, args.allocator)
    else:
        validate(args.dataset, args.imbalance_factor, args.noise, args.methods, args.rows, args.threads,
                 args.bits, args.holdout, args.seeds, args.out)


if __name__ == "__main__":
    main()
