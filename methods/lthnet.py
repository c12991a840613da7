"""LTHNet and LTHNet_sq: Long-Tail Hashing Network (Chen, Cheng, Fang, Wang, Yan & Wang, SIGIR 2021).

Reference code: butterfly-chinese/long-tail-hashing (``lthNet.py``, ``models/resmet34.py``), a
simplified draft without the DPP; DPP inference after laming-chen/fast-map-dpp (``methods/_dpp.py``).

Network (paper §4, Table 1), on 512-d ResNet34 features (frozen and cached in ``mode="features"``,
fine-tuned end to end in ``mode="finetune"``; see ``methods/_deep/``):

* direct feature   v_direct = ReLU(FC 512 -> 2000 (x))                                 (§4.1)
* extended dynamic meta-embedding (§4.2): memory M of (k+1)C rows = per class its centroid of
  direct features over the whole training set (eq. 3) and k diverse prototypes chosen by a DPP
  (eq. 4); attention o = softmax(FC 2000 -> (k+1)C (v_direct)); v_memory = o^T M (eq. 5);
  selector e = tanh(FC 2000 -> 2000 (v_direct)); v_meta = v_direct + e * v_memory (eq. 6).
* hash layer       h = tanh(FC 2000 -> q (v_meta))  (eq. 8); code b = sgn(h), >= 0 -> +1 (eq. 9)
* classifier       LTHNet: y_hat = softmax(FC q -> C (h)) (eq. 10), class-balanced cross-entropy
  (eqs. 12-13);  LTHNet_sq (§6.6): y_hat = FC q -> C (h) (eq. 14), loss ||y_hat - y||^2 (eq. 15),
  with the same class-balanced weight (eq. 13 wraps eq. 12, which eq. 15 replaces).
* Algorithm 1: at the start of every epoch the memory is recomputed from the direct features of
  the whole training set under the current network (no gradient flows into M); encoding uses the
  memory of the last epoch.

Hyperparameters and their sources:
* ``k`` = 3 (§4.2 "we set it to 3 by default"); table rows k = 0 and k = 3 (Tables 3-4).
* ``beta`` = 0 (§6.3, Fig. 3): class-balanced weight (1 - beta) / (1 - beta^{n_y}) (eq. 13),
  divided by its maximum over classes as in the reference ``LTHNetLoss`` (beta = 0: all weights 1).
* ``use_meta_embedding`` = True; False removes the extended DME module, v_meta = v_direct
  (the Fig. 5 ablation; the reference's ``dynamic_meta_embedding`` flag).
* ``hidden_dim`` = 2000 (Table 1; §4.1 matches the 2000 anchors of the kernel methods), the shared
  trunk width ``TRUNK_WIDTH`` of methods/_deep/trunk.py. Smaller values only serve quick tests.
* Trunk: the direct-feature layer (FC 512 -> 2000 + ReLU) IS the trainable trunk every deep method
  gets in features mode (``brings_own_trunk = True``, ``own_trunk(head)``), so no shared trunk is
  added: ``settings_["trunk"] == "own"`` and the other methods' shared trunk has exactly the
  direct layer's parameter count (1,026,000 on 512-d features).
* Hash-layer initialisation (``head_init="reference"``): PyTorch's default ``nn.Linear`` -- the
  reference models/resmet34.py builds ``self.hash_layer = nn.Linear(feature_dim, code_length)``
  and initialises nothing (``reference_head_init = "pytorch"``).
* optimisation: the shared trainer's ``settings="auto"``: in ``mode="finetune"`` the paper's
  (§6.3: RMSprop, lr 1e-5, weight decay 5e-4, cosine annealing, 100 epochs, batch 8 on CIFAR-100 /
  16 on ImageNet100); in ``mode="features"`` the validated preset row ``feature_preset = "lthnet"``
  of methods/data/deep_feature_presets.csv (lr 1e-4, batch 32, 30 epochs); ``settings="paper"``
  restores §6.3 in either mode.

DPP kernel (our definition; the paper says only "k more diverse samples similar to the centroid"):
L = diag(q) S diag(q) over the class's training items, S the cosine Gram matrix of their direct
features (diversity) and q_a = max(cos(v_a, m_i), 0) the similarity to the class centroid
(quality); greedy MAP inference (Chen et al. 2018). The prototypes stored in M are the chosen
items' direct features.

Small classes: a class with n_c <= k items gets all of its (linearly independent) items as
prototypes; the DPP also stops early when the remaining items add no volume (duplicates). Empty
prototype slots are filled with the class centroid, so M always has (k+1)C rows, ordered class by
class: [m_i, p_i1, ..., p_ik]. A class with no training item (only possible when ``n_classes``
exceeds the labels seen) has zero rows.

Deliberate deviations from the reference draft: the DPP prototypes exist (the draft has only
centroids); the final epoch is kept (the draft keeps the best epoch by query MAP); the draft's
extra ReLU on the backbone output is omitted (a no-op on ResNet's pooled, non-negative output).

Validation study for ``settings="features"`` (frozen features): methods/data/deep_feature_validation.csv
(protocol and the command that regenerates it: methods/data/README.md).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.checks import check_nonnegative_int, check_positive_int

from ._deep import TRUNK_WIDTH, DeepHashingMethod
from ._dpp import class_prototypes
from .base import InvalidInputError
from .registry import register

def class_balanced_weights(class_counts: np.ndarray, beta: float) -> np.ndarray:
    """Eq. (13): (1 - beta) / (1 - beta^{n_c}) per class, divided by the maximum (reference code).

    Classes without training items get weight 1 (they never occur in the loss).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if beta == 0:
        return np.ones_like(counts)
    present = counts > 0
    weights = np.ones_like(counts)
    if present.any():
        raw = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
        weights[present] = raw / raw.max()
    return weights


