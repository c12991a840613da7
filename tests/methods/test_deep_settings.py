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
    # every validated method reads its own row (its registry name), chosen by its own validation rows
    rows = read_feature_presets(open(os.path.join(DATA_DIR, "deep_feature_presets.csv")).read())
    for cls in (CSQ, LTHNet, LTHNetSquare):
        assert cls.feature_row() == cls.name and cls.name in rows
        resolved = cls().resolved_settings()
        assert {k: resolved[k] for k in OPTIMISATION_KEYS} == rows[cls.name]
    assert LTHNet(k=0, use_meta_embedding=False).resolved_settings()["learning_rate"] == rows["LTHNet"]["learning_rate"]

    # a method without a row of its own (a plugin) reads the row its feature_preset names
    class Plugin(CSQ):
        name = "NotValidated"

    assert Plugin.feature_row() == "default"
    assert {k: Plugin().resolved_settings()[k] for k in OPTIMISATION_KEYS} == FEATURE_SETTINGS
    for method, batch_size in ((LTHNet(mode="finetune"), 8), (CSQ(mode="finetune"), 64)):
        finetune = method.resolved_settings()
        assert finetune["preset"] == "paper"
        # §6.3 with the method's fine-tuning batch size (methods/data/finetune_protocol.csv)
        assert {k: finetune[k] for k in OPTIMISATION_KEYS} == {**PAPER_SETTINGS, "batch_size": batch_size}
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
    assert stored["learning_rate"] == FEATURE_PRESETS["CSQ"]["learning_rate"]  # CSQ's own validated row
    assert stored["batch_size"] == FEATURE_PRESETS["CSQ"]["batch_size"]
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
    assert "benchmarks/validate_deep.py" in readme
    for method in ("CSQ", "LTHNet"):  # each validated method's own row, chosen from its own rows
        preset = presets[registered_methods()[method].feature_row()]
        assert preset["preset"] == method and preset["validated_with"] == method and len(preset["rule"]) > 40
        chosen = [row for row in validation if row["method"] == method
                  and float(row["learning_rate"]) == float(preset["learning_rate"])
                  and int(row["batch_size"]) == int(preset["batch_size"])
                  and int(row["n_epochs"]) == int(preset["n_epochs"])]
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
        name = "Unvalidated"  # no row of its own: its feature_preset is read
        feature_preset = "nope"

    with pytest.raises(InvalidInputError, match="not a row of .*deep_feature_presets.csv"):
        Unvalidated().resolved_settings()


# ---------------------------------------------------------------------------- fine-tuning protocol

#: settings="paper"'s batch size per method and dataset (methods/data/finetune_protocol.csv): LTHNet's
#: §6.3 values, every baseline its reference code's
PROTOCOL = {"LTHNet": (8, 16), "LTHNet_sq": (8, 16), "DPSH": (128, 128), "HashNet": (36, 36), "DSDH": (128, 128),
            "CSQ": (64, 64), "DHN": (128, 128), "ACHNet": (8, 8), "OrthoHash": (256, 256)}


@pytest.mark.parametrize("name", sorted(PROTOCOL))
@pytest.mark.parametrize("dataset,column", [("cifar100", 0), ("imagenet100", 1), (None, 0),
                                            ("synthetic-cifar100", 0), ("digits", 0)])
def test_paper_batch_size_is_the_methods_protocol_on_its_dataset(name, dataset, column):
    cls = registered_methods()[name]
    for mode in ("finetune", "features"):
        settings = "auto" if mode == "finetune" else "paper"
        resolved = cls(mode=mode, settings=settings, dataset=dataset).resolved_settings()
        assert resolved["batch_size"] == PROTOCOL[name][column]
        assert resolved["dataset"] == dataset and "finetune_protocol.csv" in resolved["batch_size_source"]
        row = "imagenet100" if column else "cifar100"
        assert f"{name}/{row}" in resolved["batch_size_source"]
        if dataset not in ("cifar100", "imagenet100"):
            assert "has none" in resolved["batch_size_source"]
        # the rest is §6.3 for every method
        assert {k: resolved[k] for k in OPTIMISATION_KEYS if k != "batch_size"} == \
            {k: v for k, v in PAPER_SETTINGS.items() if k != "batch_size"}
    # an explicit batch size still wins, and says so
    explicit = cls(mode="finetune", dataset=dataset, batch_size=12).resolved_settings()
    assert explicit["batch_size"] == 12 and explicit["batch_size_source"] == "batch_size parameter"
    # the feature preset does not depend on the dataset
    assert cls(dataset=dataset).resolved_settings()["batch_size"] == FEATURE_PRESETS[cls.feature_preset]["batch_size"]


def test_every_registered_deep_method_has_protocol_rows_and_sources():
    from methods._deep import FINETUNE_PROTOCOL

    deep = {name for name, cls in registered_methods().items() if cls.family == "deep"}
    assert deep <= set(PROTOCOL)
    assert {key for key in FINETUNE_PROTOCOL} == {(m, d) for m in PROTOCOL for d in ("cifar100", "imagenet100")}
    for row in FINETUNE_PROTOCOL.values():
        assert len(row["source"]) > 30
    rows = read_rows("finetune_protocol.csv")
    assert {(row["method"], row["dataset"]) for row in rows} == set(FINETUNE_PROTOCOL)


def test_a_method_without_protocol_rows_takes_lthnets():
    from methods._deep import paper_batch_size

    size, source = paper_batch_size("MyPlugin", "imagenet100")
    assert size == 16 and "LTHNet's: MyPlugin has no row" in source
    assert paper_batch_size("MyPlugin", None)[0] == 8


def test_a_broken_protocol_file_is_a_clear_error():
    from methods._deep.settings import read_finetune_protocol

    header = "method,dataset,batch_size,source\n"
    good = "LTHNet,cifar100,8,paper\n"
    with pytest.raises(InvalidInputError, match="lacks .*source"):
        read_finetune_protocol(header + "LTHNet,cifar100,8,\n")
    with pytest.raises(InvalidInputError, match="line 3 repeats"):
        read_finetune_protocol(header + good + good)
    with pytest.raises(InvalidInputError, match="batch_size"):
        read_finetune_protocol(header + good + "CSQ,cifar100,0,x\n")
    with pytest.raises(InvalidInputError, match="line 3"):
        read_finetune_protocol(header + good + "CSQ,cifar100,eight,x\n")
    with pytest.raises(InvalidInputError, match="no row"):
        read_finetune_protocol(header + "CSQ,cifar100,64,x\n")
