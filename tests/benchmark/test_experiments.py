"""The paper's analyses as declared experiments: each runs on digits through the CLI into one result
store, draws its figure (PNG and PDF), updates REPORT.md, and re-runs only what is missing."""
import contextlib
import glob
import io
import json
import os
import sys
import types

import numpy as np
import pandas as pd
import pytest

from benchmark.analysis_report import experiment_frame, load_manifest
from benchmark.cli import main
from benchmark.experiments import EXPERIMENTS, ExperimentError, get_experiment, parse_overrides, resolve
from benchmark.figures import normalised_loss
from benchmark.store import Cell, ResultStore

QUICK = ["--dataset", "digits", "--no-progress", "--set", "if=50", "--set", "bits=16"]
DEEP = ["--set", "hidden_dim=128", "--set", "n_threads=1"]  # small LTHNet head, no thread contention
LTHNET3 = "LTHNet(hidden_dim=128,k=3,n_epochs=1,n_threads=1)"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """All experiments, tiny, into one results folder (order matters: beta=0 reuses table3's cell)."""
    root = str(tmp_path_factory.mktemp("experiments"))
    runs = {
        "table3": ["--set", "methods=LSH,CSQ,LTHNet(k=3)", "--set", "seeds=0,1", "--set", "n_epochs=1"],
        "table4": ["--set", "methods=LSH,ITQ"],
        "beta-sensitivity": ["--set", "values=0,0.99", "--set", "n_epochs=1"],
        "batch-size": ["--set", "methods=LTHNet(k=3),CSQ", "--set", "values=16,64", "--set", "n_epochs=1"],
        "dme-ablation": ["--set", "bits=16,32", "--set", "n_epochs=1"],
        "convergence": ["--set", "n_epochs=3", "--set", "if=1,50"],
    }
    outputs = {}
    for name, extra in runs.items():
        argv = ["--experiment", name] + QUICK + (DEEP if name != "table4" else []) + extra + ["--results-dir", root]
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(argv)
        outputs[name] = (code, buffer.getvalue(), argv)
    return root, outputs


def test_every_declared_experiment_runs_and_draws_its_figures(results):
    root, outputs = results
    assert set(outputs) == set(EXPERIMENTS)
    for name, (code, out, _argv) in outputs.items():
        assert code == 0, (name, out)
        assert "0 failed" in out
        for figure in get_experiment(name).figures:
            stems = glob.glob(os.path.join(root, "figures", f"{figure}_*_digits_features.png"))
            assert len(stems) == 1, (name, figure)
            assert os.path.getsize(stems[0]) > 10_000
            assert os.path.exists(stems[0][:-4] + ".pdf")
    assert os.path.exists(os.path.join(root, "figures", "figure2_digits.png"))
    manifest = load_manifest(ResultStore(root))
    assert set(manifest["digits|features"]) == set(EXPERIMENTS)


def test_cells_are_shared_and_rerun_is_incremental(results, capsys):
    root, outputs = results
    # beta = 0 is LTHNet's default: the same spec (and cell) as table3's LTHNet (k=3) row
    assert "cells: 1 computed, 1 already stored" in outputs["beta-sensitivity"][1]
    assert "cells: 6 computed, 0 already stored" in outputs["table3"][1]
    store = ResultStore(root)
    keys = {c.method for c in store.cells(dataset="digits")}
    assert LTHNET3 in keys
    assert "LTHNet(beta=0.99,hidden_dim=128,k=3,n_epochs=1,n_threads=1)" in keys
    assert "LTHNet(hidden_dim=128,k=0,n_epochs=1,n_threads=1,use_meta_embedding=False)" in keys
    assert "CSQ(batch_size=64,hidden_dim=128,n_epochs=1,n_threads=1)" not in keys  # CSQ has no hidden_dim
    assert "CSQ(batch_size=64,n_epochs=1,n_threads=1)" in keys
    before = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(root, "records", "**", "*.json"), recursive=True)}
    for name in ("batch-size", "table3"):
        code, _out, argv = outputs[name]
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cells: 0 computed, 4 already stored" in out and "cells: 0 computed, 6 already stored" in out
    assert before == {p: os.path.getmtime(p) for p in before}


