"""OrthoHash: "One Loss for All: Deep Hashing with a Single Cosine Similarity based Learning Objective"
(Hoe, Ng, Zhang, Chan, Song & Xiang, NeurIPS 2021), trained by the shared deep trainer (methods/_deep/).

Reference code: kamwoh/orthohash (functions/loss/orthohash.py, models/alexnet.py,
scripts/train_hashing.py, main.py; line numbers below at commit 94c4a03).

Each class c gets a fixed binary code o_c in {-1, +1}^K (the codebook); the network's continuous
code v is pulled towards its class's code by a cosine-margin cross-entropy:

    L = CE( s (cos(v, o_c) - m [c = y])_c , y )  +  q Q(v),   cos(v, o) = v.o / (|v| |o|)

(``margin_type="arc"``: s cos(arccos(cos(v, o_c)) + m [c = y]) instead, arccos of the cosine clamped
to +-0.99999). Q is the optional quantisation term, off by default: "cs" mean(1 - cos(v, sgn v)),
"l1" mean |v - sgn v|, "l2" mean (v - sgn v)^2, sgn v without gradient (orthohash.py lines 105-113).

Head (models/alexnet.py lines 61-66): v = BatchNorm1d(W x), W the hash layer, a linear layer to K
without bias, BatchNorm momentum 0.1 (the BN layer is the paper's code balancing); codes are sgn(v).
Logits are the cosine similarities of v with the codebook rows (``CosSim``, fixed codebook).
Hash-layer initialisation (``head_init="reference"``): weights N(0, 0.01^2) (line 66;
``reference_head_init = "normal"``; no bias to zero).

Codebook (fitted attribute ``codebook_``; scripts/train_hashing.py lines 257-265), drawn from a
``torch.Generator`` seeded with ``random_state`` -- the same draws as the reference's global RNG
after ``torch.manual_seed(seed)``, so ``random_state=S`` gives the codebook of the reference's
``--seed S``:
* "bernoulli" (default, main.py line 37 ``--codebook-method B``): every entry +-1 with
  probability 1/2, independently (two classes can share a code when 2^K is small against C^2).
* "optimized" (``O``, ``get_codebook`` lines 22-60): random sign vectors accepted one by one when
  their normalised Hamming distance to every accepted code is >= d, d starting at 0.61 and lowered
  by 0.01 after each 10,000 rejections (an error below 0.2), then the rows permuted at random.
  (The reference's "N", sign of Gaussian vectors, has the same distribution as "bernoulli".)

Hyperparameters and their sources (main.py defaults, which the README says give the paper's results):
* ``scale`` s = 8 (line 27 ``--scale``; orthohash.py line 30).
* ``margin`` m = 0.2 (line 28 ``--margin``; the README's CIFAR-10 command uses 0.3).
* ``margin_type`` = "cos" (line 29); "arc" is the reference's alternative.
* ``quantization_weight`` q = 0 (line 31 ``--quan``: the single-loss model), ``quantization_type``
  = "cs" (line 32). The cross-entropy weight (``--ce``, line 30) is 1 and not a parameter here.
* ``codebook`` = "bernoulli" (line 37).
* Optimisation: the shared trainer (the paper's §6.3 settings in finetune mode, with the
  reference's batch 256 -- main.py line 19, methods/data/finetune_protocol.csv; the default preset
  row of ``settings="features"`` on frozen features). Not used: the reference's Adam lr 1e-4, weight
  decay 5e-4, 100 epochs, step decay x0.1 at 80% of the epochs and a 0.1x backbone learning rate
  (main.py lines 20-21, 66-79; train_hashing.py line 272).

Deliberate deviations:
* The final epoch is kept (the reference reports and saves the best epoch by test MAP beside the
  last one, lines 339-349).
* The reference drops the last incomplete training batch (its loaders use ``drop_last=True``); the
  shared trainer does not, so a last batch of ONE item (n_train = 1 modulo the batch size) would
  leave BatchNorm without batch statistics: such a batch is normalised with the running statistics
  (not updated by it); every other batch is ordinary training-mode BatchNorm.
* Single-label data: the reference's multi-label variants (label smoothing, BCE) are not offered.
* Backbone: the shared ResNet34 (the reference fine-tunes an AlexNet). In "features" mode the head
  sits on the shared trainable trunk (``Linear(512, 2000)`` + ReLU, methods/_deep/trunk.py) over
  frozen ResNet34 features, standing in for the fine-tuned backbone (``mode="finetune"``);
  ``trunk="none"`` gives the bare head.
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._deep import DeepHashingMethod
from .base import InvalidInputError
from .registry import register

MARGIN_TYPES = ("cos", "arc")
QUANTIZATION_TYPES = ("cs", "l1", "l2")
CODEBOOKS = ("bernoulli", "optimized")
#: orthohash.py lines 61, 67: arccos of the cosine is taken after clamping it to +-ARC_CLAMP
ARC_CLAMP = 0.99999


def bernoulli_codebook(n_classes: int, n_bits: int, generator: torch.Generator) -> torch.Tensor:
    """(C, K) codes of independent fair +-1 entries (train_hashing.py lines 259-261)."""
    return torch.bernoulli(torch.full((n_classes, n_bits), 0.5), generator=generator) * 2.0 - 1.0


def optimized_codebook(n_classes: int, n_bits: int, generator: torch.Generator, *, max_tries: int = 10_000,
                       initial_distance: float = 0.61, min_distance: float = 0.2,
                       distance_step: float = 0.01) -> torch.Tensor:
    """Greedy codebook with a large minimum Hamming distance (``get_codebook``, lines 22-60; the
    defaults are its defaults).

    A candidate sgn(N(0, I)) is accepted when its normalised Hamming distance to every accepted code
    is >= d; after ``max_tries`` rejections d drops by ``distance_step``; below ``min_distance`` the
    search fails (InvalidInputError). The accepted rows are finally permuted at random. Same draws,
    in the same order, and the same float32 comparison as the reference, hence the same codebook.
    """
    codebook = np.zeros((n_classes, n_bits), dtype=np.float32)
    bits, half = np.float32(n_bits), np.float32(0.5)
    accepted, rejections, distance = 0, 0, initial_distance
    while accepted < n_classes:
        candidate = torch.randn(n_bits, generator=generator).sign().numpy()
        hamming = half * (bits - codebook[:accepted] @ candidate) / bits  # float32, as the reference
        if bool((hamming < np.float32(distance)).any()):
            rejections += 1
        else:
            codebook[accepted] = candidate
            accepted += 1
        if rejections >= max_tries:
            rejections = 0
            distance -= distance_step
            if distance < min_distance:
                raise InvalidInputError(
                    f"no codebook of {n_classes} codes of {n_bits} bits has a normalised Hamming distance "
                    f">= {min_distance} between any two codes (codebook='optimized'); use more bits or "
                    "codebook='bernoulli'."
                )
    return torch.from_numpy(codebook)[torch.randperm(n_classes, generator=generator)]


def cosine_logits(code_logits: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """cos(v_i, o_c) for every item i and class c (models/alexnet.py ``CosSim``)."""
    return F.normalize(code_logits, dim=1) @ F.normalize(codebook, dim=1).T


def margin_logits(cosines: torch.Tensor, labels: torch.Tensor, scale: float, margin: float,
                  margin_type: str = "cos") -> torch.Tensor:
    """s (cos - m [c = y]) ("cos") or s cos(arccos(cos) + m [c = y]) ("arc"), orthohash.py 49-71."""
    target_margin = margin * F.one_hot(labels, cosines.shape[1]).to(cosines.dtype)
    if margin_type == "cos":
        return scale * (cosines - target_margin)
    angles = torch.acos(cosines.clamp(-ARC_CLAMP, ARC_CLAMP))
    return scale * torch.cos(angles + target_margin)


def quantization_error(code_logits: torch.Tensor, quantization_type: str = "cs") -> torch.Tensor:
    """Mean distance of v to sgn(v) (no gradient through the sign): "cs", "l1" or "l2" (lines 105-113)."""
    signs = code_logits.detach().sign()
    if quantization_type == "cs":
        return (1.0 - F.cosine_similarity(code_logits, signs, dim=1)).mean()
    if quantization_type == "l1":
        return (code_logits - signs).abs().mean()
    return (code_logits - signs).pow(2).mean()


def orthohash_loss(code_logits: torch.Tensor, codebook: torch.Tensor, labels: torch.Tensor, *, scale: float,
                   margin: float, margin_type: str = "cos", quantization_weight: float = 0.0,
                   quantization_type: str = "cs") -> torch.Tensor:
    """CE(margin logits of cos(v, codebook), y) + q Q(v) (kamwoh/orthohash ``OrthoHashLoss``)."""
    logits = margin_logits(cosine_logits(code_logits, codebook), labels, scale, margin, margin_type)
    loss = F.cross_entropy(logits, labels)
    if quantization_weight != 0:
        loss = loss + quantization_weight * quantization_error(code_logits, quantization_type)
    return loss


class BatchNormAnyBatch(nn.BatchNorm1d):
    """BatchNorm1d that normalises a training batch of one row with the running statistics (without
    updating them) instead of failing; any larger batch is ordinary BatchNorm."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training and inputs.shape[0] == 1:
            return F.batch_norm(inputs, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(inputs)


class OrthoHashHead(nn.Module):
    """v = BatchNorm(W x), W the hash layer without bias (models/alexnet.py ``hash_fc``; the trainer
    initialises W, see ``reference_head_init``)."""

    def __init__(self, in_dim: int, n_bits: int):
        super().__init__()
        self.hash_layer = nn.Linear(in_dim, n_bits, bias=False)
        self.batch_norm = BatchNormAnyBatch(n_bits, momentum=0.1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.batch_norm(self.hash_layer(features))


@register("OrthoHash")
class OrthoHash(DeepHashingMethod):
    """Cosine-margin cross-entropy against a fixed random codebook; see the module docstring."""

    test_params: ClassVar[dict] = {"settings": "features", "n_epochs": 3, "n_threads": 1}
    reference_head_init: ClassVar[str] = "normal"  # models/alexnet.py line 66: hash_fc weights N(0, 0.01^2)

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, scale: float = 8.0, margin: float = 0.2,
                 margin_type: str = "cos", quantization_weight: float = 0.0, quantization_type: str = "cs",
                 codebook: str = "bernoulli", **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.scale = scale
        self.margin = margin
        self.margin_type = margin_type
        self.quantization_weight = quantization_weight
        self.quantization_type = quantization_type
        self.codebook = codebook

    def validate_params(self) -> None:
        """The trainer's parameters, then the loss's and the codebook's."""
        super().validate_params()
        for name, allowed in (("margin_type", MARGIN_TYPES), ("quantization_type", QUANTIZATION_TYPES),
                              ("codebook", CODEBOOKS)):
            if getattr(self, name) not in allowed:
                raise InvalidInputError(f"OrthoHash {name}={getattr(self, name)!r} is unknown; use one of {allowed}.")
        for name in ("scale", "margin", "quantization_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
                    math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"OrthoHash {name} must be a finite number >= 0, got {value!r}.")
        if self.scale == 0:
            raise InvalidInputError("OrthoHash scale must be positive (it multiplies the cosine logits; "
                                    "reference: 8).")

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return OrthoHashHead(in_dim, self.n_bits)

    def make_codebook(self, n_classes: int) -> torch.Tensor:
        """The (C, K) +-1 codebook of this ``random_state`` (the reference's codebook of ``--seed``)."""
        generator = torch.Generator()
        if self.random_state is None:
            generator.seed()
        else:
            generator.manual_seed(int(self.random_state))
        if self.codebook == "bernoulli":
            return bernoulli_codebook(n_classes, self.n_bits, generator)
        return optimized_codebook(n_classes, self.n_bits, generator)

    def on_fit_start(self, trainer) -> None:
        codebook = self.make_codebook(trainer.n_classes)
        self.codebook_ = codebook.to(torch.int8).numpy()
        self._codebook_tensor = codebook.to(trainer.device)

    def loss(self, outputs, labels, batch_indices):
        return orthohash_loss(outputs.float(), self._codebook_tensor, labels, scale=float(self.scale),
                              margin=float(self.margin), margin_type=self.margin_type,
                              quantization_weight=float(self.quantization_weight),
                              quantization_type=self.quantization_type)

    def on_fit_end(self, trainer) -> None:
        del self._codebook_tensor
