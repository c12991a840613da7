"""The deep trainer's optimisation settings: the paper's §6.3 preset, the validated frozen-feature
presets (read from methods/data/deep_feature_presets.csv) and their resolution for one fit.

``settings`` names a preset; explicit parameters (``learning_rate=...``, ``n_epochs=...``,
``batch_size=...``, ``optimizer=...``, ``weight_decay=...``, ``lr_schedule=...``) override single
values of it. The resolved values of a fit are ``settings_`` (with ``settings_["preset"]``, the
preset actually used), and the runner stores them in every cell's record.

* ``settings="auto"`` (default): ``"features"`` in ``mode="features"``, ``"paper"`` in
  ``mode="finetune"``.
* ``settings="paper"``: §6.3 of the LTHNet paper, used for every deep method there: RMSprop,
  learning rate 1e-5, weight decay 5e-4, cosine annealing, 100 epochs; the batch size is the
  method's fine-tuning protocol on the dataset it trains on (``dataset``, set by the runner to the
  benchmark's name): the rows of ``methods/data/finetune_protocol.csv`` (``FINETUNE_PROTOCOL``):
  LTHNet and LTHNet_sq 8 on CIFAR-100 and 16 on ImageNet100 (§6.3), every baseline its reference
  code's batch size (§6.5: the baselines' batch sizes were tuned, not LTHNet's); a dataset without
  rows uses the ``cifar100`` rows, a method without rows LTHNet's. ``settings_["batch_size_source"]``
  says where the batch size came from. One flag away in feature mode, e.g.
  ``--methods "LTHNet(k=3, settings='paper')"`` on the command line.
* ``settings="features"``: the preset for heads on frozen cached features, chosen by a validation
  study on a split held out from the *training* split (never the query set). The presets are the
  rows of ``methods/data/deep_feature_presets.csv`` (``FEATURE_PRESETS``); a method uses the row
  its class attribute ``feature_preset`` names (``"default"``: lr 1e-3, 30 epochs, batch 32;
  LTHNet and LTHNet_sq: ``"lthnet"``, lr 1e-4). The study's numbers are
  ``methods/data/deep_feature_validation.csv``, its protocol and the command that regenerates it
  ``methods/data/README.md``.

Cosine annealing: the paper says the cosine annealing of PyTorch "adjust[s] the learning rate
within each epoch". We read it as ``CosineAnnealingLR`` over the whole run, stepped after every
iteration (T_max = total steps), decaying from ``learning_rate`` to ``learning_rate / 100`` (the
floor of the reference code lthNet.py). The reference code itself steps the same schedule once per
epoch (``lr_schedule="cosine_epoch"``); ``"constant"`` switches annealing off.
"""
from __future__ import annotations

import csv
import io
import math
from importlib import resources
from typing import Any

import numpy as np

from common.checks import check_positive_int
from common.modes import MODES

from ..base import InvalidInputError

#: §6.3 of the paper (all deep methods): RMSprop, lr 1e-5, weight decay 5e-4, cosine annealing,
#: 100 epochs, batch size 8 on CIFAR-100 (16 on ImageNet100).
PAPER_SETTINGS: dict[str, Any] = {
    "optimizer": "rmsprop",
    "learning_rate": 1e-5,
    "weight_decay": 5e-4,
    "lr_schedule": "cosine",
    "n_epochs": 100,
    "batch_size": 8,
}

OPTIMIZERS = ("rmsprop", "adam", "sgd")
LR_SCHEDULES = ("cosine", "cosine_epoch", "constant")
#: the cosine schedule decays to learning_rate / LR_FLOOR_DIVISOR (reference lthNet.py: lr / 100)
LR_FLOOR_DIVISOR = 100.0

#: the package data file of the frozen-feature presets, and how its setting columns are typed
FEATURE_PRESETS_FILE = "data/deep_feature_presets.csv"
_SETTING_TYPES = {"optimizer": str, "learning_rate": float, "weight_decay": float, "lr_schedule": str,
                  "n_epochs": int, "batch_size": int}
DEFAULT_FEATURE_PRESET = "default"


