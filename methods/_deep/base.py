"""The base class of every deep hashing method: ``DeepHashingMethod`` holds the trainer's
parameters, resolves its settings, runs ``DeepTrainer`` in ``fit`` and encodes.

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
(``TRAINER_PARAMETERS`` in ``settings.py``: mode, settings, learning_rate, n_epochs, batch_size, ...) pass
through ``**trainer_params`` and are still seen by ``get_params``/``set_params``/``clone``
(``_get_param_names`` is extended below), so grid search and the registry work unchanged.

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

* ``hash_layers(head) -> list[nn.Linear]``: the layer(s) ``head_init`` initialises (default:
  ``head.hash_layer`` or every ``nn.Linear`` with n_bits outputs; see ``trunk.py``).
* ``validate_params()``: checks every parameter value without data (the runner calls it when it
  reads a method spec, ``fit`` calls it first); a method extends it with its own checks.

Class attributes: ``feature_preset`` names the row of ``methods/data/deep_feature_presets.csv``
that ``settings="features"`` uses when the file has no row named after the method itself
(``feature_row()``: a validated method reads its own row; ``"default"`` otherwise);
``reference_head_init`` the initialisation of the hash layer in the method's reference code
(``"normal"``, ``"pytorch"`` or ``"as_built"``: see ``trunk.py``); ``brings_own_trunk`` (with
``own_trunk(head)``) marks a method whose network starts with its own trunk-like layer (LTHNet),
which then gets no shared trunk.

Network capacity (``trunk``, ``trunk.py``): in ``mode="features"`` every head is built on a shared
trainable trunk ``Linear(in_dim, 2000)`` + ReLU (LTHNet's direct-feature layer's width and
activation), standing in for the fine-tuned top of the backbone; ``trunk="none"`` gives the bare
heads. Runner hooks ``progress_callback_`` and ``diagnostic_callback_``: see ``trainer.py``.

Trainer services for hooks (``forward_all``, ``log``, ``n_train``, ``class_counts``, ``generator``...):
see ``trainer.py``.

Modes: ``mode="features"`` (default): the ResNet34 backbone is frozen and its 512-d output cached,
so X is the cached feature matrix (n, d) and the trunk and the head are trained (CPU, or GPU when
``device`` says so). ``mode="finetune"``: ResNet34 plus the head are trained end to end on an image source
(``backbone.py``), on the GPU with bfloat16 autocast when CUDA is available.

The final epoch's network is kept: no epoch is ever selected on query data (the reference code
keeps the best epoch by query MAP; we do not).

Determinism: parameters are initialised and batches drawn under ``torch.random.fork_rng`` seeded
from ``random_state`` with a dedicated ``torch.Generator``; the global RNG state is left untouched.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from common.checks import check_nonnegative_int, check_positive_int

from ..base import HashingMethod, InvalidInputError, binarize, check_features, check_labels
from .backbone import check_image_source, image_loader
from .settings import (DEFAULT_FEATURE_PRESET, FEATURE_PRESETS, PAPER_SETTINGS, TRAINER_PARAMETERS, check_mode,
                       resolve_settings)
from .trainer import DeepTrainer, TrainingDivergedError, codes_tensor
from .trunk import check_head_init, find_hash_layers, resolve_trunk

#: instance attributes the runner may set for one fit; never kept after it, never pickled
RUNNER_HOOKS = ("progress_callback_", "diagnostic_callback_")


class DeepHashingMethod(HashingMethod):
    """Base of the deep hashing methods: subclasses supply ``build_head`` and ``loss`` (see module doc).

    Fitted attributes: ``head_`` (the trained head, on CPU), ``trunk_`` (the trained shared trunk
    or None), ``backbone_`` (fine-tuned ResNet34 or None), ``n_classes_``, ``training_log_``
    ({"loss": per-epoch mean loss, "learning_rate": ...}), ``settings_`` (the resolved settings:
    optimisation, ``preset``, ``batch_size_source``, ``dataset``, ``trunk``, ``head_init``).
    """

    family: ClassVar[str] = "deep"
    uses_labels: ClassVar[bool] = True
    #: batch size used by encode and by forward_all (no gradients, so larger than training batches)
    encode_batch_size: ClassVar[int] = 1024
    #: the row of methods/data/deep_feature_presets.csv that ``settings="features"`` uses
    feature_preset: ClassVar[str] = DEFAULT_FEATURE_PRESET
    #: the hash layer's initialisation in the method's reference code (trunk.py REFERENCE_HEAD_INITS)
    reference_head_init: ClassVar[str] = "as_built"
    #: True for a method whose network starts with its own trunk (LTHNet): no shared trunk is added
    brings_own_trunk: ClassVar[bool] = False
    #: runner hooks (trainer.py): set on an instance for one fit, reset after it, never pickled
    progress_callback_: ClassVar[Callable | None] = None
    diagnostic_callback_: ClassVar[Callable | None] = None

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, mode: str = "features",
                 settings: str = "auto", optimizer: str | None = None, learning_rate: float | None = None,
                 weight_decay: float | None = None, lr_schedule: str | None = None,
                 n_epochs: int | None = None, batch_size: int | None = None, n_classes: int | None = None,
                 dataset: str | None = None, trunk: str = "auto", head_init: str = "reference",
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
        self.dataset = dataset
        self.trunk = trunk
        self.head_init = head_init
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

    def hash_layers(self, head: nn.Module) -> list:
        """The layer(s) of ``head`` that ``head_init`` initialises: ``head.hash_layer`` when it is a
        ``nn.Linear``, else every ``nn.Linear`` with n_bits outputs (``trunk.py``)."""
        return find_hash_layers(head, int(self.n_bits))

    def own_trunk(self, head: nn.Module) -> nn.Module | None:
        """The method's own trunk inside ``head`` (only for ``brings_own_trunk`` methods)."""
        return None

    # -------------------------------------------------------------- settings
    @classmethod
    def feature_row(cls) -> str:
        """The row of the presets file that ``settings="features"`` uses: the method's own row (its
        registry name: the configuration its own validation rows chose) when the file has one,
        else the row ``feature_preset`` names (a plugin's default: ``"default"``, chosen over every
        validated method)."""
        own = getattr(cls, "name", None)
        return own if own and own in FEATURE_PRESETS else cls.feature_preset

    def resolved_settings(self) -> dict:
        """The settings of this run: the ``settings`` preset (``"auto"`` resolved by ``mode``;
        ``"features"``: the row ``feature_row()`` of the presets file; ``"paper"``: §6.3 with the
        method's batch size on ``dataset``), overridden by the explicit parameters; ``"preset"``
        names the preset used (see ``settings.py``); plus the resolved ``trunk`` and ``head_init``."""
        overrides = {key: getattr(self, key) for key in PAPER_SETTINGS}
        resolved = resolve_settings(self.settings, self.mode, overrides, type(self).feature_row(),
                                    method=type(self).name or type(self).__name__, dataset=self.dataset)
        resolved["trunk"] = resolve_trunk(self.trunk, self.mode, type(self).brings_own_trunk, type(self).__name__)
        resolved["head_init"] = check_head_init(self.head_init)
        return resolved

    def validate_params(self) -> None:
        """Check every parameter value without data: n_bits, mode, the settings (each optimisation
        value), trunk, head_init, n_classes; a subclass extends it with its own parameters. Raises
        InvalidInputError naming the parameter."""
        super().validate_params()
        check_mode(self.mode)
        self.resolved_settings()
        if self.n_classes is not None:
            check_positive_int(self.n_classes, "n_classes", error=InvalidInputError)
        if self.n_threads is not None:
            check_positive_int(self.n_threads, "n_threads", error=InvalidInputError)
        check_nonnegative_int(self.num_workers, "num_workers", error=InvalidInputError)

    def __getstate__(self):
        state = super().__getstate__()
        for name in RUNNER_HOOKS:
            state.pop(name, None)  # a runner's callback is no part of the fitted model
        return state

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
        try:
            return self._fit_network(X, y)
        finally:
            for name in RUNNER_HOOKS:
                self.__dict__.pop(name, None)  # back to the class attribute None

    def _fit_network(self, X, y):
        self.validate_params()
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
        self.trunk_ = trainer.trunk.cpu().eval() if trainer.trunk is not None else None
        self.backbone_ = trainer.backbone.cpu().eval() if trainer.backbone is not None else None
        self.training_log_ = trainer.training_log
        self.is_fitted_ = True
        return self

    @torch.no_grad()
    def network_relaxed_codes(self, X, head: nn.Module, trunk: nn.Module | None, backbone: nn.Module | None,
                              device: torch.device) -> np.ndarray:
        """The real-valued codes of X through backbone -> trunk -> head (modules on ``device``, in
        the mode the caller set), as float32 (n, n_bits); the fitted network's and the trainer's."""
        chunks = []
        autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                    if device.type == "cuda" else contextlib.nullcontext())
        with autocast:
            if self.mode == "features":
                X = check_features(X, n_features=self.n_features_in_).astype(np.float32)
                inputs = torch.from_numpy(X)
                for start in range(0, X.shape[0], self.encode_batch_size):
                    features = inputs[start:start + self.encode_batch_size].to(device)
                    if trunk is not None:
                        features = trunk(features)
                    chunks.append(self.codes_from_outputs(head(features)).float().cpu())
            else:
                source = check_image_source(X)
                loader = image_loader(source, list(range(len(source))), 128, self.num_workers, device)
                for images, _ in loader:
                    features = backbone(images.to(device, non_blocking=True))
                    if trunk is not None:
                        features = trunk(features)
                    chunks.append(self.codes_from_outputs(head(features)).float().cpu())
        codes = torch.cat(chunks).numpy()
        if not np.isfinite(codes).all():
            raise TrainingDivergedError(
                f"{type(self).__name__}: the network outputs NaN/inf codes; the training diverged. "
                "Lower learning_rate and fit again."
            )
        return codes

    def relaxed_codes(self, X) -> np.ndarray:
        """The real-valued (tanh) codes of X in eval mode, as float32 (n, n_bits)."""
        self._check_fitted()
        device = self._torch_device()
        modules = [module for module in (self.head_, getattr(self, "trunk_", None), self.backbone_)
                   if module is not None]
        for module in modules:
            module.to(device).eval()
        try:
            with self._torch_context(device):
                return self.network_relaxed_codes(X, self.head_, getattr(self, "trunk_", None), self.backbone_,
                                                  device)
        finally:
            if device.type != "cpu":
                for module in modules:
                    module.cpu()

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
