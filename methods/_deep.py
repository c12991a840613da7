"""The one shared training loop of every deep hashing method (DPSH, HashNet, DSDH, CSQ, LTHNet...).

A deep method subclasses ``DeepHashingMethod`` and supplies only its head and its loss; the
trainer here owns the data, the optimiser, the learning-rate schedule, seeding, divergence checks,
the per-epoch loss log and encoding.

How a method plugs in
---------------------
::

    from methods import register
    from methods._deep import DeepHashingMethod

    @register("MyDeepHash")
    class MyDeepHash(DeepHashingMethod):
        def __init__(self, n_bits=64, random_state=0, *, alpha=0.1, **trainer_params):
            super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
            self.alpha = alpha                      # the method's own hyperparameters

        def build_head(self, in_dim, n_classes):    # required: nn.Module on backbone features
            return torch.nn.Sequential(torch.nn.Linear(in_dim, self.n_bits), torch.nn.Tanh())

        def loss(self, outputs, labels, batch_indices):   # required: scalar tensor (graph kept)
            ...

Only the method's own hyperparameters are written in its ``__init__``; the trainer's parameters
(``TRAINER_PARAMETERS`` below: mode, settings, learning_rate, n_epochs, batch_size, ...) pass
through ``**trainer_params`` and are still seen by ``get_params``/``set_params``/``clone``
(``_get_param_names`` is extended here), so grid search and the registry work unchanged.

Hooks (all optional except ``build_head`` and ``loss``), called with the live ``DeepTrainer``:

* ``build_head(in_dim, n_classes) -> nn.Module``: maps backbone features (512-d ResNet34 output,
  or the cached feature matrix's width in "features" mode) to the relaxed codes and whatever else
  the loss needs. Its output is either a tensor of relaxed codes (n, n_bits), or a dict with the key
  ``"codes"``, or a tuple whose first item is the codes (override ``codes_from_outputs`` otherwise).
  Built inside the seeded RNG context, so parameter initialisation is deterministic.
* ``loss(outputs, labels, batch_indices) -> scalar tensor``: ``labels`` are int64 class indices
  (on the training device), ``batch_indices`` the rows of the training set in this batch (int64,
  on the device) -- use them to index a memory bank of all training outputs (DPSH/DSDH's U).
  The live trainer is ``self.trainer_`` during ``fit`` (e.g. ``self.trainer_.global_step``).
* ``on_fit_start(trainer)``: after the head is built, before the first epoch (allocate memory
  banks with ``trainer.n_train``, ``trainer.train_labels``, ``trainer.class_counts``...).
* ``on_epoch_start(epoch, trainer)`` / ``on_epoch_end(epoch, trainer)``: epoch is 0-based.
  LTHNet recomputes its memory at epoch start; DSDH updates W and B at epoch end.
* ``on_step_start(step, trainer)``: before each optimisation step (global step, 0-based), e.g.
  HashNet's continuation schedule. Do no host synchronisation here.
* ``on_fit_end(trainer)``: after the last epoch (e.g. drop memory banks that encode does not need).

Trainer services for hooks: ``trainer.forward_all(fn)`` runs ``fn(backbone_features)`` without
gradients over the whole training set (in training order, batched, eval mode) and concatenates
the results -- ``trainer.outputs_all()`` is ``forward_all(head)``; ``trainer.log(name, value)``
appends to ``training_log_[name]``; attributes ``n_train``, ``n_classes``, ``train_labels``,
``class_counts``, ``epoch``, ``global_step``, ``steps_per_epoch``, ``total_steps``, ``n_epochs``,
``batch_size``, ``device``, ``head``, ``backbone``, ``optimizer``, ``scheduler``, ``generator``
(a seeded ``torch.Generator`` for any randomness a method needs; never use global RNG).

Modes
-----
* ``mode="features"`` (default): the ResNet34 backbone is frozen and its 512-d output cached, so
  X is the cached feature matrix (n, d) and only the head is trained. The whole training matrix is
  one tensor on the device; batches are rows picked by a seeded ``torch.Generator`` permutation.
  Runs on CPU (or GPU when ``device`` says so).
* ``mode="finetune"``: ResNet34 (``backbone_weights="IMAGENET1K_V1"``; ``"random"`` for tests)
  plus the head are trained end to end; X is an image source (``datasets.images.ImageSource``:
  ``len``, ``source[i] -> (image tensor, label)``), in ``fit`` and in ``encode``. Uses the GPU and
  bfloat16 autocast when CUDA is available.

Optimisation settings
---------------------
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
  study on a split held out from the *training* split (never the query set); the grid, the numbers
  and the command are in ``methods.lthnet.FEATURE_SETTINGS_EVIDENCE``. Same optimiser, weight
  decay and schedule as the paper; 30 epochs, batch 32, lr 1e-3 (lr 1e-4 for LTHNet and
  LTHNet_sq: ``FEATURE_SETTINGS_BY_METHOD``).

Cosine annealing: the paper says the cosine annealing of PyTorch "adjust[s] the learning rate
within each epoch". We read it as ``CosineAnnealingLR`` over the whole run, stepped after every
iteration (T_max = total steps), decaying from ``learning_rate`` to ``learning_rate / 100`` (the
floor of the reference code lthNet.py). The reference code itself steps the same schedule once per
epoch (``lr_schedule="cosine_epoch"``); ``"constant"`` switches annealing off.

The final epoch's network is kept: no epoch is ever selected on query data (the reference code
keeps the best epoch by query MAP; we do not).

Determinism: parameters are initialised and batches drawn under ``torch.random.fork_rng`` seeded
from ``random_state`` with a dedicated ``torch.Generator``; the global RNG state is left untouched.
A non-finite training loss raises ``TrainingDivergedError`` naming the method, epoch and the fix.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from .base import HashingMethod, InvalidInputError, binarize, check_features, check_labels

# ---------------------------------------------------------------------------- settings

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

#: Settings for a head trained on frozen cached features, chosen on a validation split held out
#: from the training split (grid, numbers and command: methods/lthnet.py FEATURE_SETTINGS_EVIDENCE).
#: The paper's optimiser, weight decay and schedule; 30 epochs, batch 32 and lr 1e-3 for the
#: baselines' single-layer heads (CSQ validated; DPSH, HashNet, DSDH share the head).
FEATURE_SETTINGS: dict[str, Any] = {
    "optimizer": "rmsprop",
    "learning_rate": 1e-3,
    "weight_decay": 5e-4,
    "lr_schedule": "cosine",
    "n_epochs": 30,
    "batch_size": 32,
}

#: Per-method changes to FEATURE_SETTINGS (by registered name), where the validation study found a
#: clearly different optimum: LTHNet's 2000-wide head with its meta-embedding is unstable at lr 1e-3
#: on CIFAR-like 512-d features (validation MAP 0.19 vs 0.30 at 1e-4).
FEATURE_SETTINGS_BY_METHOD: dict[str, dict[str, Any]] = {
    "LTHNet": {"learning_rate": 1e-4},
    "LTHNet_sq": {"learning_rate": 1e-4},
}

SETTINGS_PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER_SETTINGS, "features": FEATURE_SETTINGS}

#: ``settings="auto"`` picks the preset by mode: frozen features -> FEATURE_SETTINGS, end to end -> paper.
AUTO_SETTINGS: dict[str, str] = {"features": "features", "finetune": "paper"}
SETTINGS_NAMES = ("auto", *SETTINGS_PRESETS)


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
    if mode not in AUTO_SETTINGS:
        raise InvalidInputError(f"mode={mode!r} is unknown; use 'features' (cached features) or 'finetune'.")
    return AUTO_SETTINGS[mode]

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

MODES = ("features", "finetune")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
LR_SCHEDULES = ("cosine", "cosine_epoch", "constant")
#: the cosine schedule decays to learning_rate / LR_FLOOR_DIVISOR (reference lthNet.py: lr / 100)
LR_FLOOR_DIVISOR = 100.0
BACKBONE_FEATURE_DIM = 512  # ResNet34's pooled output
_DIVERGENCE_CHECK_EVERY = 512  # steps between the (single) host syncs that look for a non-finite loss


class TrainingDivergedError(InvalidInputError, RuntimeError):
    """The training loss became NaN/inf: the optimisation diverged (usually a learning rate too large)."""


# ---------------------------------------------------------------------------- helpers


def import_torchvision():
    """torchvision through the project's shim (CPU torch + CUDA torchvision wheels)."""
    from datasets._torchvision import import_torchvision as _import

    return _import()


