"""DSDH: Deep Supervised Discrete Hashing (Li, Sun, He & Tan, NeurIPS 2017), trained by the shared
deep trainer (methods/_deep/), with the discrete W- and B-steps between epochs.

Reference code: TreezzZ/DSDH_PyTorch (dsdh.py, models/dsdh_loss.py, models/alexnet.py, run.py).

Objective (U: the head's tanh outputs of all training items, kept in a memory bank; B in {-1,+1}
codes of the training items; W (K, C) a linear classifier on the codes; Y one-hot labels):

    sum_ij (log(1 + e^Theta_ij) - s_ij Theta_ij) + mu ||Y - B W||^2 + nu ||W||^2 + eta ||B - U||^2,
    Theta_ij = u_i^T u_j / 2.

Per epoch (reference dsdh.py): (1) network step: one pass over the training batches minimising
mean_ij (softplus(Theta) - s Theta) over (n_train x batch) pairs + eta mean ||B_batch - U_batch||^2
(models/dsdh_loss.py normalisation), with Theta between the batch and the bank of all outputs, the
bank updated with the batch before the loss; (2) W = (B^T B + nu/mu I)^-1 B^T Y; (3) B by discrete
cyclic coordinate descent on mu ||Y - B W||^2 + eta ||B - U||^2, one sweep over the bits
(reference ``solve_dcc``), with the shared ``discrete_cyclic_coordinate_descent`` (the DCC of SDH):
its objective ||B W||^2 - 2 tr(B^T Q) with Q = Y W^T + (eta/mu) U is the B-subproblem / mu up to a
constant (tests/methods/test_dsdh.py checks this mapping).

Hyperparameters and their sources (run.py defaults): ``mu`` = 1e-2, ``nu`` = 1, ``eta`` = 1e-2;
``dcc_sweeps`` = 1 (dsdh.py ``solve_dcc``: one pass over the bits); pairwise logits clamped to
[-100, 50] (models/dsdh_loss.py) and log(1 + e^x) by softplus; B initialised to sgn(randn) and U to
zeros (dsdh.py); head = one linear layer to K bits + tanh (models/alexnet.py ``hash_layer``).
Optimisation comes from the shared trainer (paper §6.3 by default; the reference also uses RMSprop,
lr 1e-5, weight decay 1e-5 and cosine annealing, 150 epochs, batch 128).

Hash-layer initialisation (``head_init="reference"``): PyTorch's default ``nn.Linear`` (models/alexnet.py
``hash_layer = nn.Sequential(nn.Linear(4096, code_length), nn.Tanh())``, no initialisation;
``reference_head_init = "pytorch"``). Fine-tuning batch size of ``settings="paper"``: 128 (run.py
``--batch-size`` default; methods/data/finetune_protocol.csv).

Deliberate deviations: none in the objective. W and B are computed in float64 NumPy. Codes of
new items come from the network (sgn of its output), as in the reference's ``generate_code``. In
"features" mode the head sits on the shared trainable trunk (``Linear(512, 2000)`` + ReLU,
methods/_deep/trunk.py) standing in for the fine-tuned backbone (``mode="finetune"``);
``trunk="none"`` gives the bare head.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .registry import register

from ._deep import DeepHashingMethod
from .base import one_hot
from .dpsh import pairwise_similarity
from .shared_math import discrete_cyclic_coordinate_descent, ridge_regression

LOGIT_MIN, LOGIT_MAX = -100.0, 50.0  # TreezzZ/DSDH_PyTorch models/dsdh_loss.py


def dsdh_network_loss(
    batch_outputs: torch.Tensor,
    bank_outputs: torch.Tensor,
    similarity: torch.Tensor,
    batch_codes: torch.Tensor,
    quantization_weight: float,
) -> torch.Tensor:
    """mean_ij (log(1 + e^Theta_ij) - s_ij Theta_ij) + eta mean ||B_batch - U_batch||^2.

    Theta = U_bank U_batch^T / 2, clamped to [-100, 50] as in the reference; means over the
    (n_train x batch) pairs and the (batch x K) entries (TreezzZ/DSDH_PyTorch normalisation).
    """
    theta = torch.clamp(0.5 * batch_outputs @ bank_outputs.T, LOGIT_MIN, LOGIT_MAX)
    metric = (F.softplus(theta) - similarity * theta).mean()
    quantization = (batch_codes - batch_outputs).pow(2).mean()
    return metric + quantization_weight * quantization


def dsdh_classifier_step(codes: np.ndarray, one_hot_labels: np.ndarray, mu: float, nu: float) -> np.ndarray:
    """W (K, C) = argmin mu ||Y - B W||^2 + nu ||W||^2 = (B^T B + nu/mu I)^-1 B^T Y (items as rows)."""
    return ridge_regression(np.asarray(codes, dtype=np.float64), np.asarray(one_hot_labels, dtype=np.float64), nu / mu)


def dsdh_classifier_objective(codes, one_hot_labels, W, mu: float, nu: float) -> float:
    return float(mu * np.sum((one_hot_labels - codes @ W) ** 2) + nu * np.sum(W**2))


def dsdh_code_step(
    codes: np.ndarray,
    W: np.ndarray,
    one_hot_labels: np.ndarray,
    outputs: np.ndarray,
    mu: float,
    eta: float,
    n_sweeps: int = 1,
) -> np.ndarray:
    """B-step: min_B mu ||Y - B W||^2 + eta ||B - U||^2 over B in {-1, +1}^{n x K}.

    Since ||B||^2 = nK is constant, this is mu (||B W||^2 - 2 tr(B^T Q)) + const with
    Q = Y W^T + (eta / mu) U: exactly the objective of ``discrete_cyclic_coordinate_descent``
    (the same DCC as SDH). The reference (dsdh.py ``solve_dcc``) makes one sweep per epoch.
    """
    Q = one_hot_labels @ W.T + (eta / mu) * outputs
    return discrete_cyclic_coordinate_descent(codes, W, Q, n_sweeps=n_sweeps)


def dsdh_code_objective(codes, W, one_hot_labels, outputs, mu: float, eta: float) -> float:
    return float(mu * np.sum((one_hot_labels - codes @ W) ** 2) + eta * np.sum((codes - outputs) ** 2))


@register("DSDH")
class DSDH(DeepHashingMethod):
    """Pairwise likelihood + linear classification of discrete codes, with W/B steps every epoch."""

    test_params: ClassVar[dict] = {"settings": "features", "n_epochs": 3, "n_threads": 1}
    reference_head_init: ClassVar[str] = "pytorch"  # see the module docstring

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, mu: float = 1e-2, nu: float = 1.0,
                 eta: float = 1e-2, dcc_sweeps: int = 1, **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.mu = mu
        self.nu = nu
        self.eta = eta
        self.dcc_sweeps = dcc_sweeps

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_dim, self.n_bits), nn.Tanh())

    def on_fit_start(self, trainer) -> None:
        self.output_bank_ = torch.zeros(trainer.n_train, self.n_bits, device=trainer.device)
        initial = torch.randn(trainer.n_train, self.n_bits, generator=trainer.generator)
        self.train_codes_ = torch.where(initial >= 0, 1.0, -1.0).to(trainer.device)
        self._one_hot_labels = one_hot(trainer.train_labels.cpu().numpy(), trainer.n_classes)

    def loss(self, outputs, labels, batch_indices):
        outputs = outputs.float()
        self.output_bank_[batch_indices] = outputs.detach()
        similarity = pairwise_similarity(labels, self.trainer_.train_labels)
        return dsdh_network_loss(outputs, self.output_bank_, similarity,
                                 self.train_codes_[batch_indices], self.eta)

    def on_epoch_end(self, epoch: int, trainer) -> None:
        U = self.output_bank_.double().cpu().numpy()
        B = self.train_codes_.double().cpu().numpy()
        Y = self._one_hot_labels
        W = dsdh_classifier_step(B, Y, self.mu, self.nu)
        trainer.log("code_step_objective_before", dsdh_code_objective(B, W, Y, U, self.mu, self.eta))
        B = dsdh_code_step(B, W, Y, U, self.mu, self.eta, n_sweeps=self.dcc_sweeps)
        trainer.log("code_step_objective_after", dsdh_code_objective(B, W, Y, U, self.mu, self.eta))
        self.classifier_ = W
        self.train_codes_ = torch.as_tensor(B, dtype=torch.float32, device=trainer.device)

    def on_fit_end(self, trainer) -> None:
        # the bank, the training codes and the one-hot labels are training state only
        del self.output_bank_, self.train_codes_, self._one_hot_labels
