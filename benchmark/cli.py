"""Command line: ``python run_benchmark.py --methods all --if 1 50 100`` runs the grid, prints the
table and writes CSV/LaTeX/Markdown tables, t-tests, Figure 2 and REPORT.md under the results
directory; ``--experiment NAME`` runs one of the paper's analyses (benchmark/experiments.py) into
the same store and draws its figure.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

DEFAULT_RESULTS_DIR = os.path.join("results", "runs")
DEFAULT_CACHE_DIR = os.path.join("results", "cache")


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
                        help="'all' (default), names, wildcards ('LTH*') or specs such as 'LTHNet(k=3)'")
    parser.add_argument("--if", dest="imbalance_factors", nargs="+", type=float, default=None,
                        metavar="IF", help="imbalance factors (>= 1); default 1 50 100")
    parser.add_argument("--bits", nargs="+", type=int, default=None,
                        help="code lengths; default: the dataset's own (32 64 96 for the paper's datasets)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="method seeds (one cell each); default 0")
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
    parser.add_argument("--split-seed", type=int, default=None, help="seed of the long-tail training split (default 0)")
    parser.add_argument("--mode", choices=("features", "finetune"), default="features",
                        help="deep methods on frozen cached features (default) or fine-tuned end to end")
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel (joblib processes)")
    parser.add_argument("--data-root", default=None, help="where datasets live (or are downloaded to)")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="result store and report folder")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="feature cache (ResNet34 features)")
    parser.add_argument("--force", action="store_true", help="recompute cells already in the result store")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import a module (or .py file) whose @register classes become methods")
    parser.add_argument("--list-methods", action="store_true", help="list registered methods and exit")
    parser.add_argument("--list-datasets", action="store_true", help="list datasets and exit")
    parser.add_argument("--recompute-metrics", action="store_true",
                        help="re-evaluate stored cells from their codes (no training), then report")
    parser.add_argument("--policy", choices=("tie_aware", "index_order"), default="tie_aware",
                        help="tie policy of the printed table (both are stored and written)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _list_methods() -> None:
    from methods.registry import registered_methods

    print(f"{'name':<12} {'family':<8} {'labels':<7} table rows")
    for name, cls in registered_methods().items():
        rows = ", ".join(f"{name}({', '.join(f'{k}={v}' for k, v in v.items())})" for v in cls.table_variants) or name
        print(f"{name:<12} {cls.family:<8} {'yes' if cls.uses_labels else 'no':<7} {rows}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from datasets import DatasetError, list_datasets, load_dataset

    from .experiments import ExperimentError, get_experiment, list_experiments_text, main_run_experiment
    from .experiments import parse_overrides, resolve
    from .specs import load_plugin

    try:
        for plugin in args.plugin:
            load_plugin(plugin)
    except (ImportError, FileNotFoundError) as error:
        return _fail(str(error))
    if args.list_methods:
        _list_methods()
        return 0
    if args.list_datasets:
        print("\n".join(list_datasets() + ["features:PATH.npz"]))
        return 0
    if args.list_experiments:
        print(list_experiments_text())
        print("\nrun: python run_benchmark.py --experiment NAME [--dataset digits] [--set NAME=VALUE ...]")
        return 0

    if args.imbalance_factors is not None:
        bad_factors = [f for f in args.imbalance_factors if not f >= 1]
        if bad_factors:
            return _fail(f"imbalance factors must be >= 1 (1 = balanced), got {bad_factors}; e.g. --if 1 50 100.")
    if args.bits is not None and any(b <= 0 for b in args.bits):
        return _fail(f"code lengths must be positive, got {args.bits}; e.g. --bits 32 64 96.")
    if args.jobs < 1:
        return _fail(f"--jobs must be >= 1, got {args.jobs}.")

    try:
        if args.experiment:
            experiment = get_experiment(args.experiment)
        else:
            experiment = main_run_experiment(args.methods or ["all"], args.imbalance_factors or [1.0, 50.0, 100.0],
                                             args.bits, args.seeds or [0], args.dataset or "digits", args.split_seed or 0)
        field_overrides, method_params = parse_overrides(args.overrides)
    except ExperimentError as error:
        return _fail(str(error))
    if args.experiment:  # explicit CLI options override the experiment's fields, like --set
        cli_fields = {"methods": args.methods, "imbalance_factors": args.imbalance_factors, "bits": args.bits,
                      "seeds": args.seeds}
        for name, value in cli_fields.items():
            if value is not None:
                field_overrides.setdefault(name, tuple(value))
        if args.split_seed is not None:
            field_overrides.setdefault("split_seed", args.split_seed)
    dataset_name = args.dataset or experiment.dataset

    from . import analysis_report
    from .report import write_reports
    from .runner import plan_grid, recompute_metrics, run_grid
    from .store import ResultStore

    store = ResultStore(args.results_dir)
    failed = []
    run = None
    if args.recompute_metrics:
        count = recompute_metrics(store, dataset=dataset_name)
        print(f"recomputed the metrics of {count} stored cell(s) from their codes")
    else:
        try:
            data = load_dataset(dataset_name, data_root=args.data_root, cache_dir=args.cache_dir)
        except DatasetError as error:
            return _fail(str(error))
        try:
            run = resolve(experiment, dataset_name, data.default_bits, field_overrides, method_params)
        except (ExperimentError, ValueError) as error:
            return _fail(str(error))
        bad_factors = [f for f in run.imbalance_factors if not f >= 1]
        if bad_factors:
            return _fail(f"imbalance factors must be >= 1 (1 = balanced), got {bad_factors}; e.g. --if 1 50 100.")
        if any(b <= 0 for b in run.bits):
            return _fail(f"code lengths must be positive, got {run.bits}; e.g. --bits 32 64 96.")
        try:
            plan = plan_grid(data, run.imbalance_factors, run.bits, run.specs, run.seeds, args.mode, run.split_seed)
            # fail fast on splits the dataset cannot supply (before any training)
            from datasets import make_long_tail

            for factor in run.imbalance_factors:
                make_long_tail(data, factor, seed=run.split_seed)
        except (DatasetError, ValueError) as error:
            return _fail(str(error))
        for cell, why in plan.unsupported:
            print(f"note: skipping {why}", file=sys.stderr)
        if args.experiment:
            print(f"experiment {experiment.name}: {len(plan.cells)} cell(s) on {dataset_name}")
        with contextlib.ExitStack() as stack:
            submit = None
            if args.scheduler:
                try:
                    from .distributed import dask_submit  # only when asked: dask is optional

                    submit = stack.enter_context(dask_submit(args.scheduler))
                except (ImportError, ValueError, OSError, RuntimeError) as error:  # incl. SchedulerError
                    return _fail(f"--scheduler {args.scheduler}: {error}")
            outcomes = run_grid(data, plan, run.specs, store, force=args.force, jobs=args.jobs,
                                progress=not args.no_progress, submit=submit)
        done = sum(o.status == "done" for o in outcomes)
        skipped = sum(o.status == "skipped" for o in outcomes)
        failed = [o for o in outcomes if o.status == "failed"]
        print(f"cells: {done} computed, {skipped} already stored, {len(failed)} failed, "
              f"{len(plan.unsupported)} not applicable")
        from .figures import figure2_from_splits

        figure2_from_splits(data, run.imbalance_factors,
                            os.path.join(store.root, "figures", f"figure2_{data.name}"), run.split_seed)

    paths = {}
    if run is None or run.experiment.name in analysis_report.TABLE_EXPERIMENTS:
        suffix = "" if run is None or run.experiment.name == "main" else f"_{run.experiment.name}"
        target = run.target_display() if run is not None else None
        paths = write_reports(store, dataset_name, args.mode, policy=args.policy, ttest_method=target,
                              method_keys=None if run is None else run.method_keys, name_suffix=suffix)
    if run is not None:
        figure_paths, report_path = analysis_report.finish_run(store, run.to_dict(), args.mode, args.policy)
        for name, files in figure_paths.items():
            for path in files:
                paths[f"{name}.{path.rsplit('.', 1)[-1]}"] = path
        paths["report"] = report_path
    if paths:
        markdown = paths.pop("markdown", None)
        if markdown:
            print()
            print(markdown)
        print("written:")
        for name, path in paths.items():
            print(f"  {name:<16} {os.path.relpath(path)}")
    if failed:
        print("\nfailed cells:", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
