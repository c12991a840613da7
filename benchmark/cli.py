"""Command line: ``python run_benchmark.py --methods all --if 1 50 100`` runs the grid, prints the
table and writes CSV/LaTeX/Markdown tables, t-tests, Figure 2 and REPORT.md under the results
directory; ``--experiment NAME`` runs one of the paper's analyses (benchmark/experiments.py) into
the same store and draws its figures.

``main`` is a thin layer over named steps: parse (every option checked by its argparse type) ->
resolve the run (plugins, dataset, experiment, method specs) -> plan (cells and splits) -> run (or
recompute stored metrics) -> report. The project's own errors (``common.errors.BenchmarkError``)
are caught in one place and printed as one message with exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from dataclasses import dataclass

from common.errors import BenchmarkError
from common.io import file_slug
from common.modes import MODES

DEFAULT_RESULTS_DIR = os.path.join("results", "runs")
DEFAULT_CACHE_DIR = os.path.join("results", "cache")
DEFAULT_IMBALANCE_FACTORS = (1.0, 50.0, 100.0)


# ---------------------------------------------------------------------------- parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _bits(text: str) -> int:
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"code lengths must be positive integers, got {text!r}; "
                                         "e.g. --bits 32 64 96") from None


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _imbalance_factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"imbalance factors must be >= 1 (1 = balanced), got {text!r}; "
                                         "e.g. --if 1 50 100")
    return value


def _jobs(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_benchmark.py",
        description="Learning to hash on long-tail data: reproduce the LTHNet paper's comparison (Tables 3-4).",
    )
    parser.add_argument("--dataset", default=None,
                        help="dataset name (digits [offline default], synthetic, cifar100, imagenet100, "
                             "lthnet-folder, or features:PATH.npz); see --list-datasets. With --experiment "
                             "the default is the experiment's dataset")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="'all' (default), names, wildcards ('LTH*') or specs such as 'LTHNet(k=3)'; "
                             "leave methods out with 'all,-FastHash' or --exclude")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="METHOD",
                        help="methods to leave out of --methods (names, wildcards or specs), e.g. --exclude FastHash")
    parser.add_argument("--if", dest="imbalance_factors", nargs="+", type=_imbalance_factor, default=None,
                        metavar="IF", help="imbalance factors (>= 1); default 1 50 100")
    parser.add_argument("--bits", nargs="+", type=_bits, default=None,
                        help="code lengths; default: the dataset's own (32 64 96 for the paper's datasets)")
    parser.add_argument("--seeds", nargs="+", type=_nonnegative_int, default=None,
                        help="method seeds (one cell each); default 0")
    parser.add_argument("--experiment", default=None, metavar="NAME",
                        help="run one of the paper's analyses (see --list-experiments) through the same store")
    parser.add_argument("--list-experiments", action="store_true", help="list declared experiments and exit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override an experiment field (methods, if, bits, seeds, values, split_seed; "
                             "comma-separated lists) or set a method parameter on every method that has it "
                             "(e.g. --set n_epochs=2); repeatable")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run cells on Dask: tcp://host:port (a running scheduler) or local:N "
                             "(a LocalCluster with N workers)")
    parser.add_argument("--split-seed", type=_nonnegative_int, default=None,
                        help="seed of the long-tail training split (default 0)")
    parser.add_argument("--mode", choices=MODES, default="features",
                        help="deep methods on frozen cached features (default) or fine-tuned end to end")
    parser.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                        help="cells run in parallel (worker processes); default: one per core ('auto')")
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="BLAS/torch threads per cell; default: the cores divided among the jobs "
                             "(never more threads than cores). Not part of a cell's identity")
    parser.add_argument("--data-root", default=None, help="where datasets live (or are downloaded to)")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="result store and report folder")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="feature cache (ResNet34 features)")
    parser.add_argument("--weights", choices=("IMAGENET1K_V1", "random"), default=None,
                        help="ResNet34 weights of the image datasets' feature cache: IMAGENET1K_V1 (the paper's, "
                             "the default) or random (offline smoke runs only: features without ImageNet knowledge)")
    parser.add_argument("--force", action="store_true", help="recompute cells already in the result store")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import a module (or .py file) whose @register classes become methods")
    parser.add_argument("--list-methods", action="store_true", help="list registered methods and exit")
    parser.add_argument("--list-datasets", action="store_true", help="list datasets and exit")
    parser.add_argument("--recompute-metrics", action="store_true",
                        help="re-evaluate the run's stored cells from their codes (no training), then report")
    parser.add_argument("--export-splits", default=None, metavar="DIR",
                        help="write the run's long-tail splits (one folder per IF and split seed) as HashNet-style "
                             "list files (train.txt, test.txt, database.txt + split.json) under DIR, then exit; "
                             "read them back with --dataset lists --data-root DIR/<folder>")
    parser.add_argument("--export-images", action="store_true",
                        help="with --export-splits: also write the images of datasets held in memory (digits, CIFAR-100)")
    parser.add_argument("--policy", choices=("tie_aware", "index_order"), default="tie_aware",
                        help="tie policy of the printed table (both are stored and written)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# ---------------------------------------------------------------------------- listings


def _list_methods() -> None:
    from methods.registry import registered_methods

    print(f"{'name':<12} {'family':<8} {'labels':<7} table rows")
    for name, cls in registered_methods().items():
        rows = ", ".join(f"{name}({', '.join(f'{k}={v}' for k, v in v.items())})" for v in cls.table_variants) or name
        print(f"{name:<12} {cls.family:<8} {'yes' if cls.uses_labels else 'no':<7} {rows}")


def list_and_exit(args) -> bool:
    """Print what --list-methods / --list-datasets / --list-experiments ask for; True if one did."""
    if args.list_methods:
        _list_methods()
    elif args.list_datasets:
        from datasets import list_datasets

        print("\n".join(list_datasets() + ["features:PATH.npz"]))
    elif args.list_experiments:
        from .experiments import list_experiments_text

        print(list_experiments_text())
        print("\nrun: python run_benchmark.py --experiment NAME [--dataset digits] [--set NAME=VALUE ...]")
    else:
        return False
    return True


# ---------------------------------------------------------------------------- resolve


@dataclass
class ResolvedRun:
    """What a command line asks for, resolved: the data, the experiment's cells, the store."""

    args: argparse.Namespace
    data: object  # datasets.BenchmarkData
    run: object  # benchmark.experiments.ExperimentRun
    store: object  # benchmark.store.ResultStore


