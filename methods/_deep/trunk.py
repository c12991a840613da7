"""The deep trainer's network parts around a method's head: the shared trainable trunk (the same
capacity for every deep method in features mode) and the initialisation of the hash layer.

Trunk (parameter ``trunk``). In the paper every deep method fine-tunes ResNet34, so every one has a
trainable representation under its hash layer. In ``mode="features"`` the backbone is frozen, so
the trainer puts the same trainable trunk under every head instead: ``Linear(in_dim, TRUNK_WIDTH)``
+ ReLU, the width and activation of LTHNet's direct-feature layer (Table 1: FC 512 -> 2000, ReLU),
and the head is built on its output (``build_head(TRUNK_WIDTH, n_classes)``).

* ``trunk="auto"`` (default): ``"shared"`` in ``mode="features"``, ``"none"`` in ``mode="finetune"``
  (the fine-tuned backbone is the representation there);
* ``"shared"``: the trunk in either mode; ``"none"``: the head directly on the backbone features
  (the single-layer heads of the baselines' references).
* A method whose network already starts with such a layer declares ``brings_own_trunk = True`` and
  names the layer in ``own_trunk(head)``: LTHNet, whose direct-feature layer IS the trunk (its width
  ``hidden_dim`` defaults to ``TRUNK_WIDTH``). Its trunk resolves to ``"own"`` under ``"auto"`` and
  ``"shared"``; ``"none"`` is an error (the direct layer is part of its architecture).

The resolved value is ``settings_["trunk"]`` ("shared", "none" or "own") and the trained trunk the
fitted attribute ``trunk_`` (None unless "shared"). The trunk is PyTorch's default ``nn.Linear``
initialisation (as LTHNet's direct layer), built first in the seeded RNG context, so for one
``random_state`` every method's trunk, and LTHNet's direct layer, start from the same weights.

Hash-layer initialisation (parameter ``head_init``). The hash layer is the layer that maps the
head's representation to the n_bits code pre-activations: ``head.hash_layer`` when the head has
that attribute and it is a ``nn.Linear``, otherwise every ``nn.Linear`` of the head with
``n_bits`` outputs (a method overrides ``hash_layers(head)`` when this is wrong for it).

* ``head_init="reference"`` (default, the one the tables use): the method's reference code's
  initialisation, named by the class attribute ``reference_head_init``: ``"normal"`` = weights
  N(0, 0.01^2) and bias 0 (swuxyj/DeepHash-pytorch network.py ``ResNet.hash_layer``, thuml/HashNet
  network.py), ``"pytorch"`` = PyTorch's default ``nn.Linear`` initialisation (U(+-1/sqrt(fan_in))
  for weights and bias, also PyTorch 0.x's), ``"as_built"`` = whatever ``build_head`` did (methods
  whose head sets its reference initialisation itself).
* ``head_init="pytorch"``: PyTorch's default initialisation of the hash layer(s) for every method.
"""
from __future__ import annotations

from torch import nn

from ..base import InvalidInputError

#: the trunk's width: LTHNet's direct-feature layer (Table 1: FC 512 -> 2000 + ReLU; §4.1)
TRUNK_WIDTH = 2000
TRUNKS = ("auto", "shared", "none")
#: the resolved trunk of a fit (settings_["trunk"])
RESOLVED_TRUNKS = ("shared", "none", "own")
HEAD_INITS = ("reference", "pytorch")
REFERENCE_HEAD_INITS = ("normal", "pytorch", "as_built")
#: standard deviation of the hash layer's weights under reference_head_init="normal"
HASH_LAYER_STD = 0.01


def resolve_trunk(trunk: str, mode: str, brings_own_trunk: bool, method: str = "the method") -> str:
    """The trunk of a fit: "shared", "none" or "own" (see the module docstring)."""
    if not isinstance(trunk, str) or trunk not in TRUNKS:
        raise InvalidInputError(f"trunk={trunk!r} is unknown; use one of {list(TRUNKS)} ('auto' = 'shared' in "
                                "mode='features', 'none' in mode='finetune').")
    if brings_own_trunk:
        if trunk == "none":
            raise InvalidInputError(f"trunk='none' is not available for {method}: its first layer (LTHNet's "
                                    "direct-feature layer) is its trunk and part of its architecture; use "
                                    "trunk='auto' (its width is hidden_dim).")
        return "own"
    if trunk == "auto":
        return "shared" if mode == "features" else "none"
    return trunk


def build_trunk(in_dim: int) -> nn.Sequential:
    """``Linear(in_dim, TRUNK_WIDTH)`` + ReLU with PyTorch's default initialisation (global RNG:
    build it inside the trainer's seeded context)."""
    return nn.Sequential(nn.Linear(int(in_dim), TRUNK_WIDTH), nn.ReLU())


def trainable_parameter_count(module: nn.Module | None) -> int:
    """The number of trainable scalars of ``module`` (0 for None)."""
    if module is None:
        return 0
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)


def check_head_init(head_init: str) -> str:
    if not isinstance(head_init, str) or head_init not in HEAD_INITS:
        raise InvalidInputError(f"head_init={head_init!r} is unknown; use 'reference' (each method's reference "
                                "code's initialisation of its hash layer) or 'pytorch' (PyTorch's default).")
    return head_init


def find_hash_layers(head: nn.Module, n_bits: int) -> list[nn.Linear]:
    """``head.hash_layer`` when it is a ``nn.Linear``, else every ``nn.Linear`` with n_bits outputs."""
    layer = getattr(head, "hash_layer", None)
    if isinstance(layer, nn.Linear):
        return [layer]
    return [module for module in head.modules() if isinstance(module, nn.Linear) and module.out_features == n_bits]


def initialise_hash_layers(layers: list[nn.Linear], head_init: str, reference_init: str, method: str) -> None:
    """Apply ``head_init`` to the hash layer(s) (see the module docstring); uses the global RNG."""
    if reference_init not in REFERENCE_HEAD_INITS:
        raise InvalidInputError(f"{method}.reference_head_init={reference_init!r} is unknown; use one of "
                                f"{list(REFERENCE_HEAD_INITS)}.")
    choice = reference_init if check_head_init(head_init) == "reference" else "pytorch"
    if choice == "as_built" or (choice == "pytorch" and reference_init == "pytorch"):
        return  # build_head's layers are already it (a fresh nn.Linear is PyTorch's default): no redraw
    if not layers:
        raise InvalidInputError(f"{method}: head_init={head_init!r} needs the head's hash layer, but the head has "
                                "no `hash_layer` attribute and no nn.Linear with n_bits outputs; override "
                                "hash_layers(head) in the method.")
    for layer in layers:
        if choice == "normal":
            nn.init.normal_(layer.weight, 0.0, HASH_LAYER_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        else:
            layer.reset_parameters()
