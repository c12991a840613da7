"""HashNet: Deep Learning to Hash by Continuation (Cao, Long, Wang & Yu, ICCV 2017), trained by the
shared deep trainer (methods/_deep/).

Reference code: thuml/HashNet, pytorch/src (train.py, loss.py, network.py).

Head: h = tanh(beta z), z = W x + b one linear layer (network.py: ``hash_layer = nn.Linear(...)``,
weights N(0, 0.01^2), bias 0, then ``Tanh`` of ``scale * y``). Codes are sgn(z) (= sgn(h)).

Loss of one mini-batch: weighted pairwise cross-entropy over all ordered pairs i != j of the batch

    L = sum_{i != j} w_ij (log(1 + e^{a h_i.h_j}) - s_ij a h_i.h_j) / S,
    w_ij = S / S1 (similar pairs), S / S0 (dissimilar pairs),

i.e. the mean over similar pairs plus the mean over dissimilar pairs.

Hyperparameters and their sources:
* ``sigmoid_scale`` a = 10 / K (train.py: ``"sigmoid_param": 10./config["hash_bit"]``); ``None``
  means 10 / n_bits.
* Imbalance weights S/S1 and S/S0 (loss.py ``pairwise_loss_updated``; the older ``pairwise_loss``
  uses one fixed positive weight ``class_num``, 1.0 in the README's commands). Where a batch has no
  similar pair, only the dissimilar mean counts (and vice versa).
* Continuation: beta = (1 + gamma t)^power with gamma = 0.005, power = 0.5, updated every
  ``step_size`` = 200 iterations t (network.py ``iter_num``/``step_size``/``gamma``/``power``,
  ``init_scale`` 1). Our t is the trainer's global optimisation step.
* log(1 + e^x) by a stable softplus; the reference switches to its linear asymptote above
  ``l_threshold`` = 15, which the softplus reproduces without a threshold.
* Optimisation comes from the shared trainer (paper §6.3 by default, ``settings="features"`` for
  heads on frozen features); the reference uses SGD with a step schedule for 10,000 iterations, so
  beta ends near sqrt(51); under the paper's settings (100 epochs, batch 8) there are many more
  iterations and beta grows further (e.g. ~26 on CIFAR-100 IF=100) -- the schedule is the
  reference's, per iteration.

Deliberate deviation: the reference draws two independent batches and scores the pairs between
them (36 x 36); we score all ordered pairs within the trainer's single batch (i != j; self-pairs
are excluded as they carry no information). In "features" mode only the hash layer is learned on
frozen ResNet34 features (the paper fine-tunes end to end: ``mode="finetune"``).
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register

from ._deep import DeepHashingMethod

CONTINUATION_GAMMA = 0.005
CONTINUATION_POWER = 0.5
CONTINUATION_STEP_SIZE = 200


def continuation_scale(iteration: int, gamma: float = CONTINUATION_GAMMA, power: float = CONTINUATION_POWER,
                       step_size: int = CONTINUATION_STEP_SIZE) -> float:
    """beta = (1 + gamma * t)^power, with t the last multiple of ``step_size`` iterations reached.

    thuml/HashNet pytorch/src/network.py updates the scale every 200 forward passes.
    """
    stepped = (int(iteration) // step_size) * step_size
    return math.pow(1.0 + gamma * stepped, power)


def hashnet_loss(outputs: torch.Tensor, labels: torch.Tensor, sigmoid_scale: float) -> torch.Tensor:
    """Weighted pairwise cross-entropy over all ordered pairs i != j of the batch.

    l_ij = w_ij (log(1 + e^{a h_i.h_j}) - s_ij a h_i.h_j), a = ``sigmoid_scale`` (10/K in the
    reference train.py), w_ij = S/S1 for similar and S/S0 for dissimilar pairs (S1, S0: their counts
    in the batch, S = S1 + S0; thuml/HashNet pytorch/src/loss.py ``pairwise_loss_updated``), summed
    and divided by S -- i.e. mean loss of similar pairs + mean loss of dissimilar pairs. A batch
    without similar (or dissimilar) pairs contributes only the other mean.
    """
    n = outputs.shape[0]
    similarity = (labels[:, None] == labels[None, :]).to(outputs.dtype)
    logits = sigmoid_scale * outputs @ outputs.T
    pair_loss = F.softplus(logits) - similarity * logits
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=outputs.device)
    positive = (similarity > 0) & off_diagonal
    negative = (similarity <= 0) & off_diagonal
    loss = 0.0 * pair_loss.sum()  # keeps the graph when a batch has a single item (no pair)
    if positive.any():
        loss = loss + pair_loss[positive].mean()
    if negative.any():
        loss = loss + pair_loss[negative].mean()
    return loss


class ContinuationHashLayer(nn.Module):
    """z = W x + b, output tanh(beta z); ``beta`` is set from outside (the continuation schedule)."""

    def __init__(self, in_dim: int, n_bits: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, n_bits)
        nn.init.normal_(self.linear.weight, 0.0, 0.01)
        nn.init.zeros_(self.linear.bias)
        self.beta = 1.0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.beta * self.linear(features))


@register("HashNet")
class HashNet(DeepHashingMethod):
    """Weighted pairwise cross-entropy with a tanh continuation (beta grows during training)."""

    test_params: ClassVar[dict] = {"settings": "features", "n_epochs": 3, "n_threads": 1}

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, sigmoid_scale: float | None = None,
                 continuation_step_size: int = CONTINUATION_STEP_SIZE, **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.sigmoid_scale = sigmoid_scale
        self.continuation_step_size = continuation_step_size

    def _sigmoid_scale(self) -> float:
        return 10.0 / self.n_bits if self.sigmoid_scale is None else float(self.sigmoid_scale)

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return ContinuationHashLayer(in_dim, self.n_bits)

    def on_step_start(self, step: int, trainer) -> None:
        trainer.head.beta = continuation_scale(step, step_size=self.continuation_step_size)

    def on_epoch_end(self, epoch: int, trainer) -> None:
        trainer.log("continuation_beta", trainer.head.beta)

    def loss(self, outputs, labels, batch_indices):
        return hashnet_loss(outputs.float(), labels, self._sigmoid_scale())