def _experiment(args):
    from .experiments import get_experiment, main_run_experiment, parse_overrides

    if args.experiment:
        experiment = get_experiment(args.experiment)
    else:
        experiment = main_run_experiment(args.methods or ["all"], args.imbalance_factors or DEFAULT_IMBALANCE_FACTORS,
                                         args.bits, args.seeds or [0], args.dataset or "digits", args.split_seed or 0)
    field_overrides, method_params = parse_overrides(args.overrides)
    if args.experiment:  # explicit CLI options override the experiment's fields, like --set
        cli_fields = {"methods": args.methods, "imbalance_factors": args.imbalance_factors, "bits": args.bits,
                      "seeds": args.seeds}
        for name, value in cli_fields.items():
            if value is not None:
                field_overrides.setdefault(name, tuple(value))
        if args.split_seed is not None:
            field_overrides.setdefault("split_seed", args.split_seed)
    return experiment, field_overrides, method_params


def _dataset_name(args) -> str:
    """--dataset, else the experiment's own dataset, else the offline default (digits)."""
    from .experiments import get_experiment

    if args.dataset:
        return args.dataset
    return get_experiment(args.experiment).dataset if args.experiment else "digits"


def _load_data(args, dataset_name: str):
    from datasets import load_dataset

    from datasets import dataset_options

    options = {}
    if "cache_dir" in dataset_options(dataset_name):  # only loaders with a feature cache take one
        options["cache_dir"] = args.cache_dir
    if args.data_root is not None:  # a loader without data says so when given --data-root
        options["data_root"] = args.data_root
    if args.weights is not None:  # likewise for --weights on a dataset without images
        options["weights"] = args.weights
    return load_dataset(dataset_name, **options)


def resolve_run(args) -> ResolvedRun:
    """Plugins, the experiment and its overrides, the dataset and the concrete method specs."""
    from .experiments import resolve
    from .specs import load_plugin
    from .store import ResultStore

    from datasets import given_split_factor

    for plugin in args.plugin:
        load_plugin(plugin)
    data = _load_data(args, _dataset_name(args))
    given = given_split_factor(data)
    if given is not None and args.imbalance_factors is None:  # its own split: the factor it has
        args.imbalance_factors = [given]
    experiment, field_overrides, method_params = _experiment(args)
    run = resolve(experiment, data.name, data.default_bits, field_overrides, method_params, exclude=args.exclude)
    store = ResultStore(args.results_dir)
    return ResolvedRun(args, data, run, store)


# ---------------------------------------------------------------------------- plan / run


def plan_run(resolved: ResolvedRun):
    """Every cell of the run (each long-tail split drawn once; a split the data cannot supply is an
    error here, before any training)."""
    from .runner import plan_grid

    run = resolved.run
    plan = plan_grid(resolved.data, run.imbalance_factors, run.bits, run.specs, run.seeds, resolved.args.mode,
                     run.split_seed)
    for _cell, why in plan.unsupported:
        print(f"note: skipping {why}", file=sys.stderr)
    if resolved.args.experiment:
        print(f"experiment {run.experiment.name}: {len(plan.cells)} cell(s) on {resolved.data.name}")
    return plan


