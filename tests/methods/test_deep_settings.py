"""Resolution of the deep trainer's optimisation settings (methods/_deep/settings.py): "auto" picks the
validated frozen-feature preset in mode="features" and the paper's §6.3 values in mode="finetune";
explicit parameters override a preset; the resolved values reach ``settings_`` and the cell record."""
import csv
import os

import numpy as np
import pytest

from benchmark.specs import expand_method_specs, parse_method_spec
from benchmark.runner import plan_grid, run_grid
from benchmark.store import ResultStore
from datasets.synthetic import load_synthetic_benchmark
from methods._deep import FEATURE_PRESETS, FEATURE_SETTINGS, PAPER_SETTINGS, preset_name
from methods._deep.settings import read_feature_presets
from methods.base import InvalidInputError
from methods.csq import CSQ
from methods.lthnet import LTHNet, LTHNetSquare
from methods.registry import registered_methods

DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "methods", "data")

OPTIMISATION_KEYS = ("optimizer", "learning_rate", "weight_decay", "lr_schedule", "n_epochs", "batch_size")


def test_paper_preset_is_section_6_3():
    assert PAPER_SETTINGS == {"optimizer": "rmsprop", "learning_rate": 1e-5, "weight_decay": 5e-4,
                              "lr_schedule": "cosine", "n_epochs": 100, "batch_size": 8}
    # the feature preset keeps the paper's optimiser, weight decay and schedule
    for key in ("optimizer", "weight_decay", "lr_schedule"):
        assert FEATURE_SETTINGS[key] == PAPER_SETTINGS[key]


def test_auto_is_the_feature_preset_in_features_mode_and_the_paper_in_finetune_mode():
    assert CSQ().settings == "auto" and LTHNet().settings == "auto"
    features = CSQ().resolved_settings()
    assert features["preset"] == "features"
    assert {k: features[k] for k in OPTIMISATION_KEYS} == FEATURE_SETTINGS
    # LTHNet's validated learning rate differs from the baselines'; the rest is the shared preset
    lthnet = LTHNet().resolved_settings()
    lthnet_row = FEATURE_PRESETS[LTHNet.feature_preset]
    assert LTHNetSquare.feature_preset == LTHNet.feature_preset
    assert {k: v for k, v in lthnet_row.items() if FEATURE_SETTINGS[k] != v} == {"learning_rate": 1e-4}
    assert {k: lthnet[k] for k in OPTIMISATION_KEYS} == {**FEATURE_SETTINGS, "learning_rate": 1e-4}
    assert LTHNet(k=0, use_meta_embedding=False).resolved_settings()["learning_rate"] == 1e-4
    for method in (LTHNet(mode="finetune"), CSQ(mode="finetune")):
        finetune = method.resolved_settings()
        assert finetune["preset"] == "paper"
        assert {k: finetune[k] for k in OPTIMISATION_KEYS} == PAPER_SETTINGS
    assert preset_name("auto", "features") == "features" and preset_name("auto", "finetune") == "paper"


def test_paper_values_are_one_flag_away_in_feature_mode():
    method = CSQ(settings="paper")
    resolved = method.resolved_settings()
    assert resolved["preset"] == "paper" and resolved["learning_rate"] == 1e-5 and resolved["n_epochs"] == 100
    # the same flag through a CLI method spec
    spec = parse_method_spec("LTHNet(k=3, settings='paper')")
    built = spec.build(n_bits=64, random_state=0)
    assert built.settings == "paper" and built.resolved_settings()["batch_size"] == 8


def test_explicit_parameters_override_any_preset():
    for settings in ("auto", "paper", "features"):
        resolved = LTHNet(settings=settings, learning_rate=3e-3, batch_size=16).resolved_settings()
        assert resolved["learning_rate"] == 3e-3 and resolved["batch_size"] == 16
    resolved = LTHNet(settings="paper", n_epochs=7).resolved_settings()
    assert resolved["n_epochs"] == 7 and resolved["learning_rate"] == 1e-5 and resolved["weight_decay"] == 5e-4