def read_feature_presets(text: str | None = None) -> dict[str, dict[str, Any]]:
    """Preset name -> settings, from the CSV text of ``methods/data/deep_feature_presets.csv``
    (read from the installed package when ``text`` is None)."""
    if text is None:
        text = resources.files("methods").joinpath(FEATURE_PRESETS_FILE).read_text(encoding="utf-8")
    presets: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        missing = [column for column in ("preset", *_SETTING_TYPES) if not row.get(column)]
        if missing:
            raise InvalidInputError(f"methods/{FEATURE_PRESETS_FILE} line {line} lacks {missing}; every "
                                    f"row needs preset, {', '.join(_SETTING_TYPES)}.")
        try:
            presets[row["preset"]] = {key: kind(row[key]) for key, kind in _SETTING_TYPES.items()}
        except ValueError as error:
            raise InvalidInputError(f"methods/{FEATURE_PRESETS_FILE} line {line}: {error}.") from error
    if DEFAULT_FEATURE_PRESET not in presets:
        raise InvalidInputError(f"methods/{FEATURE_PRESETS_FILE} has no {DEFAULT_FEATURE_PRESET!r} row "
                                "(the preset of methods that name none).")
    return presets


#: every frozen-feature preset by row name (methods/data/deep_feature_presets.csv)
FEATURE_PRESETS: dict[str, dict[str, Any]] = read_feature_presets()
#: the default frozen-feature preset (its "default" row): the baselines' single-layer heads
FEATURE_SETTINGS: dict[str, Any] = FEATURE_PRESETS[DEFAULT_FEATURE_PRESET]

SETTINGS_PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER_SETTINGS, "features": FEATURE_SETTINGS}

#: ``settings="auto"`` picks the preset by mode: frozen features -> FEATURE_SETTINGS, end to end -> paper.
AUTO_SETTINGS: dict[str, str] = {"features": "features", "finetune": "paper"}
SETTINGS_NAMES = ("auto", *SETTINGS_PRESETS)

#: the package data file of the fine-tuning protocol: the batch size of settings="paper" per
#: (method, dataset), with its source
FINETUNE_PROTOCOL_FILE = "data/finetune_protocol.csv"
#: the dataset whose rows a dataset without rows of its own uses (the paper's main benchmark)
DEFAULT_PROTOCOL_DATASET = "cifar100"
#: the method whose rows a method without rows of its own uses (§6.3: every deep method took LTHNet's)
DEFAULT_PROTOCOL_METHOD = "LTHNet"


def read_finetune_protocol(text: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, dataset) -> {"batch_size": int, "source": str}, from the CSV text of
    ``methods/data/finetune_protocol.csv`` (read from the installed package when ``text`` is None)."""
    if text is None:
        text = resources.files("methods").joinpath(FINETUNE_PROTOCOL_FILE).read_text(encoding="utf-8")
    protocol: dict[tuple[str, str], dict[str, Any]] = {}
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        missing = [column for column in ("method", "dataset", "batch_size", "source") if not row.get(column)]
        if missing:
            raise InvalidInputError(f"methods/{FINETUNE_PROTOCOL_FILE} line {line} lacks {missing}; every row "
                                    "needs method, dataset, batch_size, source.")
        key = (row["method"], row["dataset"])
        if key in protocol:
            raise InvalidInputError(f"methods/{FINETUNE_PROTOCOL_FILE} line {line} repeats {key}; keep one row "
                                    "per method and dataset.")
        try:
            batch_size = check_positive_int(int(row["batch_size"]), "batch_size", error=InvalidInputError)
        except ValueError as error:
            raise InvalidInputError(f"methods/{FINETUNE_PROTOCOL_FILE} line {line}: {error}.") from error
        protocol[key] = {"batch_size": batch_size, "source": row["source"]}
    needed = (DEFAULT_PROTOCOL_METHOD, DEFAULT_PROTOCOL_DATASET)
    if needed not in protocol:
        raise InvalidInputError(f"methods/{FINETUNE_PROTOCOL_FILE} has no row {needed} (the fallback of "
                                "methods and datasets without rows).")
    return protocol


#: the fine-tuning protocol's batch sizes (methods/data/finetune_protocol.csv)
FINETUNE_PROTOCOL: dict[tuple[str, str], dict[str, Any]] = read_finetune_protocol()


def paper_batch_size(method: str | None, dataset: str | None) -> tuple[int, str]:
    """(batch size, source) of ``settings="paper"`` for ``method`` (a registry name) training on
    ``dataset``: its row of ``FINETUNE_PROTOCOL``; a dataset without rows (None, synthetic data, a
    features file) takes the ``cifar100`` row, a method without rows LTHNet's (§6.3)."""
    datasets = {name for _, name in FINETUNE_PROTOCOL}
    dataset_row = dataset if dataset in datasets else DEFAULT_PROTOCOL_DATASET
    for name, note in ((method, ""), (DEFAULT_PROTOCOL_METHOD, f" (LTHNet's: {method} has no row)")):
        row = FINETUNE_PROTOCOL.get((name, dataset_row))
        if row is not None:
            fallback = "" if dataset_row == dataset else f" (the {dataset_row} row: {dataset!r} has none)"
            return row["batch_size"], f"methods/{FINETUNE_PROTOCOL_FILE} {name}/{dataset_row}{fallback}{note}: {row['source']}"
    row = FINETUNE_PROTOCOL[(DEFAULT_PROTOCOL_METHOD, DEFAULT_PROTOCOL_DATASET)]
    return row["batch_size"], (f"methods/{FINETUNE_PROTOCOL_FILE} {DEFAULT_PROTOCOL_METHOD}/{DEFAULT_PROTOCOL_DATASET} "
                               f"(neither {method!r} nor {dataset_row!r} has a row): {row['source']}")