def execute(resolved: ResolvedRun, plan) -> list:
    """Compute the missing cells (or, with --recompute-metrics, re-evaluate the stored ones)."""
    from .runner import CellOutcome, recompute_metrics, run_grid

    args, store = resolved.args, resolved.store
    store.check_writable()
    if args.recompute_metrics:
        count = recompute_metrics(store, plan)
        print(f"recomputed the metrics of {count} stored cell(s) from their codes; "
              f"{len(plan.cells) - count} cell(s) of this run are not stored")
        return [CellOutcome(cell, "skipped", "recomputed") for cell in plan.cells]
    with contextlib.ExitStack() as stack:
        submit = None
        if args.scheduler:
            try:
                from .distributed import dask_submit  # only when asked: dask is optional
            except ImportError as error:
                raise BenchmarkError(f"--scheduler needs dask[distributed] ({error}); pip install "
                                     "'dask[distributed]' or run without --scheduler.") from error
            submit = stack.enter_context(dask_submit(args.scheduler))
        from .runner import default_jobs

        outcomes = run_grid(resolved.data, plan, resolved.run.specs, store, force=args.force,
                            jobs=args.jobs or default_jobs(), threads=args.threads,
                            progress=not args.no_progress, submit=submit)
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("done", "skipped", "claimed", "failed", "unsupported")}
    lost = sum(o.status == "failed" and "worker" in o.message and "died" in o.message for o in outcomes)
    print(f"cells: {counts['done']} computed, {counts['skipped']} already stored, {counts['failed']} failed"
          + (f" ({lost} with a worker that died: a re-run computes them)" if lost else "")
          + f", {counts['unsupported']} not applicable"
          + (f", {counts['claimed']} being computed by another run" if counts["claimed"] else ""))
    return outcomes


def export_splits(resolved: ResolvedRun, plan) -> int:
    """--export-splits DIR: every split of the run as list files other codebases read."""
    from datasets import export_split

    root = resolved.args.export_splits
    for (factor, split_seed), split in sorted(plan.splits.items()):
        folder = os.path.join(root, f"{file_slug(split.name)}_IF{factor:g}_split{split_seed}")
        written = export_split(split, folder, write_images=resolved.args.export_images)
        print(f"{split.name} IF={factor:g} split seed {split_seed}: {len(written)} files in {os.path.relpath(folder)}"
              f" (train {len(split.train)}, test {len(split.query_index)}, database {len(split.database_index)})")
    return 0


# ---------------------------------------------------------------------------- report


def report(resolved: ResolvedRun, plan, outcomes) -> int:
    """Figure 2, the tables, the run's figures and REPORT.md, from one read of the store; prints
    the table and every file written; 1 if a cell failed."""
    from . import analysis_report
    from .figures import plot_class_sizes
    from .report import write_reports
    from .results import StoredResults

    args, run, store, data = resolved.args, resolved.run, resolved.store, resolved.data
    run_dict = dict(run.to_dict(), fingerprints=plan.fingerprints)
    paths: dict[str, str] = {}
    sizes = {factor: split.train_class_sizes() for (factor, _seed), split in plan.splits.items()}
    for path in plot_class_sizes(sizes, data.name, os.path.join(store.root, "figures", f"figure2_{file_slug(data.name)}")):
        paths[f"figure2.{path.rsplit('.', 1)[-1]}"] = path
    results = StoredResults.load(store, data.name)
    if run.experiment.produces_table:
        suffix = "" if run.experiment.name == "main" else f"_{run.experiment.name}"
        paths.update(write_reports(results, data.name, args.mode, policy=args.policy,
                                   ttest_method=run.target_display(), method_keys=run.method_keys,
                                   name_suffix=suffix, fingerprints=plan.fingerprints))
    paths.update(analysis_report.finish_run(results, run_dict, args.mode, args.policy, data=data))
    markdown = paths.pop("markdown", None)
    if markdown:
        print()
        print(markdown)
    print("written:")
    for name, path in paths.items():
        print(f"  {name:<28} {os.path.relpath(path)}")
    for moved, reason in store.set_aside:
        print(f"note: set aside {os.path.relpath(moved)} ({reason}); its cell is recomputed by the next run",
              file=sys.stderr)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print("\nfailed cells:", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.message}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- main


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_arguments(argv)
    except SystemExit as exit_:  # argparse printed the problem (a bad option value) already
        return int(exit_.code or 0)
    try:
        if list_and_exit(args):
            return 0
        resolved = resolve_run(args)
        plan = plan_run(resolved)
        if args.export_splits:
            return export_splits(resolved, plan)
        outcomes = execute(resolved, plan)
        return report(resolved, plan, outcomes)
    except BenchmarkError as error:
        return _fail(str(error))
    except MemoryError:
        return _fail("ran out of memory; the dataset or the requested grid is too large for this machine "
                     "(check the input's size and labels, or use fewer bits / a smaller dataset).")
    except KeyboardInterrupt:
        return _fail("interrupted; finished cells are stored and a re-run computes only the missing ones.", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
