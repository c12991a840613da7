"""DPSH: Deep Pairwise-Supervised Hashing (Li, Zhao & Kang, "Feature Learning based Deep Supervised
Hashing with Pairwise Labels", IJCAI 2016), trained by the shared deep trainer (methods/_deep/).

Reference code: jiangqy/DPSH-pytorch (DPSH_CIFAR_10.py, DPSH_CIFAR_10_demo.py, CNN_model.py); also
swuxyj/DeepHash-pytorch (DPSH.py).

Loss of one mini-batch (u_i: the head's real-valued outputs, U: a memory bank of the latest output
of EVERY training item, b_i = sgn(u_i)):

    L = [ sum_{i in batch, j in train} (log(1 + e^Theta_ij) - s_ij Theta_ij)
          + eta sum_{i in batch} ||b_i - u_i||^2 ] / (n_train * batch_size),   Theta_ij = u_i^T U_j / 2

Hyperparameters and their sources:
* ``quantization_weight`` (eta) = 10 -- ``param['lambda'] = 10`` in DPSH_CIFAR_10_demo.py. eta is
  only meaningful under one normalisation of the loss: ours is the reference's, both sums divided
  by n_train * batch_size (DPSH_CIFAR_10.py). (DeepHash-pytorch instead takes means of both terms
  and alpha = 0.1, a different scale for the same idea.)
* Head: one linear layer from the backbone features to K outputs, no activation (CNN_model.py ends
  with ``nn.Linear(4096, bit)``); codes are sgn(u).
* Memory bank U: zeros at the start (reference), each batch's outputs written (detached) into U
  BEFORE the loss, so the batch also meets itself through the bank, as in the reference.
* s_ij = 1 iff the labels match (single-label data). log(1 + e^x) is computed by a stable
  softplus (the reference's "Logtrick" does the same by cases).
* Optimisation (optimiser, learning rate, epochs, batch size, schedule) comes from the shared
  trainer: the paper's §6.3 settings by default (``settings="paper"``), ``settings="features"``
  for heads on frozen cached features (the reference uses SGD lr 0.05, batch 128, 150 epochs with
  an AlexNet; the LTHNet paper re-tunes every deep method to its own settings).

* Hash-layer initialisation (``head_init="reference"``): PyTorch's default ``nn.Linear`` (CNN_model.py
  builds ``nn.Linear(4096, bit)`` and initialises nothing; ``reference_head_init = "pytorch"``).
  ``head_init`` is a trainer parameter (methods/_deep/trunk.py).
* Fine-tuning batch size of ``settings="paper"``: 128 (DPSH_CIFAR_10.py ``batch_size = 128``;
  methods/data/finetune_protocol.csv).

Deliberate deviations: none in the loss. In "features" mode the head sits on the shared trainable
trunk (``Linear(512, 2000)`` + ReLU, methods/_deep/trunk.py) over frozen ResNet34 features, standing
in for the fine-tuned backbone of the paper (``mode="finetune"``); ``trunk="none"`` gives the bare
linear head.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register

from ._deep import DeepHashingMethod


def pairwise_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """s_ij = 1 when items i (of a) and j (of b) share their class label, else 0."""
    return (labels_a[:, None] == labels_b[None, :]).to(dtype)


def sign_codes(values: torch.Tensor) -> torch.Tensor:
    """{-1, +1} codes with ``>= 0 -> +1`` (sign(0) = 0 would leave a bit undecided)."""
    return torch.where(values >= 0, torch.ones_like(values), -torch.ones_like(values))


def dpsh_loss(
    batch_outputs: torch.Tensor,
    bank_outputs: torch.Tensor,
    similarity: torch.Tensor,
    quantization_weight: float,
    n_train: int,
) -> torch.Tensor:
    """DPSH objective for one mini-batch, normalised as in jiangqy/DPSH-pytorch (DPSH_CIFAR_10.py).

    [ sum_ij (log(1 + e^Theta_ij) - s_ij Theta_ij)  +  eta sum_i ||b_i - u_i||^2 ] / (n_train * batch)

    with Theta_ij = u_i^T U_j / 2 between the batch outputs u (b, K) and the memory bank U (n, K)
    of all training outputs (a constant here), b_i = sgn(u_i), and log(1 + e^x) the stable softplus.
    """
    theta = 0.5 * batch_outputs @ bank_outputs.T
    negative_log_likelihood = (F.softplus(theta) - similarity * theta).sum()
    codes = sign_codes(batch_outputs.detach())
    quantization = (codes - batch_outputs).pow(2).sum()
    return (negative_log_likelihood + quantization_weight * quantization) / (n_train * batch_outputs.shape[0])


@register("DPSH")
class DPSH(DeepHashingMethod):
    """Deep pairwise-supervised hashing with a memory bank of all training outputs."""

    test_params: ClassVar[dict] = {"settings": "features", "n_epochs": 3, "n_threads": 1}
    reference_head_init: ClassVar[str] = "pytorch"  # see the module docstring

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, quantization_weight: float = 10.0,
                 **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.quantization_weight = quantization_weight

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return nn.Linear(in_dim, self.n_bits)

    def on_fit_start(self, trainer) -> None:
        self.output_bank_ = torch.zeros(trainer.n_train, self.n_bits, device=trainer.device)

    def loss(self, outputs, labels, batch_indices):
        outputs = outputs.float()
        self.output_bank_[batch_indices] = outputs.detach()
        similarity = pairwise_similarity(labels, self.trainer_.train_labels)
        return dpsh_loss(outputs, self.output_bank_, similarity, self.quantization_weight, self.trainer_.n_train)

    def on_fit_end(self, trainer) -> None:
        del self.output_bank_  # only needed while training; keeps the fitted model small
