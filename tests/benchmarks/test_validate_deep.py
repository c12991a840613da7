"""benchmarks/validate_deep.py: the jobs (every registered deep method, one grid), the preset rule
on hand-made rows, and a tiny resumable run on digits whose presets file settings.py can read."""
import csv
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("validate_deep", os.path.join(ROOT, "benchmarks", "validate_deep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_registered_deep_method_gets_the_same_grid(script):
    from methods.registry import registered_methods

    deep = [name for name, cls in registered_methods().items() if cls.family == "deep"]
    assert script.deep_methods() == deep and {"DHN", "ACHNet", "OrthoHash", "LTHNet_sq"} <= set(deep)
    jobs = script.make_jobs(script.SETTINGS, deep, script.GRID, 30, 7.0, 0.2, 1, 64)
    assert len(jobs) == 2 * 2 * len(deep) * len(script.GRID) == len({script.job_key(job) for job in jobs})
    for method in deep:
        grids = {(job["dataset"], job["imbalance_factor"]): sorted((job["learning_rate"], job["batch_size"])
                                                                   for job in jobs if job["method"] == method)
                 for job in jobs}
        assert len({tuple(grid) for grid in grids.values()}) == 1
    # the large split (synthetic IF 1) runs last, configuration by configuration, LTHNet first in each
    large = [job for job in jobs if job["dataset"] == "synthetic-cifar100" and job["imbalance_factor"] == "1"]
    assert jobs[-len(large):] == large
    assert [job["grid_row"] for job in large] == sorted(job["grid_row"] for job in large)
    assert large[0]["method"] == "LTHNet" and large[0]["method_params"] == "k=3"


def rows_of(maps):
    """Validation rows from {(method, dataset, IF, lr, batch): MAP}."""
    return [{"method": method, "dataset": dataset, "imbalance_factor": str(factor), "optimizer": "rmsprop",
             "learning_rate": str(lr), "weight_decay": "0.0005", "lr_schedule": "cosine", "n_epochs": "30",
             "batch_size": str(batch), "validation_map": str(value)}
            for (method, dataset, factor, lr, batch), value in maps.items()]


def test_rule_best_mean_relative_map_and_ties_to_the_cheaper(script):
    maps = {}
    for dataset, factor, a, b, c in (("d1", 1, 0.50, 0.40, 0.30), ("d1", 100, 0.20, 0.25, 0.10),
                                     ("d2", 1, 0.90, 0.90, 0.897)):
        maps[("M", dataset, factor, 1e-4, 32)] = a
        maps[("M", dataset, factor, 1e-3, 32)] = b
        maps[("M", dataset, factor, 1e-3, 128)] = c
    scores, complete = script.relative_scores(rows_of(maps), ["M"])
    assert complete == [("d1", 1.0), ("d1", 100.0), ("d2", 1.0)]
    assert scores[("rmsprop", 1e-4, 0.0005, "cosine", 30, 32)] == pytest.approx((1 + 0.8 + 1) / 3)
    assert scores[("rmsprop", 1e-3, 0.0005, "cosine", 30, 32)] == pytest.approx((0.8 + 1 + 1) / 3)
    assert script.choose(scores)[1] == 1e-4  # equal means and cost: the first in sorted order (lower lr)
    # a cheaper configuration within the tolerance wins the tie
    cheap = ("rmsprop", 1e-3, 0.0005, "cosine", 30, 128)
    assert script.choose({**scores, cheap: max(scores.values()) - 0.004})[5] == 128
    assert script.choose({**scores, cheap: max(scores.values()) - 0.006})[5] == 32
    # a setting where a configuration is missing is left out of the mean
    del maps[("M", "d2", 1, 1e-3, 128)]
    assert script.relative_scores(rows_of(maps), ["M"])[1] == [("d1", 1.0), ("d1", 100.0)]


def test_tiny_run_resumes_and_writes_presets_settings_can_read(script, tmp_path, capsys):
    from methods._deep.settings import read_feature_presets

    out, presets = tmp_path / "validation.csv", tmp_path / "presets.csv"
    argv = ["--settings", "digits:100", "--methods", "CSQ", "DPSH", "--epochs", "2",
            "--learning-rates", "1e-3", "1e-2", "--batch-sizes", "64", "--workers", "1", "--out", str(out),
            "--presets", str(presets)]
    assert script.main(argv) == 0
    rows = list(csv.DictReader(open(out)))
    assert [(row["method"], row["learning_rate"]) for row in rows] == [("DPSH", "0.001"), ("DPSH", "0.01"),
                                                                       ("CSQ", "0.001"), ("CSQ", "0.01")]
    for row in rows:
        assert row["trunk"] == "shared" and row["n_validation"] == "44" and int(row["n_fit"]) + 44 == int(row["n_train_split"])
        assert 0 < float(row["validation_map"]) <= 1 and row["epoch"] == "final"
    assert script.main(argv) == 0  # resumed: nothing left to run
    assert "4 jobs, 4 already in" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(out)))) == 4
    read = read_feature_presets(presets.read_text())
    assert {"default", "CSQ", "DPSH"} <= set(read)
    for name in ("CSQ", "DPSH"):
        best = max((row for row in rows if row["method"] == name), key=lambda row: float(row["validation_map"]))
        assert read[name]["learning_rate"] == float(best["learning_rate"]) and read[name]["n_epochs"] == 2


def test_settings_are_dataset_colon_imbalance_factor(script):
    import argparse

    assert script.parse_setting("synthetic-cifar100:100") == ("synthetic-cifar100", 100.0)
    assert script.parse_setting("features:my.npz:50") == ("features:my.npz", 50.0)
    for bad in ("digits", "digits:0.5", ":10", "digits:many"):
        with pytest.raises(argparse.ArgumentTypeError, match="DATASET:IF"):
            script.parse_setting(bad)


def test_shipped_presets_are_the_rule_applied_to_the_shipped_validation_rows(script):
    """methods/data: every deep method has its own validated row (and `default`, every declared
    feature_preset), and re-applying the rule to the validation file gives the presets file."""
    from methods._deep.settings import FEATURE_PRESETS
    from methods.registry import registered_methods

    rows = script.read_rows(script.VALIDATION_FILE)
    presets = script.read_rows(script.PRESETS_FILE)
    methods = script.deep_methods()
    assert {row["method"] for row in rows} == set(methods)
    for row in rows:  # the protocol is recorded with every number
        assert row["holdout_fraction"] == "0.2" and row["metric"] == "map_tie_aware" and row["epoch"] == "final"
        assert row["trunk"] in ("shared", "own") and 0 <= float(row["validation_map"]) <= 1
    # the same configurations for every method at every setting
    grids = {(row["method"], row["dataset"], row["imbalance_factor"]): set() for row in rows}
    for row in rows:
        grids[(row["method"], row["dataset"], row["imbalance_factor"])].add((row["learning_rate"], row["batch_size"]))
    assert len({frozenset(grid) for grid in grids.values()}) == 1
    assert [{key: str(value) for key, value in preset.items()} for preset in script.choose_presets(rows, methods)] == presets
    names = {preset["preset"] for preset in presets}
    assert set(methods) | {"default"} <= names
    assert {cls.feature_preset for cls in registered_methods().values() if cls.family == "deep"} <= names
    assert set(FEATURE_PRESETS) == names