def test_figure_data_match_the_store(results):
    root, outputs = results
    store = ResultStore(root)
    manifest = load_manifest(store)["digits|features"]
    dme = experiment_frame(store, manifest["dme-ablation"], "features")
    assert sorted(dme["value"].unique()) == [False, True] and sorted(dme["bits"].unique()) == [16, 32]
    assert len(dme) == 4 and dme["map"].between(0.1, 1.0).all()  # digits: far above chance (0.1)
    conv = experiment_frame(store, manifest["convergence"], "features")
    assert sorted(conv["imbalance_factor"]) == [1.0, 50.0]
    for loss in conv["loss"]:
        assert len(loss) == 3
        curve = normalised_loss(loss)
        assert curve.max() == pytest.approx(1.0) and curve[-1] < 1.0  # training lowers the loss
    batch = experiment_frame(store, manifest["batch-size"], "features")
    assert set(zip(batch["base"], batch["value"])) == {("LTHNet (k=3)", 16), ("LTHNet (k=3)", 64),
                                                       ("CSQ", 16), ("CSQ", 64)}


def _stored_cell(store, factor, bits, method, seed):
    """The stored digits cell of these coordinates (its data fingerprint is part of its identity)."""
    (cell,) = [c for c in store.cells(dataset="digits") if (c.imbalance_factor, c.n_bits, c.method, c.seed)
               == (factor, bits, method, seed)]
    return cell


def test_report_gathers_tables_groups_significance_and_figures(results):
    root, _outputs = results
    report = open(os.path.join(root, "REPORT.md")).read()
    for name in EXPERIMENTS:
        assert f"`{name}`" in report
    for figure in ("figure2", "figure3", "figure4", "figure5", "figure6", "figure7"):
        assert f"![{figure}](figures/{figure}" in report
    assert "Head / medium / tail MAP at 16 bits" in report
    assert "p (per-query AP)" in report and "p < 0.05, LTHNet better" in report
    assert "The paper publishes no numbers for digits" in report

    stem = os.path.join(root, "tables", "map_digits_features_tie_aware_table3")
    tests = pd.read_csv(stem + "_ttest.csv")
    row = tests.iloc[0]
    assert row["method"] == "LTHNet (hidden_dim=128, k=3, n_epochs=1, n_threads=1)"
    assert row["best_other"] in ("LSH", "CSQ (n_epochs=1, n_threads=1)")
    assert row["n_seeds"] == 2
    assert 0 <= row["p_value"] <= 1 and 0 <= row["across_seeds_p"] <= 1

    # head/medium/tail MAP recomputed from the stored per-query AP and class groups
    groups = pd.read_csv(stem + "_head_medium_tail.csv")
    assert set(groups["method"]) == {"LSH", "CSQ (n_epochs=1, n_threads=1)",
                                     "LTHNet (hidden_dim=128, k=3, n_epochs=1, n_threads=1)"}
    store = ResultStore(root)
    cell = _stored_cell(store, 50.0, 16, "LSH", 1)
    record, arrays = store.load_record(cell), store.load_arrays(cell)
    assert row["n_queries"] == arrays["query_labels"].size == record["dataset"]["n_query"]
    lsh_seed1 = {}
    for group, classes in record["metrics"]["groups"].items():
        mask = np.isin(arrays["query_labels"], classes)
        lsh_seed1[group] = arrays["ap_tie_aware"][mask].mean()
    seed0 = store.load_record(_stored_cell(store, 50.0, 16, "LSH", 0))["metrics"]["group_map_tie_aware"]
    lsh_row = groups[groups["method"] == "LSH"].iloc[0]
    for group in ("head", "medium", "tail"):
        assert lsh_row[group] == pytest.approx((lsh_seed1[group] + seed0[group]) / 2, abs=1e-4)
    sizes = np.asarray(record["dataset"]["train_class_sizes"])
    head, tail = record["metrics"]["groups"]["head"], record["metrics"]["groups"]["tail"]
    assert sizes[head].min() >= sizes[tail].max()  # head classes are the large ones


