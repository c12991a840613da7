"""The shared deep-hashing machinery of every deep method (DPSH, HashNet, DSDH, CSQ, LTHNet...):
a method subclasses ``DeepHashingMethod`` and supplies only its head and its loss.

One job per module:

* ``base.py``: ``DeepHashingMethod``, the base class (parameters, ``fit``/``encode``, the hooks a
  method overrides; how a method plugs in is its docstring);
* ``trainer.py``: ``DeepTrainer``, the one training loop (data, optimiser, schedule, seeding,
  divergence checks, loss log) and ``TrainingDivergedError``;
* ``settings.py``: the optimisation presets (the paper's §6.3, the validated frozen-feature presets
  of ``methods/data/deep_feature_presets.csv``) and their resolution;
* ``trunk.py``: the shared trainable trunk under every head in features mode (``trunk``) and the
  hash layer's initialisation (``head_init``);
* ``backbone.py``: ``mode="finetune"``'s ResNet34 (the project's one builder,
  ``datasets.features.build_backbone``) and its image input.
"""
from .backbone import BACKBONE_FEATURE_DIM, build_resnet34_backbone, check_image_source, import_torchvision
from .base import DeepHashingMethod
from .settings import (
    AUTO_SETTINGS, FEATURE_PRESETS, FEATURE_SETTINGS, FINETUNE_PROTOCOL, LR_FLOOR_DIVISOR, LR_SCHEDULES, MODES,
    OPTIMIZERS, PAPER_SETTINGS, SETTINGS_NAMES, SETTINGS_PRESETS, TRAINER_PARAMETERS, paper_batch_size, preset_name,
    resolve_settings,
)
from .trainer import DeepTrainer, TrainingDivergedError, codes_tensor, diagnostic_epochs
from .trunk import HEAD_INITS, TRUNK_WIDTH, TRUNKS, build_trunk, trainable_parameter_count

__all__ = [
    "DeepHashingMethod", "DeepTrainer", "TrainingDivergedError", "codes_tensor",
    "PAPER_SETTINGS", "FEATURE_SETTINGS", "FEATURE_PRESETS", "SETTINGS_PRESETS", "AUTO_SETTINGS",
    "SETTINGS_NAMES", "TRAINER_PARAMETERS", "MODES", "OPTIMIZERS", "LR_SCHEDULES", "LR_FLOOR_DIVISOR",
    "preset_name", "resolve_settings", "FINETUNE_PROTOCOL", "paper_batch_size", "diagnostic_epochs",
    "TRUNK_WIDTH", "TRUNKS", "HEAD_INITS", "build_trunk", "trainable_parameter_count",
    "BACKBONE_FEATURE_DIM", "build_resnet34_backbone", "check_image_source", "import_torchvision",
]