#: Parameters every deep method accepts (through ``**trainer_params``), with their defaults.
#: ``None`` for an optimisation parameter means "take it from the ``settings`` preset".
TRAINER_PARAMETERS: dict[str, Any] = {
    "mode": "features",
    "settings": "auto",
    "optimizer": None,
    "learning_rate": None,
    "weight_decay": None,
    "lr_schedule": None,
    "n_epochs": None,
    "batch_size": None,
    "n_classes": None,
    "dataset": None,
    "trunk": "auto",
    "head_init": "reference",
    "backbone_weights": "IMAGENET1K_V1",
    "device": None,
    "n_threads": None,
    "num_workers": 0,
}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInputError(f"mode={mode!r} is unknown; use 'features' (cached features) or 'finetune'.")
    return mode


def preset_name(settings: str, mode: str) -> str:
    """The preset that ``settings`` means in ``mode`` ("auto" -> by mode; a preset name -> itself)."""
    if not isinstance(settings, str) or settings not in SETTINGS_NAMES:
        raise InvalidInputError(
            f"settings={settings!r} is unknown; use one of {list(SETTINGS_NAMES)} ('auto' = "
            "'features' in mode='features', 'paper' in mode='finetune'), and override single values "
            "with learning_rate=..., n_epochs=..., batch_size=...."
        )
    if settings != "auto":
        return settings
    return AUTO_SETTINGS[check_mode(mode)]


def feature_preset(row: str) -> dict[str, Any]:
    """The settings of one row of ``FEATURE_PRESETS`` (a method's ``feature_preset``)."""
    if row not in FEATURE_PRESETS:
        raise InvalidInputError(f"feature_preset={row!r} is not a row of methods/{FEATURE_PRESETS_FILE}; "
                                f"use one of {list(FEATURE_PRESETS)} or add the row there.")
    return dict(FEATURE_PRESETS[row])


def resolve_settings(settings: str, mode: str, overrides: dict[str, Any], feature_row: str = DEFAULT_FEATURE_PRESET,
                     method: str | None = None, dataset: str | None = None) -> dict:
    """The optimisation settings of one fit: the ``settings`` preset (``"auto"`` resolved by ``mode``;
    ``"features"`` = the row ``feature_row``; ``"paper"`` = §6.3 with the batch size of ``method``
    on ``dataset`` from the fine-tuning protocol), single values replaced by the non-None
    ``overrides``, checked; ``"preset"`` names the preset used, ``"batch_size_source"`` where the
    batch size came from."""
    name = preset_name(settings, mode)
    if dataset is not None and not isinstance(dataset, str):
        raise InvalidInputError(f"dataset={dataset!r} must be the name of the dataset the method trains on "
                                "(e.g. 'cifar100', 'imagenet100') or None.")
    if name == "features":
        resolved = feature_preset(feature_row)
        source = f"methods/{FEATURE_PRESETS_FILE} row {feature_row!r}"
    else:
        resolved = dict(SETTINGS_PRESETS[name])
        resolved["batch_size"], source = paper_batch_size(method, dataset)
    for key in resolved:
        value = overrides.get(key)
        if value is not None:
            resolved[key] = value
    if overrides.get("batch_size") is not None:
        source = "batch_size parameter"
    if resolved["optimizer"] not in OPTIMIZERS:
        raise InvalidInputError(f"optimizer={resolved['optimizer']!r} is unknown; use one of {OPTIMIZERS}.")
    if resolved["lr_schedule"] not in LR_SCHEDULES:
        raise InvalidInputError(f"lr_schedule={resolved['lr_schedule']!r} is unknown; use one of {LR_SCHEDULES}.")
    for key in ("n_epochs", "batch_size"):
        resolved[key] = check_positive_int(resolved[key], key, error=InvalidInputError)
    for key in ("learning_rate", "weight_decay"):
        value = resolved[key]
        if not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"{key} must be a finite non-negative number, got {value!r}.")
    if resolved["learning_rate"] == 0:
        raise InvalidInputError("learning_rate must be positive.")
    resolved["preset"] = name
    resolved["batch_size_source"] = source
    resolved["dataset"] = dataset
    return resolved