@pytest.mark.parametrize("bad", ["Paper", "fast", "", None, 3])
def test_unknown_preset_is_a_clear_error(bad):
    with pytest.raises(InvalidInputError, match=r"settings=.* is unknown; use one of \['auto', 'paper', 'features'\]"):
        LTHNet(settings=bad).resolved_settings()
    X = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="is unknown"):
        CSQ(n_bits=8, settings=bad).fit(X, np.arange(12) % 3)


def test_fit_records_the_resolved_settings_and_the_runner_stores_them(tmp_path):
    data = load_synthetic_benchmark("synthetic", n_classes=4, query_per_class=5, database_per_class=20, dim=16)
    specs = expand_method_specs(["CSQ(n_epochs=2, n_threads=1)"])
    plan = plan_grid(data, [1], [8], specs, [0])
    outcomes = run_grid(data, plan, specs, ResultStore(str(tmp_path)), progress=False)
    assert [o.status for o in outcomes] == ["done"], outcomes
    (record,) = ResultStore(str(tmp_path)).records()
    stored = record["method"]["settings"]
    assert stored["preset"] == "features" and stored["n_epochs"] == 2
    assert stored["learning_rate"] == FEATURE_SETTINGS["learning_rate"]
    assert stored["batch_size"] == FEATURE_SETTINGS["batch_size"]
    assert len(record["training_log"]["loss"]) == 2


def read_rows(name):
    with open(os.path.join(DATA_DIR, name), newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_evidence_of_the_feature_preset_is_recorded():
    """Every preset row names the method whose validation rows chose it and its rule; its
    configuration is one of the validated rows, on every dataset of the study."""
    presets = {row["preset"]: row for row in read_rows("deep_feature_presets.csv")}
    validation = read_rows("deep_feature_validation.csv")
    assert {row["dataset"] for row in validation} == {"synthetic-cifar100", "digits"}
    for row in validation:  # the protocol is recorded with every number
        assert row["holdout_fraction"] and row["holdout_seed"] and row["metric"] and row["n_bits"] == "64"
        assert 0 < float(row["validation_map"]) <= 1 and float(row["final_loss"]) >= 0
    readme = open(os.path.join(DATA_DIR, "README.md")).read()
    assert "benchmarks/bench_deep.py validate" in readme
    for method, lr in (("CSQ", FEATURE_SETTINGS["learning_rate"]), ("LTHNet", 1e-4)):
        preset = presets[registered_methods()[method].feature_preset]
        assert preset["validated_with"] == method and len(preset["rule"]) > 40
        chosen = [row for row in validation if row["method"] == method
                  and float(row["learning_rate"]) == lr and int(row["batch_size"]) == FEATURE_SETTINGS["batch_size"]
                  and int(row["n_epochs"]) == FEATURE_SETTINGS["n_epochs"]]
        assert {row["dataset"] for row in chosen} == {"synthetic-cifar100", "digits"}
    # every deep method's declared row exists; the presets file is the one read at import
    for cls in registered_methods().values():
        if cls.family == "deep":
            assert cls.feature_preset in FEATURE_PRESETS
    assert read_feature_presets() == FEATURE_PRESETS


def test_a_broken_presets_file_is_a_clear_error():
    header = "preset,optimizer,learning_rate,weight_decay,lr_schedule,n_epochs,batch_size\n"
    with pytest.raises(InvalidInputError, match="lacks .*batch_size"):
        read_feature_presets(header + "default,rmsprop,0.001,0.0005,cosine,30,\n")
    with pytest.raises(InvalidInputError, match="line 2"):
        read_feature_presets(header + "default,rmsprop,fast,0.0005,cosine,30,32\n")
    with pytest.raises(InvalidInputError, match="no 'default' row"):
        read_feature_presets(header + "other,rmsprop,0.001,0.0005,cosine,30,32\n")

    class Unvalidated(CSQ):
        feature_preset = "nope"

    with pytest.raises(InvalidInputError, match="not a row of .*deep_feature_presets.csv"):
        Unvalidated().resolved_settings()
