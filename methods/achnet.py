"""ACHNet: Attention-guided Contrastive Hashing for long-tailed image retrieval (Kou, Xu, Yang & Deng,
IJCAI 2022), the long-tail successor of LTHNet, trained by the shared deep trainer (methods/_deep/).

Reference code: KUXN98/ACHNet (network/resnet.py, tools/loss.py, tools/utils.py,
tools/model_train.py, args.py, main.py; line numbers below at commit 69a8d72). Same long-tail
CIFAR-100 / ImageNet100 data, ResNet34 backbone and 32/64/96 bits as LTHNet.

Network on the 512-d pooled ResNet34 feature f (resnet.py lines 33-63):

* cross-attention feature enhancement (the paper's CAFE): two branches a = FC 512 -> D (f),
  b = FC 512 -> D (f) with b's initial weights a copy of a's (line 30-31); attention
  alpha = tanh(a) * tanh(b); fused v = FC 2D -> D ([a * alpha, b * alpha])
* hash layer h = tanh(FC D -> K (tanh(v))); code b = sgn(h)
* classifier y_hat = FC K -> C (h)
* every linear weight Kaiming-normal (lines 66-69; biases keep PyTorch's default), the hash layer's
  too (``reference_head_init = "as_built"``: ``build_head`` initialises it so); f passed through a
  ReLU first (line 38; a no-op on ResNet's pooled output and on the shared trunk's output).

Loss of a batch (tools/loss.py; model_train.py line 69):

    L = lambda CE + CCH,   CE = mean_i -log(softmax(y_hat_i)_{y_i} + eps)
    CCH = mean_i -log( e^{t cos(h_i, c_{y_i})} / sum_{c != y_i} e^{t cos(h_i, c_c)} )

with c_c the class centres ("pseudo hash code centres"): the mean relaxed code h of each class over
the whole training set, recomputed without gradients (eval mode) at the start of every epoch
(model_train.py line 44, tools/utils.py ``generate_hash_center``). The denominator sums over the
OTHER classes only, as in the reference (``1 - label``), so CCH can be negative.

Hyperparameters and their sources:
* ``contrastive_balance`` lambda = 0.2: weight of CE against CCH (args.py line 30 ``--lamb``).
* ``temperature`` t = 1.0, multiplying the cosine (tools/loss.py line 25 ``self.t = 1.0``).
* ``probability_epsilon`` eps = 1e-6 inside the log of CE (tools/loss.py line 17).
* ``hidden_dim`` D = 2000 (args.py line 18 ``--feature_dim``); smaller values only serve tests.
* Optimisation: the shared trainer. In ``mode="finetune"`` the paper preset is the reference's
  CIFAR-100 setting (main.py lines 70-74, args.py lines 12-22: RMSprop, lr 1e-5, weight decay 5e-4,
  100 epochs, batch 8 -- methods/data/finetune_protocol.csv; model_train.py lines 29-33: cosine
  annealing to lr/100 stepped per epoch, ``lr_schedule="cosine_epoch"``, where the trainer's
  default steps it per iteration for every method). In ``mode="features"`` (``settings="features"``)
  the preset row ``feature_preset = "lthnet"`` of methods/data/deep_feature_presets.csv (lr 1e-4,
  batch 32, 30 epochs), as for LTHNet, whose 2000-wide head ACHNet's resembles, because ACHNet's own
  validation rows (grid rows 4 and 5, lr 1e-4 against the default row's 1e-3, on both datasets of
  the study, with the shared trunk) prefer lr 1e-4 on both; they are made by
  ``python benchmarks/bench_deep.py validate --dataset synthetic-cifar100 --noise 7
  --imbalance-factor 50 --methods ACHNet --rows 4 5 --out methods/data/deep_feature_validation.csv``
  and the same with ``--dataset digits`` (the evidence file of every preset).

Features mode: ACHNet's attention works on the pooled 512-d vector, not on the spatial feature map
(resnet.py: ``features`` then ``avgpool`` then the two branches), so no stand-in for a feature map
is needed. In ``mode="features"`` the head sits, like every deep method's but LTHNet's, on the
shared trainable trunk (``Linear(512, 2000)`` + ReLU, methods/_deep/trunk.py) over the frozen cached
512-d pooled features -- the trunk stands in for the fine-tuned top of ResNet34, and the attention
reads its 2000-d output; ``trunk="none"`` puts the attention straight on the cached pooled
features, the reference's input. In ``mode="finetune"`` the trainer's ResNet34 (classifier removed)
gives the pooled 512-d vector, trained end to end, with no trunk. (ACHNet does not declare
``brings_own_trunk``: its two 512 -> D branches are no single Linear + ReLU layer of the trunk's
size, and they are part of its head in the reference.)

Deliberate deviations:
* The final epoch is kept (the reference keeps the best epoch by query MAP, model_train.py 144-158).
* Centres of classes without training items (possible only when ``n_classes`` exceeds the labels
  seen) are left out of the CCH denominator; the reference divides by a zero count (NaN centres,
  and it fixes C = 100 in tools/utils.py line 48). Identical whenever every class has an item.
* On ImageNet100 the reference gives the backbone 0.1 lr and the hashing layers 10 lr (main.py
  lines 77-89); the shared trainer has one learning rate for all parameters.
* The reference's training loader applies its data augmentation while computing the centres; here
  the centres come from the training inputs as the trainer provides them (``forward_all``).
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.checks import check_positive_int

from ._deep import DeepHashingMethod
from .base import InvalidInputError
from .registry import register

#: args.py line 30 (--lamb)
CONTRASTIVE_BALANCE = 0.2
#: tools/loss.py line 25
TEMPERATURE = 1.0
#: tools/loss.py line 17
PROBABILITY_EPSILON = 1e-6
#: args.py line 18 (--feature_dim)
HIDDEN_DIM = 2000


class ACHNetHead(nn.Module):
    """Cross-attention enhancement, hash layer and classifier; forward -> {"codes", "logits"}."""

    def __init__(self, in_dim: int, hidden_dim: int, n_bits: int, n_classes: int):
        super().__init__()
        self.branch_a = nn.Linear(in_dim, hidden_dim)
        self.branch_b = nn.Linear(in_dim, hidden_dim)
        self.fusion = nn.Linear(2 * hidden_dim, hidden_dim)
        self.hash_layer = nn.Linear(hidden_dim, n_bits)
        self.classifier = nn.Linear(n_bits, n_classes)
        for layer in (self.branch_a, self.branch_b, self.fusion, self.hash_layer, self.classifier):
            nn.init.kaiming_normal_(layer.weight)
        self.branch_b.load_state_dict(self.branch_a.state_dict())  # both branches start equal

    def forward(self, features: torch.Tensor) -> dict:
        features = torch.relu(features)
        a, b = self.branch_a(features), self.branch_b(features)
        attention = torch.tanh(a) * torch.tanh(b)
        fused = self.fusion(torch.cat((a * attention, b * attention), dim=1))
        codes = torch.tanh(self.hash_layer(torch.tanh(fused)))
        return {"codes": codes, "logits": self.classifier(codes)}


def class_centres(codes: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres (C, K): the mean code of each class, present (C,) bool: the class has an item).

    Classes without items get a zero row and ``present`` False.
    """
    counts = torch.bincount(labels, minlength=n_classes)
    sums = torch.zeros(n_classes, codes.shape[1], dtype=torch.float64, device=codes.device)
    sums.index_add_(0, labels, codes.to(torch.float64))
    centres = sums / counts.clamp_min(1)[:, None].to(torch.float64)
    return centres.to(codes.dtype), counts > 0


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """mean_i -log(softmax(logits_i)[y_i] + epsilon) (KUXN98/ACHNet tools/loss.py ``CELoss``)."""
    probabilities = torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return -torch.log(probabilities + epsilon).mean()


