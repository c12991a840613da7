"""HashNet: Deep Learning to Hash by Continuation (Cao, Long, Wang & Yu, ICCV 2017), trained by the
shared deep trainer (methods/_deep/).

Reference code: thuml/HashNet, pytorch/src (train.py, loss.py, network.py).

Head: h = tanh(beta z), z = W x + b one linear layer (network.py: ``hash_layer = nn.Linear(...)``,
weights N(0, 0.01^2), bias 0 -- ``reference_head_init = "normal"`` -- then ``Tanh`` of
``scale * y``). Codes are sgn(z) (= sgn(h)).

Pairs: each training batch is scored against a memory bank of the latest pre-activation z of EVERY
training item (the batch's own rows written first, detached), read at the current scale:
H = tanh(beta Z). Loss of one mini-batch (i in the batch, j over the training set, j != i):

    L = sum_ij w_ij (log(1 + e^{a h_i.H_j}) - s_ij a h_i.H_j) / S,
    w_ij = S / S1 (similar pairs), S / S0 (dissimilar pairs),

i.e. the mean over similar pairs plus the mean over dissimilar pairs (a pairing without similar
pairs contributes only the dissimilar mean, and vice versa).

Why a memory bank: the reference scores two independently drawn batches against each other (its
batch 36 x 36: train.py ``train_set1``/``train_set2``). At the LTHNet paper's batch 8 on CIFAR-100
class sizes neither one batch nor two independent ones meet similar pairs reliably: 75% of the
batches (IF 1) contain no similar pair, and 53% of the batch pairs still have none across them;
against the bank none is without (``benchmarks/hashnet_pairs.py``, results in
``benchmarks/results/hashnet_pairs.json``). The bank is the pairing DPSH, DHN and DSDH use here.
The bank holds z, not h, so the continuation's current beta applies to every row (no row is
stale in beta); it starts from the initial network's z of every item (one pass over the training
set, ``trainer.forward_all``), so no row is a meaningless zero. Self-pairs (i with its own row)
are excluded: they carry no similarity information.

Hyperparameters and their sources:
* ``sigmoid_scale`` a = 10 / K (train.py: ``"sigmoid_param": 10./config["hash_bit"]``); ``None``
  means 10 / n_bits.
* Imbalance weights S/S1 and S/S0 (loss.py ``pairwise_loss_updated``; the older ``pairwise_loss``
  uses one fixed positive weight ``class_num``, 1.0 in the README's commands).
* Continuation (network.py ``iter_num``/``step_size``/``gamma``/``power``, ``init_scale`` 1):
  beta = (1 + gamma t)^power, gamma = 0.005, power = 0.5, t the reference iteration counter
  stepped every ``continuation_step_size`` = 200 iterations, over the reference's
  ``continuation_iterations`` = 10,000 iterations (train.py ``num_iterations``). Tied to the
  fraction of training done: optimisation step s (0-based) of T is reference iteration
  t_ref = floor(10,000 (s + 1) / T) (network.py counts the forward pass before it scales), so
  beta ends at sqrt(1 + 0.005 x 10,000) = sqrt(51) ~ 7.14 -- where the reference ends -- whatever
  the number of steps (T = 10,000 gives the reference's schedule exactly).
* log(1 + e^x) by a stable softplus; the reference switches to its linear asymptote above
  ``l_threshold`` = 15, which the softplus reproduces without a threshold.
* Optimisation comes from the shared trainer (the paper's §6.3 in finetune mode, the validated
  ``settings="features"`` preset on frozen features); the reference uses SGD with a step schedule.
  Fine-tuning batch size of ``settings="paper"``: methods/data/finetune_protocol.csv.

Deliberate deviations: the memory bank instead of the second batch (above; the gradient flows
through the batch side of each pair only, the bank is a constant). In "features" mode the head
sits on the shared trainable trunk over frozen ResNet34 features (methods/_deep/trunk.py), the
paper fine-tunes end to end (``mode="finetune"``).
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from common.checks import check_positive_int

from ._deep import DeepHashingMethod
from .base import InvalidInputError
from .registry import register

CONTINUATION_GAMMA = 0.005
CONTINUATION_POWER = 0.5
CONTINUATION_STEP_SIZE = 200
#: the reference's training length (train.py ``config["num_iterations"]``)
CONTINUATION_ITERATIONS = 10_000


def continuation_scale(step: int, total_steps: int, reference_iterations: int = CONTINUATION_ITERATIONS,
                       step_size: int = CONTINUATION_STEP_SIZE, gamma: float = CONTINUATION_GAMMA,
                       power: float = CONTINUATION_POWER) -> float:
    """beta at optimisation step ``step`` (0-based) of ``total_steps``: (1 + gamma t)^power with t the
    reference iteration counter at the same fraction of training, floor(reference_iterations
    (step + 1) / total_steps), stepped down to a multiple of ``step_size``. The last step gives
    (1 + gamma reference_iterations)^power (sqrt(51) with the reference's values)."""
    if not 0 <= int(step) < int(total_steps):
        raise InvalidInputError(f"continuation step {step} is outside 0..{total_steps - 1} (total_steps).")
    reference_iteration = (int(reference_iterations) * (int(step) + 1)) // int(total_steps)
    stepped = (reference_iteration // int(step_size)) * int(step_size)
    return math.pow(1.0 + gamma * stepped, power)


def pair_weights(labels_a: torch.Tensor, labels_b: torch.Tensor, exclude_columns: torch.Tensor | None = None,
                 dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(similar, dissimilar) 0/1 masks (len(a), len(b)) of the pairs (i of a, j of b); with
    ``exclude_columns`` (one column per row of a: the row's own item in b) those pairs are in neither."""
    similar = (labels_a[:, None] == labels_b[None, :]).to(dtype)
    dissimilar = 1.0 - similar
    if exclude_columns is not None:
        rows = torch.arange(labels_a.shape[0], device=labels_a.device)
        similar[rows, exclude_columns] = 0.0
        dissimilar[rows, exclude_columns] = 0.0
    return similar, dissimilar


def hashnet_loss(codes_a: torch.Tensor, codes_b: torch.Tensor, similar: torch.Tensor, dissimilar: torch.Tensor,
                 sigmoid_scale: float) -> torch.Tensor:
    """Weighted pairwise cross-entropy between the rows of ``codes_a`` and of ``codes_b``.

    l_ij = w_ij (log(1 + e^{a h_i.h_j}) - s_ij a h_i.h_j), a = ``sigmoid_scale`` (10/K in the
    reference train.py), w_ij = S/S1 for similar and S/S0 for dissimilar pairs (S1, S0: the counts of
    the pairs in the masks ``similar``/``dissimilar`` from ``pair_weights``, S = S1 + S0; thuml/HashNet
    pytorch/src/loss.py ``pairwise_loss_updated``), summed and divided by S -- the mean loss of the
    similar pairs plus the mean loss of the dissimilar ones; a pairing without similar (dissimilar)
    pairs contributes only the other mean. No host synchronisation.
    """
    logits = sigmoid_scale * codes_a @ codes_b.T
    pair_loss = F.softplus(logits) - similar * logits
    n_similar = similar.sum().clamp_min(1.0)
    n_dissimilar = dissimilar.sum().clamp_min(1.0)
    return (pair_loss * similar).sum() / n_similar + (pair_loss * dissimilar).sum() / n_dissimilar


class ContinuationHashLayer(nn.Module):
    """z = W x + b, output {"codes": tanh(beta z), "pre_activation": z}; ``beta`` is set from outside
    (the continuation schedule)."""

    def __init__(self, in_dim: int, n_bits: int):
        super().__init__()
        self.hash_layer = nn.Linear(in_dim, n_bits)
        nn.init.normal_(self.hash_layer.weight, 0.0, 0.01)
        nn.init.zeros_(self.hash_layer.bias)
        self.beta = 1.0

    def forward(self, features: torch.Tensor) -> dict:
        z = self.hash_layer(features)
        return {"codes": torch.tanh(self.beta * z), "pre_activation": z}


@register("HashNet")
class HashNet(DeepHashingMethod):
    """Weighted pairwise cross-entropy against a memory bank, with a tanh continuation (beta grows
    with the fraction of training done, to sqrt(51))."""

    test_params: ClassVar[dict] = {"settings": "features", "n_epochs": 3, "n_threads": 1}
    reference_head_init: ClassVar[str] = "normal"  # network.py: hash_layer weights N(0, 0.01^2), bias 0

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, sigmoid_scale: float | None = None,
                 continuation_step_size: int = CONTINUATION_STEP_SIZE,
                 continuation_iterations: int = CONTINUATION_ITERATIONS, **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.sigmoid_scale = sigmoid_scale
        self.continuation_step_size = continuation_step_size
        self.continuation_iterations = continuation_iterations

    def validate_params(self) -> None:
        super().validate_params()
        check_positive_int(self.continuation_step_size, "HashNet continuation_step_size", error=InvalidInputError,
                           hint="reference: 200")
        check_positive_int(self.continuation_iterations, "HashNet continuation_iterations", error=InvalidInputError,
                           hint="reference: 10000")
        if self.sigmoid_scale is not None:
            value = self.sigmoid_scale
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InvalidInputError(f"HashNet sigmoid_scale must be a positive number or None (10 / n_bits, the "
                                        f"reference's), got {value!r}.")

    def _sigmoid_scale(self) -> float:
        return 10.0 / self.n_bits if self.sigmoid_scale is None else float(self.sigmoid_scale)

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return ContinuationHashLayer(in_dim, self.n_bits)

    def on_fit_start(self, trainer) -> None:
        # the bank of pre-activations z of every training item, from the initial network
        self.pre_activation_bank_ = trainer.forward_all(trainer.head.hash_layer).float()
        self.code_bank_ = torch.tanh(trainer.head.beta * self.pre_activation_bank_)
        self._bank_beta = trainer.head.beta
        self._epoch_pair_counts = torch.zeros(2, dtype=torch.float64, device=trainer.device)

    def on_step_start(self, step: int, trainer) -> None:
        trainer.head.beta = continuation_scale(step, trainer.total_steps, self.continuation_iterations,
                                               self.continuation_step_size)

    def on_epoch_start(self, epoch: int, trainer) -> None:
        self._epoch_pair_counts.zero_()

    def on_epoch_end(self, epoch: int, trainer) -> None:
        trainer.log("continuation_beta", trainer.head.beta)
        without, similar = self._epoch_pair_counts.tolist()
        trainer.log("batches_without_similar_pair", without / trainer.steps_per_epoch)
        trainer.log("similar_pairs_per_batch", similar / trainer.steps_per_epoch)

    def loss(self, outputs, labels, batch_indices):
        codes = outputs["codes"].float()
        beta = self.trainer_.head.beta
        if beta != self._bank_beta:  # the continuation stepped: every row at the new scale
            torch.tanh(beta * self.pre_activation_bank_, out=self.code_bank_)
            self._bank_beta = beta
        self.pre_activation_bank_[batch_indices] = outputs["pre_activation"].detach().float()
        self.code_bank_[batch_indices] = codes.detach()
        similar, dissimilar = pair_weights(labels, self.trainer_.train_labels, batch_indices)
        n_similar = similar.sum()
        self._epoch_pair_counts[0] += (n_similar == 0).to(torch.float64)
        self._epoch_pair_counts[1] += n_similar.to(torch.float64)
        return hashnet_loss(codes, self.code_bank_, similar, dissimilar, self._sigmoid_scale())

    def on_fit_end(self, trainer) -> None:
        # only needed while training; keeps the fitted model small
        del self.pre_activation_bank_, self.code_bank_, self._bank_beta, self._epoch_pair_counts
