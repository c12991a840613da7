"""The one training loop of every deep hashing method: ``DeepTrainer`` runs one fit of a
``DeepHashingMethod`` (data, optimiser, learning-rate schedule, divergence checks, per-epoch log).

Created by ``DeepHashingMethod.fit`` and then discarded. The network is
backbone (``mode="finetune"`` only) -> trunk (``trunk.py``: the shared trainable trunk, or none)
-> the method's head. Trainer services for hooks: ``trainer.forward_all(fn)`` runs
``fn(features)`` on the features the head sees (the trunk's output, or the backbone's / the input
features without a trunk) without gradients over the whole training set (in training order,
batched, eval mode) and concatenates the results -- ``trainer.outputs_all()`` is
``forward_all(head)``; ``trainer.encode(X)`` the {-1,+1} codes of inputs under the current network
(eval mode); ``trainer.log(name, value)`` appends to ``training_log_[name]``; attributes
``n_train``, ``n_classes``, ``train_labels``, ``class_counts``, ``epoch``, ``global_step``,
``steps_per_epoch``, ``total_steps``, ``n_epochs``, ``batch_size``, ``device``, ``head``, ``trunk``,
``backbone``, ``optimizer``, ``scheduler``, ``generator`` (a seeded ``torch.Generator`` for any
randomness a method needs; never use global RNG).

Runner hooks (class attributes of ``DeepHashingMethod``, set on an instance before ``fit``, reset
to None after it and never pickled): ``progress_callback_(text)`` hears ``"epoch 5/30 loss ..."``
after every epoch; ``diagnostic_callback_(encode) -> float`` is called after every epoch (at
``MAX_DIAGNOSTIC_POINTS`` evenly spaced epochs, the last included, when there are more) with
``encode(X) -> int8 codes`` of the current network; its values are logged as
``training_log_["query_map_diagnostic"] = [{"epoch": 1-based, "map": value}, ...]`` and the seconds
spent in it as ``training_log_["diagnostic_seconds"]``. Nothing in training reads them (the final
epoch is kept), and the global RNG is restored around the call, so a fit with the diagnostic gives
the same network as one without.

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
import time
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from common.allocator import keep_freed_memory

from ..base import InvalidInputError, binarize
from .backbone import BACKBONE_FEATURE_DIM, OrderSampler, build_resnet34_backbone, image_loader
from .optim import make_optimizer
from .settings import LR_FLOOR_DIVISOR
from .trunk import TRUNK_WIDTH, build_trunk, initialise_hash_layers

if TYPE_CHECKING:  # pragma: no cover
    from .base import DeepHashingMethod

_DIVERGENCE_CHECK_EVERY = 512  # steps between the (single) host syncs that look for a non-finite loss
#: the most epochs at which diagnostic_callback_ is called (evenly spaced, the last included): 10,
#: i.e. every 10% of training at the features presets' 30 epochs. Each point encodes the query set
#: and the whole database: on digits at 30 points it cost 36-45% of LTHNet's fit time and 39% of
#: ACHNet's (benchmarks/results/default_run.json), far more where the database dwarfs the
#: long-tail training split (CIFAR-100 size: 60,000 items encoded per point against 2,598 trained)
MAX_DIAGNOSTIC_POINTS = 10
#: training_log_ keys of the query-MAP diagnostic (benchmark/diagnostics.py reads the first)
DIAGNOSTIC_LOG = "query_map_diagnostic"
DIAGNOSTIC_SECONDS_LOG = "diagnostic_seconds"


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


def diagnostic_epochs(n_epochs: int, max_points: int = MAX_DIAGNOSTIC_POINTS) -> list[int]:
    """The 1-based epochs after which the diagnostic runs: every epoch, or ``max_points`` evenly
    spaced ones ending with the last (round(n * i / max_points), i = 1..max_points)."""
    if n_epochs <= max_points:
        return list(range(1, n_epochs + 1))
    return sorted({int(round(n_epochs * i / max_points)) for i in range(1, max_points + 1)})


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
        if device.type == "cpu":
            keep_freed_memory()  # no page faults for each step's fresh gradients (common/allocator.py)
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
        # the trunk first: for one seed every method's trunk (and LTHNet's direct layer) starts equal
        self.trunk = None
        if settings["trunk"] == "shared":
            self.trunk = build_trunk(in_dim).to(device)
            in_dim = TRUNK_WIDTH
        head = method.build_head(in_dim, self.n_classes)
        initialise_hash_layers(method.hash_layers(head), settings["head_init"], type(method).reference_head_init,
                               type(method).__name__)
        self.head = head.to(device)
        parameters = [module for module in (self.backbone, self.trunk, self.head) if module is not None]
        parameters = [parameter for module in parameters for parameter in module.parameters()]
        self.optimizer = make_optimizer(settings, parameters)
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

    def head_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The features the head sees: inputs (images or features) through backbone and trunk."""
        features = inputs if self.backbone is None else self.backbone(inputs)
        return features if self.trunk is None else self.trunk(features)

    def _modules(self) -> list:
        return [module for module in (self.head, self.trunk, self.backbone) if module is not None]

    @contextlib.contextmanager
    def eval_mode(self):
        """Every network part in eval mode inside the block, restored afterwards."""
        modules = self._modules()
        was_training = [module.training for module in modules]
        for module in modules:
            module.eval()
        try:
            yield
        finally:
            for module, mode in zip(modules, was_training):
                module.train(mode)

    @torch.no_grad()
    def forward_all(self, fn: Callable, batch_size: int | None = None):
        """``fn(features)`` (the features the head sees) over the whole training set, without
        gradients, concatenated in training-row order. Networks are in eval mode meanwhile
        (restored afterwards)."""
        chunks = []
        with self.eval_mode(), self._autocast():
            if self.mode == "features":
                step = batch_size or 4096
                for start in range(0, self.n_train, step):
                    chunks.append(fn(self.head_features(self.train_inputs[start:start + step])))
            else:
                loader = image_loader(self.image_source, list(range(self.n_train)),
                                       batch_size or max(self.batch_size, 64), self.method.num_workers,
                                       self.device)
                for images, _ in loader:
                    images = images.to(self.device, non_blocking=True)
                    chunks.append(fn(self.head_features(images)))
        result = _concatenate_outputs(chunks)
        return _to_float32(result)

    def encode(self, inputs) -> np.ndarray:
        """{-1, +1} int8 codes of ``inputs`` (features, or an image source in finetune mode) under
        the network as it is now, in eval mode (training mode restored afterwards)."""
        with self.eval_mode():
            codes = self.method.network_relaxed_codes(inputs, self.head, self.trunk, self.backbone, self.device)
        return binarize(codes)

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
        progress, diagnostic = method.progress_callback_, method.diagnostic_callback_
        diagnostic_at = set(diagnostic_epochs(self.n_epochs)) if diagnostic is not None else set()
        if diagnostic is not None:
            self.training_log[DIAGNOSTIC_LOG] = []
            self.training_log[DIAGNOSTIC_SECONDS_LOG] = 0.0
        method.on_fit_start(self)
        for epoch in range(self.n_epochs):
            self.epoch = epoch
            method.on_epoch_start(epoch, self)
            for module in self._modules():
                module.train()
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
            if epoch + 1 in diagnostic_at:
                self._run_diagnostic(diagnostic, epoch)
            if progress is not None:
                progress(f"epoch {epoch + 1}/{self.n_epochs} loss {mean_loss:.4g}")
        method.on_fit_end(self)

    def _run_diagnostic(self, diagnostic: Callable, epoch: int) -> None:
        """One call of the runner's diagnostic on the current network; the global RNG is restored
        afterwards (an image loader draws from it), so training goes on exactly as without it."""
        start = time.perf_counter()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            value = diagnostic(self.encode)
        try:
            value = float(value)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"diagnostic_callback_ must return a number (the query MAP), got "
                                    f"{type(value).__name__}.") from error
        self.training_log[DIAGNOSTIC_LOG].append({"epoch": epoch + 1, "map": value})
        self.training_log[DIAGNOSTIC_SECONDS_LOG] += time.perf_counter() - start

    def _train_step(self, inputs: torch.Tensor, index: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """One optimisation step on a batch; adds the batch's summed loss to ``loss_sum`` on the
        device (no host synchronisation, no per-sample Python work)."""
        method = self.method
        method.on_step_start(self.global_step, self)
        labels = self.train_labels.index_select(0, index)
        with self._autocast():
            outputs = self.head(self.head_features(inputs))
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


def _make_scheduler(settings: dict, optimizer, total_steps: int):
    schedule = settings["lr_schedule"]
    if schedule == "constant":
        return None
    horizon = total_steps if schedule == "cosine" else settings["n_epochs"]
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(int(horizon), 1), eta_min=settings["learning_rate"] / LR_FLOOR_DIVISOR
    )