def build_resnet34_backbone(weights: str = "IMAGENET1K_V1") -> nn.Module:
    """ResNet34 with its classifier removed: images (n, 3, H, W) -> pooled features (n, 512)."""
    torchvision = import_torchvision()
    if weights in (None, "random", "none"):
        model = torchvision.models.resnet34(weights=None)
    else:
        try:
            weight_enum = torchvision.models.ResNet34_Weights[weights]
        except KeyError as error:
            raise InvalidInputError(
                f"backbone_weights={weights!r} is not a torchvision ResNet34 weight set; use "
                "'IMAGENET1K_V1' (the paper's) or 'random'."
            ) from error
        try:
            model = torchvision.models.resnet34(weights=weight_enum)
        except Exception as error:  # download failures, missing cache
            raise InvalidInputError(
                f"could not load ResNet34 {weights} weights ({error}); download them once with "
                "internet access (torchvision caches them under ~/.cache/torch) or pass "
                "backbone_weights='random'."
            ) from error
    model.fc = nn.Identity()
    return model


def codes_tensor(outputs) -> torch.Tensor:
    """The relaxed codes in a head's output: the tensor itself, ``outputs['codes']`` or ``outputs[0]``."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict):
        return outputs["codes"]
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    raise TypeError(f"cannot find the codes in a head output of type {type(outputs).__name__}.")


def _concatenate_outputs(chunks: list):
    first = chunks[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(chunks)
    if isinstance(first, dict):
        return {key: torch.cat([chunk[key] for chunk in chunks]) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(torch.cat([chunk[i] for chunk in chunks]) for i in range(len(first)))
    raise TypeError(f"cannot concatenate outputs of type {type(first).__name__}.")


class _IndexedImages(torch.utils.data.Dataset):
    """Wrap an image source so batches carry row indices: item i -> (image tensor, i)."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        image = self.source[index][0]
        return image, index


