"""The deep trainer's optimisation settings: the paper's §6.3 preset, the validated frozen-feature
presets (read from methods/data/deep_feature_presets.csv) and their resolution for one fit.

``settings`` names a preset; explicit parameters (``learning_rate=...``, ``n_epochs=...``,
``batch_size=...``, ``optimizer=...``, ``weight_decay=...``, ``lr_schedule=...``) override single
values of it. The resolved values of a fit are ``settings_`` (with ``settings_["preset"]``, the
preset actually used), and the runner stores them in every cell's record.

* ``settings="auto"`` (default): ``"features"`` in ``mode="features"``, ``"paper"`` in
  ``mode="finetune"``.
* ``settings="paper"``: §6.3 of the LTHNet paper, used for every deep method there: RMSprop,
  learning rate 1e-5, weight decay 5e-4, cosine annealing, 100 epochs, batch size 8 (CIFAR-100;
  the paper uses 16 on ImageNet100: pass ``batch_size=16``). One flag away in feature mode, e.g.
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


def resolve_settings(settings: str, mode: str, overrides: dict[str, Any], feature_row: str = DEFAULT_FEATURE_PRESET) -> dict:
    """The optimisation settings of one fit: the ``settings`` preset (``"auto"`` resolved by ``mode``;
    ``"features"`` = the row ``feature_row``), single values replaced by the non-None ``overrides``,
    checked; ``"preset"`` names the preset used."""
    name = preset_name(settings, mode)
    resolved = feature_preset(feature_row) if name == "features" else dict(SETTINGS_PRESETS[name])
    for key in resolved:
        value = overrides.get(key)
        if value is not None:
            resolved[key] = value
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
    return resolved
