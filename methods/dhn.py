"""DHN: Deep Hashing Network (Zhu, Long, Wang & Cao, "Deep Hashing Network for Efficient Similarity
Retrieval", AAAI 2016), trained by the shared deep trainer (methods/_deep/).

Reference code: swuxyj/DeepHash-pytorch (DHN.py, network.py), the port whose loss we follow; the
authors' TensorFlow code is thulab/DeepHash (DeepHash/model/dhn/dhn.py; see "Not followed" below).

Loss of one mini-batch (u_i: the head's real-valued outputs, U: a memory bank holding the latest
output of EVERY training item, s_ij = 1 iff items i and j share their class):

    L = mean_{i in batch, j in train} (log(1 + e^Theta_ij) - s_ij Theta_ij)
        + alpha mean_{i in batch, k} log cosh(|u_ik| - 1),                 Theta_ij = u_i^T U_j / 2

the pairwise cross-entropy (negative log-likelihood of the pairwise labels) plus the paper's smooth
surrogate of the quantisation error | |u| - 1 |.

Hyperparameters and their sources (line numbers: DeepHash-pytorch DHN.py at commit ab14068):
* ``quantization_weight`` alpha = 0.1 (DHN.py line 19 ``"alpha": 0.1``, used on line 67).
* Theta = u U^T / 2 (line 60 ``* 0.5``); both terms are means, the likelihood over batch x n_train
  pairs (line 64), the quantisation over batch x bits entries (line 67). alpha only means something
  under this normalisation.
* log(1 + e^x) is a stable softplus (the reference writes log(1 + e^-|x|) + max(x, 0), the same
  function, line 62); log cosh x is computed as |x| + log1p(e^{-2|x|}) - log 2, the same value
  without the overflow of cosh for |x| > 89 in float32.
* Memory bank U (lines 52, 56): zeros at the start, each batch's outputs written (detached) into U
  BEFORE the loss, so the batch also meets itself through the bank. Rows not yet visited are zero
  (Theta = 0, a constant log 2 each), as in the reference.
* Head: one linear layer to K outputs, no activation (network.py ``ResNet.hash_layer``); codes are
  sgn(u). Hash-layer initialisation (``head_init="reference"``): weights N(0, 0.01^2), bias 0
  (``reference_head_init = "normal"``), as network.py initialises ``hash_layer``.
* Optimisation (optimiser, learning rate, epochs, schedule) comes from the shared trainer: the
  paper's §6.3 settings in finetune mode, ``settings="features"`` (the default preset row) on frozen
  features. The fine-tuning batch size of ``settings="paper"`` is the reference's 128 (DHN.py line
  25; methods/data/finetune_protocol.csv). Not used: the reference's RMSprop lr 1e-5, weight decay
  1e-5 and 90 epochs (DHN.py lines 21, 38) -- the LTHNet paper's shared settings apply to all.

Deliberate deviations: the reference keeps a bank of one-hot labels Y (zeros for unvisited rows)
and derives s_ij from it; we take s_ij from the training labels directly. The loss value is the
same: an unvisited row has U_j = 0, so s_ij Theta_ij = 0 either way. Single-label data only (the
reference's y Y^T > 0 also covers multi-label data).

Not followed: thulab/DeepHash's TensorFlow DHN (dhn.py ``cross_entropy``, ``apply_loss_function``)
weighs similar pairs by S/S1, scores pairs within the batch only, its example script selects the
normalised (cosine) inner product (examples/dhn/train_val_script.py ``normed_cross_entropy``), and
its quantisation loss is mean((|u| - 1)^2) with ``cq_lambda``; that code departs from the paper's
log cosh penalty, which the PyTorch port keeps.

In "features" mode the head sits on the shared trainable trunk (``Linear(512, 2000)`` + ReLU,
methods/_deep/trunk.py) over frozen ResNet34 features, standing in for the fine-tuned backbone
(``mode="finetune"``); ``trunk="none"`` gives the bare linear head.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ._deep import DeepHashingMethod
from .base import InvalidInputError
from .dpsh import pairwise_similarity
from .registry import register

#: DeepHash-pytorch DHN.py line 19
QUANTIZATION_WEIGHT = 0.1


def log_cosh(values: torch.Tensor) -> torch.Tensor:
    """log(cosh(x)) without overflow: |x| + log(1 + e^{-2|x|}) - log 2."""
    magnitude = values.abs()
    return magnitude + torch.log1p(torch.exp(-2.0 * magnitude)) - math.log(2.0)


def dhn_loss(batch_outputs: torch.Tensor, bank_outputs: torch.Tensor, similarity: torch.Tensor,
             quantization_weight: float) -> torch.Tensor:
    """mean (softplus(Theta) - s Theta) + alpha mean log cosh(|u| - 1), Theta = u U^T / 2.

    ``batch_outputs`` u (b, K), ``bank_outputs`` U (n, K) of all training items (a constant here),
    ``similarity`` s (b, n) in {0, 1}; normalised as swuxyj/DeepHash-pytorch DHN.py (means).
    """
    theta = 0.5 * batch_outputs @ bank_outputs.T
    likelihood = (F.softplus(theta) - similarity * theta).mean()
    quantization = log_cosh(batch_outputs.abs() - 1.0).mean()
    return likelihood + quantization_weight * quantization


@register("DHN")
class DHN(DeepHashingMethod):
    """Deep Hashing Network: pairwise cross-entropy with a memory bank plus a log-cosh quantisation."""

    test_params: ClassVar[dict] = {"settings": "features", "n_epochs": 3, "n_threads": 1}
    reference_head_init: ClassVar[str] = "normal"  # network.py: hash_layer weights N(0, 0.01^2), bias 0

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *,
                 quantization_weight: float = QUANTIZATION_WEIGHT, **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.quantization_weight = quantization_weight

    def validate_params(self) -> None:
        super().validate_params()
        value = self.quantization_weight
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"DHN quantization_weight must be a finite number >= 0 (reference: 0.1), "
                                    f"got {value!r}.")

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return nn.Linear(in_dim, self.n_bits)  # initialised by the trainer (reference_head_init)

    def on_fit_start(self, trainer) -> None:
        self.output_bank_ = torch.zeros(trainer.n_train, self.n_bits, device=trainer.device)

    def loss(self, outputs, labels, batch_indices):
        outputs = outputs.float()
        self.output_bank_[batch_indices] = outputs.detach()
        similarity = pairwise_similarity(labels, self.trainer_.train_labels)
        return dhn_loss(outputs, self.output_bank_, similarity, float(self.quantization_weight))

    def on_fit_end(self, trainer) -> None:
        del self.output_bank_  # only needed while training; keeps the fitted model small
