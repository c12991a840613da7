"""End-to-end: the CLI runs a grid into a result store, writes tables, skips finished cells,
recomputes metrics from stored codes, and fails clearly on bad input without writing anything."""
import glob
import json
import os
import textwrap

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.specs import expand_method_specs
from benchmark.runner import plan_grid, run_grid
from benchmark.store import ResultStore
from datasets import load_dataset

ARGS = ["--dataset", "digits", "--methods", "LSH", "PCAH", "ITQ", "--if", "1", "50", "--bits", "16", "32",
        "--no-progress"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    results = str(tmp_path_factory.mktemp("run"))
    assert main(ARGS + ["--results-dir", results]) == 0
    return results


def test_tables_and_records_are_written(finished_run, capsys):
    store = ResultStore(finished_run)
    assert len(store.cells(dataset="digits")) == 3 * 2 * 2
    table = pd.read_csv(os.path.join(finished_run, "tables", "map_digits_features_tie_aware.csv"), index_col=0)
    assert list(table.index) == ["LSH", "PCAH", "ITQ"]  # the paper's row order
    assert list(table.columns) == ["IF=1 16 bits", "IF=1 32 bits", "IF=50 16 bits", "IF=50 32 bits"]
    assert table.to_numpy().min() > 0.1  # digits are easy: far above chance (0.1)
    latex = open(os.path.join(finished_run, "tables", "map_digits_features_tie_aware.tex")).read()
    assert r"\toprule" in latex and r"\textbf{" in latex and r"\underline{" in latex
    assert os.path.exists(os.path.join(finished_run, "figures", "figure2_digits.png"))
    record = next(store.records())
    for key in ("metrics", "timings", "versions", "method", "dataset"):
        assert key in record
    assert set(record["metrics"]["group_map_tie_aware"]) == {"head", "medium", "tail"}
    card = record["metrics"]["card"]  # the metric card of every cell (docs/metrics.md)
    assert card["map@all/tie_aware"] == pytest.approx(record["metrics"]["map_tie_aware"], abs=1e-12)
    assert card["map@all/index_order"] == pytest.approx(record["metrics"]["map_index_order"], abs=1e-12)
    assert 0 <= card["map@1000/min_k_l/tie_aware"] <= card["map@1000/retrieved/tie_aware"] + 1e-12
    assert 0 <= card["empty_r2_share"] <= 1 and 0 <= card["precision@r2"] <= 1


def test_rerun_skips_finished_cells(finished_run, capsys):
    before = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(finished_run, "records", "**", "*.json"),
                                                      recursive=True)}
    assert main(ARGS + ["--results-dir", finished_run]) == 0
    assert "0 computed, 12 already stored" in capsys.readouterr().out
    after = {p: os.path.getmtime(p) for p in before}
    assert before == after


def test_recompute_metrics_from_codes_matches(finished_run):
    store = ResultStore(finished_run)
    before = {r["cell_key"]: r["metrics"]["map_tie_aware"] for r in store.records()}
    assert main(["--dataset", "digits", "--results-dir", finished_run, "--recompute-metrics"]) == 0
    after = {r["cell_key"]: r["metrics"]["map_tie_aware"] for r in store.records()}
    assert before.keys() == after.keys()
    for key in before:
        assert after[key] == pytest.approx(before[key], abs=1e-12)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "NoSuchHash"], "unknown method 'NoSuchHash'. Registered methods: LSH, PCAH, ITQ"),
    (["--if", "0.5"], "imbalance factors must be >= 1"),
    (["--bits", "0"], "code lengths must be positive"),
    (["--dataset", "nosuchdata"], "unknown dataset 'nosuchdata'. Available: digits"),
    (["--if", "100000"], "tail class empty"),
])
def test_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["--dataset", "digits", "--methods", "LSH", "--no-progress", "--results-dir", str(tmp_path)] + argv)
    assert code != 0
    assert message in capsys.readouterr().err
    assert not os.path.exists(os.path.join(tmp_path, "records"))


def test_failing_cell_is_named_and_not_written(tmp_path, capsys):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text(textwrap.dedent('''
        from methods import register
        from methods.base import HashingMethod

        @register("AlwaysBroken")
        class AlwaysBroken(HashingMethod):
            def _fit(self, X, y):
                raise FloatingPointError("loss diverged")
    '''))
    results = str(tmp_path / "run")
    code = main(["--dataset", "digits", "--plugin", str(plugin), "--methods", "AlwaysBroken", "LSH",
                 "--if", "1", "--bits", "16", "--no-progress", "--results-dir", results])
    assert code == 1
    err = capsys.readouterr().err
    assert "AlwaysBroken on digits IF=1 16 bits seed 0 (features mode) failed: FloatingPointError: loss diverged" in err
    methods = {r["method"]["name"] for r in ResultStore(results).records()}
    assert methods == {"LSH"}


def test_bits_beyond_feature_dimension_are_marked_not_applicable(tmp_path):
    data = load_dataset("digits")
    specs = expand_method_specs(["PCAH", "LSH"])
    plan = plan_grid(data, [1], [96], specs, [0])
    assert [c.method for c in plan.cells] == ["LSH"]
    assert "PCAH cannot give 96 bits from 64-d features" in plan.unsupported[0][1]
    outcomes = run_grid(data, plan, specs, ResultStore(str(tmp_path)), progress=False)
    assert sorted(o.status for o in outcomes) == ["done", "unsupported"]


def test_parallel_jobs_give_the_same_numbers(tmp_path, finished_run):
    data = load_dataset("digits")
    specs = expand_method_specs(["LSH", "ITQ"])
    plan = plan_grid(data, [50], [16], specs, [0])
    store = ResultStore(str(tmp_path))
    outcomes = run_grid(data, plan, specs, store, jobs=2, progress=False)
    assert all(o.status == "done" for o in outcomes)
    reference = {r["cell_key"]: r["metrics"]["map_tie_aware"] for r in ResultStore(finished_run).records()}
    for record in store.records():
        assert record["metrics"]["map_tie_aware"] == pytest.approx(reference[record["cell_key"]], abs=1e-12)


def test_list_methods(capsys):
    assert main(["--list-methods"]) == 0
    out = capsys.readouterr().out
    assert "ITQ" in out and "shallow" in out


def test_progress_names_the_running_cells_and_their_epoch(tmp_path):
    """The bar's postfix names every cell running now (not the last finished one) and the epoch a
    deep cell has reached; a finished cell leaves it."""
    from benchmark.runner import CellOutcome, _Progress

    data = load_dataset("digits")
    specs = expand_method_specs(["LSH", "CSQ"])
    plan = plan_grid(data, [1.0], [16], specs, [0])
    lsh, csq = plan.cells
    bar = _Progress(2, enabled=False)
    for cell in plan.cells:
        bar.name(cell)
    bar.update(lsh.key, "started")
    bar.update(csq.key, "epoch 3/30 loss 0.41")
    assert bar.bar.postfix == "running: LSH IF=1 16b; CSQ IF=1 16b epoch 3/30 loss 0.41"
    bar.finished(CellOutcome(lsh, "done", ""))
    assert bar.bar.postfix == "running: CSQ IF=1 16b epoch 3/30 loss 0.41"
    bar.close()