class _OrderSampler(torch.utils.data.Sampler):
    """Yields the row order the trainer set for the current epoch (works with persistent workers)."""

    def __init__(self, order: list[int]):
        self.order = order

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


def check_image_source(source, *, name: str = "X"):
    if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")) or isinstance(source, np.ndarray):
        raise InvalidInputError(
            f"mode='finetune' needs {name} to be an image source (len(), source[i] -> (image, label)), "
            f"e.g. datasets.images.ImageSource; got {type(source).__name__}. Pass cached features "
            "with mode='features' instead."
        )
    if len(source) == 0:
        raise InvalidInputError(f"{name} has no images; pass at least one.")
    return source


# ---------------------------------------------------------------------------- the trainer


class DeepTrainer:
    """Runs one fit of a DeepHashingMethod; created by ``DeepHashingMethod.fit`` and then discarded."""

    def __init__(self, method: "DeepHashingMethod", inputs, labels: np.ndarray, settings: dict,
                 device: torch.device, generator: torch.Generator):
        self.method = method
        self.mode = method.mode
        self.device = device
        self.generator = generator
        self.settings = settings
        self.n_epochs = int(settings["n_epochs"])
        self.batch_size = int(settings["batch_size"])
        self.n_train = int(labels.shape[0])
        self.n_classes = int(method.n_classes_)
        self.train_labels = torch.as_tensor(labels, dtype=torch.int64, device=device)
        self.class_counts = torch.bincount(self.train_labels, minlength=self.n_classes)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = self.steps_per_epoch * self.n_epochs
        self.epoch = 0
        self.global_step = 0
        self.training_log: dict[str, list] = {"loss": [], "learning_rate": []}
        self.use_autocast = device.type == "cuda"
        if self.mode == "features":
            self.train_inputs = torch.as_tensor(inputs, dtype=torch.float32).to(device)
            self.image_source = None
            self.backbone = None
            in_dim = self.train_inputs.shape[1]
        else:
            self.train_inputs = None
            self.image_source = inputs
            self.backbone = build_resnet34_backbone(method.backbone_weights).to(device)
            in_dim = BACKBONE_FEATURE_DIM
        self.head = method.build_head(in_dim, self.n_classes).to(device)
        parameters = list(self.head.parameters())
        if self.backbone is not None:
            parameters = list(self.backbone.parameters()) + parameters
        self.optimizer = _make_optimizer(settings, parameters)
        self.scheduler = _make_scheduler(settings, self.optimizer, self.total_steps)
        self._loader = None
        self._sampler = None

    # -------------------------------------------------------------- services for hooks
    def log(self, name: str, value) -> None:
        """Append a value to ``training_log_[name]`` (e.g. one number per epoch)."""
        self.training_log.setdefault(name, []).append(value)

    def _autocast(self):
        if self.use_autocast:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    @torch.no_grad()
    def forward_all(self, fn: Callable, batch_size: int | None = None):
        """``fn(backbone_features)`` over the whole training set, without gradients, concatenated
        in training-row order. Networks are in eval mode meanwhile (restored afterwards)."""
        modules = [self.head] + ([self.backbone] if self.backbone is not None else [])
        was_training = [module.training for module in modules]
        for module in modules:
            module.eval()
        chunks = []
        try:
            with self._autocast():
                if self.mode == "features":
                    step = batch_size or 4096
                    for start in range(0, self.n_train, step):
                        chunks.append(fn(self.train_inputs[start:start + step]))
                else:
                    loader = _image_loader(self.image_source, list(range(self.n_train)),
                                           batch_size or max(self.batch_size, 64), self.method.num_workers,
                                           self.device)
                    for images, _ in loader:
                        images = images.to(self.device, non_blocking=True)
                        chunks.append(fn(self._backbone_features(images)))
        finally:
            for module, mode in zip(modules, was_training):
                module.train(mode)
        result = _concatenate_outputs(chunks)
        return _to_float32(result)

    def outputs_all(self, batch_size: int | None = None):
        """The head's outputs for every training item (no gradients), in training-row order."""
        return self.forward_all(self.head, batch_size)

    # -------------------------------------------------------------- the loop
    def _epoch_batches(self):
        order = torch.randperm(self.n_train, generator=self.generator)
        if self.mode == "features":
            order = order.to(self.device)
            for start in range(0, self.n_train, self.batch_size):
                index = order[start:start + self.batch_size]
                yield self.train_inputs.index_select(0, index), index
        else:
            if self._loader is None:
                self._sampler = _OrderSampler(order.tolist())
                self._loader = _image_loader(self.image_source, self._sampler, self.batch_size,
                                             self.method.num_workers, self.device, persistent=True)
            else:
                self._sampler.order = order.tolist()
            for images, index in self._loader:
                yield images.to(self.device, non_blocking=True), index.to(self.device, non_blocking=True)

    def run(self) -> None:
        method = self.method
        method.on_fit_start(self)
        for epoch in range(self.n_epochs):
            self.epoch = epoch
            method.on_epoch_start(epoch, self)
            self.head.train()
            if self.backbone is not None:
                self.backbone.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            for inputs, index in self._epoch_batches():
                self._train_step(inputs, index, loss_sum)
                if self.global_step % _DIVERGENCE_CHECK_EVERY == 0:
                    self._check_finite(loss_sum, epoch)
            if self.settings["lr_schedule"] == "cosine_epoch":
                self.scheduler.step()
            mean_loss = loss_sum.item() / self.n_train  # the one host sync of the epoch
            self._check_finite(mean_loss, epoch)
            self.training_log["loss"].append(mean_loss)
            self.training_log["learning_rate"].append(self.optimizer.param_groups[0]["lr"])
            method.on_epoch_end(epoch, self)
        method.on_fit_end(self)

    def _train_step(self, inputs: torch.Tensor, index: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """One optimisation step on a batch; adds the batch's summed loss to ``loss_sum`` on the
        device (no host synchronisation, no per-sample Python work)."""
        method = self.method
        method.on_step_start(self.global_step, self)
        labels = self.train_labels.index_select(0, index)
        with self._autocast():
            features = inputs if self.backbone is None else self._backbone_features(inputs)
            outputs = self.head(features)
            loss = method.loss(outputs, labels, index)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None and self.settings["lr_schedule"] == "cosine":
            self.scheduler.step()
        loss_sum += loss.detach().to(torch.float64) * labels.shape[0]
        self.global_step += 1

    def _check_finite(self, value, epoch: int) -> None:
        if isinstance(value, torch.Tensor):
            value = value.item()
        if not math.isfinite(value):
            method = self.method
            raise TrainingDivergedError(
                f"{type(method).__name__}: the training loss became {value} in epoch {epoch + 1}/"
                f"{self.n_epochs} (step {self.global_step}); the optimisation diverged. Lower "
                f"learning_rate (now {self.settings['learning_rate']:g}) -- e.g. settings='paper' "
                "uses 1e-5 -- or check the input features' scale."
            )


def _to_float32(result):
    if isinstance(result, torch.Tensor):
        return result.float() if result.is_floating_point() else result
    if isinstance(result, dict):
        return {key: _to_float32(value) for key, value in result.items()}
    if isinstance(result, (tuple, list)):
        return type(result)(_to_float32(value) for value in result)
    return result


def _image_loader(source, sampler, batch_size, num_workers, device, persistent=False):
    return torch.utils.data.DataLoader(
        _IndexedImages(source), batch_size=batch_size, sampler=sampler, shuffle=False,
        num_workers=num_workers, pin_memory=device.type == "cuda",
        persistent_workers=persistent and num_workers > 0, drop_last=False,
    )


def _make_optimizer(settings: dict, parameters) -> torch.optim.Optimizer:
    # foreach (multi-tensor) updates: PyTorch's default on GPU only; on CPU they save a Python loop
    # over the parameters per step (about 13% of a step of LTHNet's head at batch 8, measured).
    name, lr, weight_decay = settings["optimizer"], settings["learning_rate"], settings["weight_decay"]
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, foreach=True)
    return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay, momentum=0.9, foreach=True)