def test_list_experiments_and_bad_overrides(tmp_path, capsys):
    assert main(["--list-experiments"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in out
    base = ["--dataset", "digits", "--no-progress", "--results-dir", str(tmp_path)]
    assert main(["--experiment", "nosuch"] + base) != 0
    assert "unknown experiment 'nosuch'. Declared experiments: table3, table4" in capsys.readouterr().err
    assert main(["--experiment", "convergence", "--set", "n_epochz=2"] + base) != 0
    assert "has parameter(s) ['n_epochz']" in capsys.readouterr().err
    assert main(["--experiment", "beta-sensitivity", "--set", "beta=0.5"] + base) != 0
    assert "set its values with --set values=" in capsys.readouterr().err
    assert main(["--experiment", "convergence", "--set", "oops"] + base) != 0
    assert "write NAME=VALUE" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(tmp_path, "records"))


def test_overrides_and_resolution():
    fields, params = parse_overrides(["methods=LTHNet(k=3,beta=0.9),CSQ", "if=1,100", "bits=middle",
                                      "n_epochs=2", "settings=features", "use_meta_embedding=false"])
    assert fields == {"methods": ("LTHNet(k=3,beta=0.9)", "CSQ"), "imbalance_factors": (1.0, 100.0),
                      "bits": "middle"}
    assert params == {"n_epochs": 2, "settings": "features", "use_meta_embedding": False}
    run = resolve(get_experiment("batch-size"), "cifar100", (32, 64, 96), {"values": (8, 128)}, {"n_epochs": 2})
    assert run.bits == [64] and run.imbalance_factors == [1.0, 50.0, 100.0]
    assert [p.spec.key for p in run.points][:2] == ["LTHNet(batch_size=8,k=3,n_epochs=2)",
                                                    "LTHNet(batch_size=128,k=3,n_epochs=2)"]
    assert len(run.points) == 5 * 2
    assert run.target_display() == "LTHNet (batch_size=8, k=3, n_epochs=2)"
    dme = resolve(get_experiment("dme-ablation"), "imagenet100", (32, 64, 96))
    assert [p.spec.key for p in dme.points] == ["LTHNet(k=0)", "LTHNet(k=0,use_meta_embedding=False)"]
    assert dme.bits == [32, 64, 96]
    with pytest.raises(ExperimentError, match="sweeps no parameter"):
        resolve(get_experiment("convergence"), "digits", (16, 32, 48), {"values": (1,)})


def test_scheduler_flag_hands_cells_to_the_distributed_backend(tmp_path, monkeypatch, capsys):
    calls = []

    @contextlib.contextmanager
    def dask_submit(address):
        def submit(fn, tasks):
            calls.append((address, len(tasks)))
            return [fn(*task) for task in tasks]
        yield submit

    fake = types.ModuleType("benchmark.distributed")
    fake.dask_submit = dask_submit
    monkeypatch.setitem(sys.modules, "benchmark.distributed", fake)
    argv = ["--dataset", "digits", "--methods", "LSH", "--if", "50", "--bits", "16", "--no-progress",
            "--results-dir", str(tmp_path), "--scheduler", "local:2"]
    assert main(argv) == 0
    assert calls == [("local:2", 1)]
    assert len(ResultStore(str(tmp_path)).cells()) == 1
    manifest = json.load(open(os.path.join(tmp_path, "experiments.json")))
    assert manifest["digits|features"]["main"]["points"][0]["key"] == "LSH"
    assert os.path.exists(os.path.join(tmp_path, "REPORT.md"))
