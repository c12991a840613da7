"""The one training loop of every deep hashing method: ``DeepTrainer`` runs one fit of a
``DeepHashingMethod`` (data, optimiser, learning-rate schedule, divergence checks, per-epoch log).

Created by ``DeepHashingMethod.fit`` and then discarded. Trainer services for hooks:
``trainer.forward_all(fn)`` runs ``fn(backbone_features)`` without gradients over the whole
training set (in training order, batched, eval mode) and concatenates the results --
``trainer.outputs_all()`` is ``forward_all(head)``; ``trainer.log(name, value)`` appends to
``training_log_[name]``; attributes ``n_train``, ``n_classes``, ``train_labels``, ``class_counts``,
``epoch``, ``global_step``, ``steps_per_epoch``, ``total_steps``, ``n_epochs``, ``batch_size``,
``device``, ``head``, ``backbone``, ``optimizer``, ``scheduler``, ``generator`` (a seeded
``torch.Generator`` for any randomness a method needs; never use global RNG).

In ``mode="features"`` the whole training matrix is one tensor on the device and batches are rows
picked by a seeded ``torch.Generator`` permutation; in ``mode="finetune"`` batches of images come
from a ``DataLoader`` over the image source (``backbone.py``) in the same seeded order, under
bfloat16 autocast on CUDA. A non-finite training loss raises ``TrainingDivergedError`` naming the
method, epoch and the fix; the loss is checked on the host only every ``_DIVERGENCE_CHECK_EVERY``
steps and at each epoch's end (one host synchronisation per epoch otherwise).
"""
from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..base import InvalidInputError
from .backbone import BACKBONE_FEATURE_DIM, OrderSampler, build_resnet34_backbone, image_loader
from .settings import LR_FLOOR_DIVISOR

if TYPE_CHECKING:  # pragma: no cover
    from .base import DeepHashingMethod

_DIVERGENCE_CHECK_EVERY = 512  # steps between the (single) host syncs that look for a non-finite loss


class TrainingDivergedError(InvalidInputError, RuntimeError):
    """The training loss became NaN/inf: the optimisation diverged (usually a learning rate too large)."""


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


def _backbone_seed(method) -> int:
    """The seed of a randomly initialised backbone: ``random_state`` (or a fresh draw when None)."""
    if method.random_state is None:
        return int(torch.randint(0, 2**31 - 1, (1,)).item())
    return int(method.random_state)


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
            self.backbone = build_resnet34_backbone(method.backbone_weights, _backbone_seed(method)).to(device)
            self.backbone.train()
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
                    loader = image_loader(self.image_source, list(range(self.n_train)),
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
                self._sampler = OrderSampler(order.tolist())
                self._loader = image_loader(self.image_source, self._sampler, self.batch_size,
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