def _make_scheduler(settings: dict, optimizer, total_steps: int):
    schedule = settings["lr_schedule"]
    if schedule == "constant":
        return None
    horizon = total_steps if schedule == "cosine" else settings["n_epochs"]
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(int(horizon), 1), eta_min=settings["learning_rate"] / LR_FLOOR_DIVISOR
    )


# ---------------------------------------------------------------------------- the base class


class DeepHashingMethod(HashingMethod):
    """Base of the deep hashing methods: subclasses supply ``build_head`` and ``loss`` (see module doc).

    Fitted attributes: ``head_`` (the trained head, on CPU), ``backbone_`` (fine-tuned ResNet34 or
    None), ``n_classes_``, ``training_log_`` ({"loss": per-epoch mean loss, "learning_rate": ...}),
    ``settings_`` (the resolved optimisation settings).
    """

    family: ClassVar[str] = "deep"
    uses_labels: ClassVar[bool] = True
    #: batch size used by encode and by forward_all (no gradients, so larger than training batches)
    encode_batch_size: ClassVar[int] = 1024

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, mode: str = "features",
                 settings: str = "auto", optimizer: str | None = None, learning_rate: float | None = None,
                 weight_decay: float | None = None, lr_schedule: str | None = None,
                 n_epochs: int | None = None, batch_size: int | None = None, n_classes: int | None = None,
                 backbone_weights: str = "IMAGENET1K_V1", device: str | None = None,
                 n_threads: int | None = None, num_workers: int = 0):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.mode = mode
        self.settings = settings
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.n_classes = n_classes
        self.backbone_weights = backbone_weights
        self.device = device
        self.n_threads = n_threads
        self.num_workers = num_workers

    @classmethod
    def _get_param_names(cls):
        """The subclass's own ``__init__`` parameters plus every trainer parameter."""
        names = set(TRAINER_PARAMETERS) | {"n_bits", "random_state"}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for parameter in inspect.signature(init).parameters.values():
                if parameter.name == "self" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                    continue
                names.add(parameter.name)
            if klass is DeepHashingMethod:
                break
        return sorted(names)

    def __repr__(self, N_CHAR_MAX=700):
        """``Name(param=value, ...)`` listing only parameters that differ from their defaults."""
        defaults = dict(TRAINER_PARAMETERS)
        for klass in reversed(type(self).__mro__):
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for parameter in inspect.signature(init).parameters.values():
                if parameter.default is not parameter.empty:
                    defaults[parameter.name] = parameter.default
        changed = {key: value for key, value in self.get_params(deep=False).items()
                   if key not in defaults or repr(defaults[key]) != repr(value)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in sorted(changed.items()))})"

    # -------------------------------------------------------------- hooks for subclasses
    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs, labels: torch.Tensor, batch_indices: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def on_fit_start(self, trainer: DeepTrainer) -> None:
        pass

    def on_epoch_start(self, epoch: int, trainer: DeepTrainer) -> None:
        pass

    def on_step_start(self, step: int, trainer: DeepTrainer) -> None:
        pass

    def on_epoch_end(self, epoch: int, trainer: DeepTrainer) -> None:
        pass

    def on_fit_end(self, trainer: DeepTrainer) -> None:
        pass

    def codes_from_outputs(self, outputs) -> torch.Tensor:
        """The relaxed codes (n, n_bits) inside the head's output."""
        return codes_tensor(outputs)

    # -------------------------------------------------------------- settings
    def resolved_settings(self) -> dict:
        """The optimisation settings of this run: the ``settings`` preset (``"auto"`` resolved by
        ``mode``), overridden by the explicit parameters; ``"preset"`` names the preset used."""
        name = preset_name(self.settings, self.mode)
        resolved = dict(SETTINGS_PRESETS[name])
        if name == "features":
            resolved.update(FEATURE_SETTINGS_BY_METHOD.get(type(self).name, {}))
        for key in resolved:
            value = getattr(self, key)
            if value is not None:
                resolved[key] = value
        if resolved["optimizer"] not in OPTIMIZERS:
            raise InvalidInputError(f"optimizer={resolved['optimizer']!r} is unknown; use one of {OPTIMIZERS}.")
        if resolved["lr_schedule"] not in LR_SCHEDULES:
            raise InvalidInputError(f"lr_schedule={resolved['lr_schedule']!r} is unknown; use one of {LR_SCHEDULES}.")
        for key in ("n_epochs", "batch_size"):
            value = resolved[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise InvalidInputError(f"{key} must be a positive integer, got {value!r}.")
        for key in ("learning_rate", "weight_decay"):
            value = resolved[key]
            if not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"{key} must be a finite non-negative number, got {value!r}.")
        if resolved["learning_rate"] == 0:
            raise InvalidInputError("learning_rate must be positive.")
        resolved["preset"] = name
        return resolved

    def _torch_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        if self.mode == "finetune" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    @contextlib.contextmanager
    def _torch_context(self, device: torch.device):
        """Thread count and a forked, seeded global RNG (restored on exit)."""
        previous_threads = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        devices = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                if self.random_state is not None:
                    torch.manual_seed(int(self.random_state))
                yield
        finally:
            torch.set_num_threads(previous_threads)

    def _generator(self) -> torch.Generator:
        generator = torch.Generator()
        if self.random_state is None:
            generator.seed()
        else:
            generator.manual_seed(int(self.random_state) * 1_000_003 + 17)
        return generator

    # -------------------------------------------------------------- fit / encode
    def fit(self, X, y=None):
        self._check_n_bits()
        if self.mode not in MODES:
            raise InvalidInputError(f"mode={self.mode!r} is unknown; use 'features' (cached features) or 'finetune'.")
        settings = self.resolved_settings()
        if self.mode == "features":
            X = check_features(X).astype(np.float32)
            self.n_features_in_ = X.shape[1]
            n_samples = X.shape[0]
        else:
            X = check_image_source(X)
            n_samples = len(X)
            if y is None:
                y = getattr(X, "labels", None)
            self.n_features_in_ = None
        y = check_labels(y, n_samples)
        n_classes = int(y.max()) + 1 if self.n_classes is None else int(self.n_classes)
        if y.max() >= n_classes:
            raise InvalidInputError(
                f"labels go up to {int(y.max())} but n_classes={n_classes}; labels must be class "
                "indices 0..n_classes-1 (raise n_classes or re-index the labels)."
            )
        self.n_classes_ = n_classes
        self.settings_ = settings
        device = self._torch_device()
        with self._torch_context(device):
            trainer = DeepTrainer(self, X, y, settings, device, self._generator())
            self.trainer_ = trainer
            try:
                trainer.run()
            finally:
                del self.trainer_
        self.head_ = trainer.head.cpu().eval()
        self.backbone_ = trainer.backbone.cpu().eval() if trainer.backbone is not None else None
        self.training_log_ = trainer.training_log
        self.is_fitted_ = True
        return self

    @torch.no_grad()
    def relaxed_codes(self, X) -> np.ndarray:
        """The real-valued (tanh) codes of X in eval mode, as float32 (n, n_bits)."""
        self._check_fitted()
        device = self._torch_device()
        head = self.head_.to(device).eval()
        backbone = self.backbone_.to(device).eval() if self.backbone_ is not None else None
        chunks = []
        with self._torch_context(device):
            autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                        if device.type == "cuda" else contextlib.nullcontext())
            with autocast:
                if self.mode == "features":
                    X = check_features(X, n_features=self.n_features_in_).astype(np.float32)
                    inputs = torch.from_numpy(X)
                    for start in range(0, X.shape[0], self.encode_batch_size):
                        batch = inputs[start:start + self.encode_batch_size].to(device)
                        chunks.append(self.codes_from_outputs(head(batch)).float().cpu())
                else:
                    source = check_image_source(X)
                    loader = _image_loader(source, list(range(len(source))), 128, self.num_workers, device)
                    for images, _ in loader:
                        features = backbone(images.to(device, non_blocking=True))
                        chunks.append(self.codes_from_outputs(head(features)).float().cpu())
        if device.type != "cpu":
            self.head_.cpu()
            if self.backbone_ is not None:
                self.backbone_.cpu()
        codes = torch.cat(chunks).numpy()
        if not np.isfinite(codes).all():
            raise TrainingDivergedError(
                f"{type(self).__name__}: the network outputs NaN/inf codes; the training diverged. "
                "Lower learning_rate and fit again."
            )
        return codes

    def encode(self, X) -> np.ndarray:
        codes = binarize(self.relaxed_codes(X))
        n = len(X)
        if codes.shape != (n, self.n_bits):
            raise RuntimeError(
                f"{type(self).__name__} produced codes of shape {codes.shape}, expected {(n, self.n_bits)}."
            )
        return codes

    def _encode(self, X):  # pragma: no cover - encode is overridden
        return self.relaxed_codes(X)