SQUARE_LOSS_REDUCTIONS = ("sum", "mean")
CLASSIFIER_INITS = ("pytorch", "zeros")


def lthnet_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor,
                square_loss: bool = False, class_reduction: str = "sum") -> torch.Tensor:
    """Mean over the batch of w_y * L(y_hat, y): cross-entropy of softmax(logits) (eqs. 10, 12-13),
    or with ``square_loss`` the squared error ||logits - onehot(y)||^2 (LTHNet_sq, eqs. 14-15),
    summed over the classes (eq. 15) or, with ``class_reduction="mean"``, averaged over them."""
    weights = class_weights.index_select(0, labels).to(logits.dtype)
    if square_loss:
        target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        squares = (logits - target) ** 2
        per_item = squares.sum(dim=1) if class_reduction == "sum" else squares.mean(dim=1)
    else:
        per_item = F.cross_entropy(logits, labels, reduction="none")
    return (weights * per_item).mean()


class LTHNetHead(nn.Module):
    """Layers 2-5 of Table 1 on backbone features; forward -> {"codes", "logits", "direct"}."""

    def __init__(self, in_dim: int, hidden_dim: int, n_bits: int, n_classes: int, n_prototypes_per_class: int,
                 use_meta_embedding: bool):
        super().__init__()
        self.use_meta_embedding = bool(use_meta_embedding)
        self.direct_layer = nn.Linear(in_dim, hidden_dim)
        if self.use_meta_embedding:
            n_slots = (n_prototypes_per_class + 1) * n_classes
            self.attention_layer = nn.Linear(hidden_dim, n_slots)
            self.selector_layer = nn.Linear(hidden_dim, hidden_dim)
            self.register_buffer("memory", torch.zeros(n_slots, hidden_dim))
        self.hash_layer = nn.Linear(hidden_dim, n_bits)
        self.classifier = nn.Linear(n_bits, n_classes)

    def direct(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.direct_layer(features))

    def forward(self, features: torch.Tensor) -> dict:
        direct = self.direct(features)
        embedding = direct
        if self.use_meta_embedding:
            attention = torch.softmax(self.attention_layer(direct), dim=1)
            memory_feature = attention @ self.memory.to(attention.dtype)
            selector = torch.tanh(self.selector_layer(direct))
            embedding = direct + selector * memory_feature
        codes = torch.tanh(self.hash_layer(embedding))
        return {"codes": codes, "logits": self.classifier(codes), "direct": direct}


def build_memory(direct: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int) -> torch.Tensor:
    """The (k+1)C x D memory (eqs. 3-4): per class its centroid then k DPP prototypes (padded with
    the centroid when fewer are found), from the direct features of the whole training set. The
    prototypes of all classes are chosen together (``class_prototypes``: the per-class
    ``diverse_prototypes``' choice, vectorised over the classes)."""
    direct = direct.float()
    dim = direct.shape[1]
    counts = torch.bincount(labels, minlength=n_classes)
    sums = torch.zeros(n_classes, dim, dtype=torch.float64, device=direct.device)
    sums.index_add_(0, labels, direct.to(torch.float64))
    centroids = (sums / counts.clamp_min(1)[:, None].to(torch.float64)).to(direct.dtype)
    memory = centroids.repeat_interleave(k + 1, dim=0)  # every slot starts as its class centroid
    if k > 0:
        picks = class_prototypes(direct, labels, centroids, k)  # (C, k) rows, -1 where fewer were found
        found = picks >= 0
        prototype_slots = memory.view(n_classes, k + 1, dim)[:, 1:]
        prototype_slots[found] = direct.index_select(0, picks[found])
    return memory