def centre_contrastive_loss(codes: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor,
                            temperature: float, present: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i [ -t cos(h_i, c_{y_i}) + log sum_{c != y_i, c present} e^{t cos(h_i, c_c)} ]

    = -log(e^{t cos_pos} / sum_neg e^{t cos_neg}) of tools/loss.py ``CenConLoss``, in log-sum-exp
    form; ``present`` (C,) leaves classes without a centre out of the denominator.
    """
    logits = temperature * F.cosine_similarity(codes[:, None, :], centres[None, :, :], dim=2)
    positive = logits.gather(1, labels[:, None]).squeeze(1)
    excluded = F.one_hot(labels, centres.shape[0]).bool()
    if present is not None:
        excluded = excluded | ~present[None, :]
    negatives = logits.masked_fill(excluded, float("-inf"))
    return (torch.logsumexp(negatives, dim=1) - positive).mean()


def achnet_loss(outputs: dict, labels: torch.Tensor, centres: torch.Tensor, present: torch.Tensor | None,
                contrastive_balance: float, temperature: float, probability_epsilon: float) -> torch.Tensor:
    """lambda CE(y_hat, y) + CCH(h, centres, y) (KUXN98/ACHNet tools/model_train.py line 69)."""
    codes, logits = outputs["codes"].float(), outputs["logits"].float()
    return (contrastive_balance * classification_loss(logits, labels, probability_epsilon)
            + centre_contrastive_loss(codes, centres, labels, temperature, present))


@register("ACHNet")
class ACHNet(DeepHashingMethod):
    """Attention-guided contrastive hashing with class-centre contrast; see the module docstring."""

    test_params: ClassVar[dict] = {"settings": "features", "n_epochs": 3, "n_threads": 1, "hidden_dim": 64}
    #: the frozen-feature preset row (methods/data/deep_feature_presets.csv): lr 1e-4, see the module doc
    feature_preset: ClassVar[str] = "lthnet"
    #: resnet.py initialises every linear layer Kaiming-normal; build_head does the same
    reference_head_init: ClassVar[str] = "as_built"

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *,
                 contrastive_balance: float = CONTRASTIVE_BALANCE, temperature: float = TEMPERATURE,
                 probability_epsilon: float = PROBABILITY_EPSILON, hidden_dim: int = HIDDEN_DIM,
                 **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.contrastive_balance = contrastive_balance
        self.temperature = temperature
        self.probability_epsilon = probability_epsilon
        self.hidden_dim = hidden_dim

    def validate_params(self) -> None:
        """The trainer's parameters, then hidden_dim >= 1 and the loss weights finite and >= 0."""
        super().validate_params()
        check_positive_int(self.hidden_dim, "hidden_dim", error=InvalidInputError)
        for name in ("contrastive_balance", "temperature", "probability_epsilon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
                    math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"ACHNet {name} must be a finite number >= 0, got {value!r}.")

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return ACHNetHead(in_dim, int(self.hidden_dim), int(self.n_bits), n_classes)

    def on_fit_start(self, trainer) -> None:
        n_present = int((trainer.class_counts > 0).sum())
        if n_present < 2:
            raise InvalidInputError(
                f"ACHNet contrasts each item's class centre with the other classes' centres, but the "
                f"training labels hold {n_present} class; pass items of at least two classes."
            )

    def on_epoch_start(self, epoch: int, trainer) -> None:
        codes = trainer.outputs_all()["codes"]
        self._centres, self._present = class_centres(codes, trainer.train_labels, trainer.n_classes)

    def loss(self, outputs, labels, batch_indices):
        return achnet_loss(outputs, labels, self._centres, self._present, float(self.contrastive_balance),
                           float(self.temperature), float(self.probability_epsilon))

    def on_fit_end(self, trainer) -> None:
        self.centres_ = self._centres.cpu()  # the last epoch's class centres (not used by encode)
        del self._centres, self._present