@register("LTHNet")
class LTHNet(DeepHashingMethod):
    """Long-Tail Hashing Network (cross-entropy classifier); see the module docstring."""

    uses_labels = True
    square_loss = False
    #: the validated frozen-feature preset (methods/data/deep_feature_presets.csv): lr 1e-4
    feature_preset = "lthnet"
    #: models/resmet34.py leaves its hash layer at PyTorch's default initialisation
    reference_head_init = "pytorch"
    #: the direct-feature layer is the trunk (methods/_deep/trunk.py): no shared trunk is added
    brings_own_trunk = True
    table_variants = ({"k": 0}, {"k": 3})
    test_params = {"n_epochs": 4, "learning_rate": 1e-3, "batch_size": 64, "hidden_dim": 128}

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, k: int = 3, beta: float = 0.0,
                 use_meta_embedding: bool = True, hidden_dim: int = TRUNK_WIDTH, **trainer_params):
        super().__init__(n_bits=n_bits, random_state=random_state, **trainer_params)
        self.k = k
        self.beta = beta
        self.use_meta_embedding = use_meta_embedding
        self.hidden_dim = hidden_dim

    def validate_params(self) -> None:
        """The trainer's parameters, then k >= 0, beta in [0, 1), hidden_dim >= 1, use_meta_embedding a bool."""
        super().validate_params()
        check_nonnegative_int(self.k, "k (DPP prototypes per class)", error=InvalidInputError)
        beta = self.beta
        if isinstance(beta, bool) or not (isinstance(beta, (int, float, np.floating)) and 0 <= beta < 1):
            raise InvalidInputError(f"beta must lie in [0, 1) (eq. 13), got {beta!r}.")
        check_positive_int(self.hidden_dim, "hidden_dim", error=InvalidInputError)
        if not isinstance(self.use_meta_embedding, (bool, np.bool_)):
            raise InvalidInputError(f"use_meta_embedding must be True or False, got {self.use_meta_embedding!r}.")

    # -------------------------------------------------------------- hooks
    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        return LTHNetHead(in_dim, int(self.hidden_dim), int(self.n_bits), n_classes, int(self.k),
                          bool(self.use_meta_embedding))

    def own_trunk(self, head: nn.Module) -> nn.Module:
        """The direct-feature layer (FC in_dim -> hidden_dim, then ReLU): LTHNet's trunk."""
        return head.direct_layer

    def on_fit_start(self, trainer) -> None:
        weights = class_balanced_weights(trainer.class_counts.cpu().numpy(), float(self.beta))
        self._class_weights = torch.as_tensor(weights, dtype=torch.float32, device=trainer.device)

    def on_epoch_start(self, epoch: int, trainer) -> None:
        head = trainer.head
        if not head.use_meta_embedding:
            return
        direct = trainer.forward_all(head.direct)
        head.memory.copy_(build_memory(direct, trainer.train_labels, trainer.n_classes, int(self.k)))

    def on_fit_end(self, trainer) -> None:
        del self._class_weights

    def loss(self, outputs, labels, batch_indices):
        return lthnet_loss(outputs["logits"], labels, self._class_weights, self.square_loss)


@register("LTHNet_sq")
class LTHNetSquare(LTHNet):
    """LTHNet_sq (§6.6): same network, y_hat = FC(h) without softmax and squared loss (eqs. 14-15)."""

    square_loss = True

    def __init__(self, n_bits: int = 64, random_state: int | None = 0, *, square_loss_reduction: str = "sum",
                 classifier_init: str = "pytorch", **params):
        super().__init__(n_bits=n_bits, random_state=random_state, **params)
        self.square_loss_reduction = square_loss_reduction
        self.classifier_init = classifier_init

    def validate_params(self) -> None:
        super().validate_params()
        if self.square_loss_reduction not in SQUARE_LOSS_REDUCTIONS:
            raise InvalidInputError(f"square_loss_reduction={self.square_loss_reduction!r} is unknown; use 'sum' "
                                    "(eq. 15) or 'mean' (the mean over the classes).")
        if self.classifier_init not in CLASSIFIER_INITS:
            raise InvalidInputError(f"classifier_init={self.classifier_init!r} is unknown; use 'pytorch' (the "
                                    "reference's nn.Linear default) or 'zeros' (y_hat = 0 at the start).")

    def build_head(self, in_dim: int, n_classes: int) -> nn.Module:
        head = super().build_head(in_dim, n_classes)
        if self.classifier_init == "zeros":  # after the default draw: every other layer starts as before
            nn.init.zeros_(head.classifier.weight)
            nn.init.zeros_(head.classifier.bias)
        return head

    def loss(self, outputs, labels, batch_indices):
        return lthnet_loss(outputs["logits"], labels, self._class_weights, True, self.square_loss_reduction)
