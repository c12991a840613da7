"""The deep trainer's shared trunk and hash-layer initialisation (methods/_deep/trunk.py): every
registered deep method trains the same number of trunk parameters in features mode (LTHNet's direct
layer, the others' shared trunk), trunk="none" gives the bare heads, the trunk is seeded and
recorded, and head_init="reference" / "pytorch" initialise the hash layer as documented."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from methods._deep import TRUNK_WIDTH, DeepTrainer, trainable_parameter_count
from methods.base import InvalidInputError
from methods.registry import registered_methods

DEEP_METHODS = sorted(name for name, cls in registered_methods().items() if cls.family == "deep")
FEATURE_DIM = 512  # the cached ResNet34 features

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def tiny_data(dim=FEATURE_DIM, n=24, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    return rng.random((n, dim)).astype(np.float32), y


def trainer_for(method, X, y):
    """The trainer a fit would build (network initialised under the method's seed), not run."""
    method.validate_params()
    method.n_classes_ = int(y.max()) + 1
    device = torch.device("cpu")
    with method._torch_context(device):
        return DeepTrainer(method, X, y, method.resolved_settings(), device, method._generator())


def trunk_parameters(method, trainer) -> int:
    if type(method).brings_own_trunk:
        assert trainer.trunk is None  # no shared trunk on top of the method's own
        return trainable_parameter_count(method.own_trunk(trainer.head))
    return trainable_parameter_count(trainer.trunk)


def test_every_deep_method_has_the_same_trunk_capacity_in_features_mode():
    X, y = tiny_data()
    counts = {}
    for name in DEEP_METHODS:
        method = registered_methods()[name](n_bits=16, n_threads=1)  # default widths (LTHNet hidden_dim 2000)
        counts[name] = trunk_parameters(method, trainer_for(method, X, y))
    expected = FEATURE_DIM * TRUNK_WIDTH + TRUNK_WIDTH  # Linear(512, 2000): 1,026,000
    assert counts == {name: expected for name in DEEP_METHODS}, counts
    assert {"DPSH", "HashNet", "DSDH", "CSQ", "LTHNet", "LTHNet_sq"} <= set(counts)


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_trunk_resolution_and_record(name):
    cls = registered_methods()[name]
    X, y = tiny_data(dim=12)
    params = {"n_bits": 8, "n_epochs": 1, "n_threads": 1, **({"hidden_dim": 16} if "hidden_dim" in cls.test_params else {})}
    fitted = cls(**params).fit(X, y)
    if cls.brings_own_trunk:
        assert fitted.settings_["trunk"] == "own" and fitted.trunk_ is None
        with pytest.raises(InvalidInputError, match="trunk='none' is not available"):
            cls(**params, trunk="none").validate_params()
        assert cls(**params, trunk="shared").resolved_settings()["trunk"] == "own"
        assert cls(**params, mode="finetune").resolved_settings()["trunk"] == "own"
        return
    assert fitted.settings_["trunk"] == "shared"
    linear = fitted.trunk_[0]
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (12, TRUNK_WIDTH)
    assert isinstance(fitted.trunk_[1], nn.ReLU)
    # the head is built on the trunk's output; encode goes through the trunk
    inputs = [m.in_features for m in fitted.head_.modules() if isinstance(m, nn.Linear)]
    assert TRUNK_WIDTH in inputs and 12 not in inputs
    codes = fitted.encode(X)
    assert codes.shape == (len(X), 8)
    bare = cls(**params, trunk="none").fit(X, y)
    assert bare.settings_["trunk"] == "none" and bare.trunk_ is None
    assert cls(**params, mode="finetune").resolved_settings()["trunk"] == "none"
    assert cls(**params, mode="finetune", trunk="shared").resolved_settings()["trunk"] == "shared"


@pytest.mark.parametrize("name", ["DPSH", "CSQ", "DSDH"])
def test_trunk_none_gives_the_bare_linear_head(name):
    X, y = tiny_data(dim=12)
    method = registered_methods()[name](n_bits=8, n_epochs=1, n_threads=1, trunk="none").fit(X, y)
    (layer,) = method.hash_layers(method.head_)
    assert (layer.in_features, layer.out_features) == (12, 8)  # straight on the features
    assert trainable_parameter_count(method.head_) == 12 * 8 + 8


def test_trunk_initialisation_is_seeded_and_shared_across_methods():
    from methods.csq import CSQ
    from methods.dpsh import DPSH
    from methods.lthnet import LTHNet

    X, y = tiny_data()
    first = trainer_for(CSQ(n_bits=16, random_state=4), X, y).trunk[0]
    again = trainer_for(DPSH(n_bits=16, random_state=4), X, y).trunk[0]
    other = trainer_for(CSQ(n_bits=16, random_state=5), X, y).trunk[0]
    lthnet = LTHNet(n_bits=16, random_state=4)
    direct = lthnet.own_trunk(trainer_for(lthnet, X, y).head)
    for layer in (again, direct):  # the same seed: the same initial trunk in every method
        assert torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
    assert not torch.equal(other.weight, first.weight)
    # PyTorch's default nn.Linear initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / np.sqrt(FEATURE_DIM)
    assert first.weight.abs().max() <= bound and first.weight.std().item() == pytest.approx(bound / np.sqrt(3), rel=0.01)


# ---------------------------------------------------------------------------- head_init


def hash_layer_of(name, head_init, trunk="auto", random_state=0):
    cls = registered_methods()[name]
    params = {"hidden_dim": 64} if "hidden_dim" in cls.test_params else {}
    method = cls(n_bits=64, random_state=random_state, head_init=head_init, trunk=trunk, **params)
    X, y = tiny_data()
    trainer = trainer_for(method, X, y)
    (layer,) = method.hash_layers(trainer.head)
    return method, layer


def test_reference_init_is_normal_0_01_with_zero_bias_for_csq():
    method, layer = hash_layer_of("CSQ", "reference")
    assert type(method).reference_head_init == "normal"
    assert layer.weight.std().item() == pytest.approx(0.01, rel=0.02)  # 64 x 2000 draws
    assert abs(layer.weight.mean().item()) < 1e-3 and torch.count_nonzero(layer.bias) == 0
    _, pytorch = hash_layer_of("CSQ", "pytorch")
    bound = 1 / np.sqrt(TRUNK_WIDTH)
    assert pytorch.weight.abs().max() <= bound and pytorch.bias.abs().max() <= bound
    assert pytorch.weight.std().item() == pytest.approx(bound / np.sqrt(3), rel=0.02)  # ~0.0129
    assert torch.count_nonzero(pytorch.bias) == 64


@pytest.mark.parametrize("name", ["DPSH", "DSDH", "LTHNet", "LTHNet_sq"])
def test_reference_init_is_pytorch_default_where_the_reference_initialises_nothing(name):
    method, layer = hash_layer_of(name, "reference")
    assert type(method).reference_head_init == "pytorch"
    bound = 1 / np.sqrt(layer.in_features)
    assert layer.weight.abs().max() <= bound and torch.count_nonzero(layer.bias) == layer.out_features
    # "pytorch" is then the same draw: the same network, not a second initialisation
    _, same = hash_layer_of(name, "pytorch")
    assert torch.equal(same.weight, layer.weight) and torch.equal(same.bias, layer.bias)


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_every_deep_method_exposes_one_hash_layer_with_n_bits_outputs(name):
    method, layer = hash_layer_of(name, "pytorch")
    assert isinstance(layer, nn.Linear) and layer.out_features == 64
    bound = 1 / np.sqrt(layer.in_features)  # head_init="pytorch": PyTorch's default for every method
    assert layer.weight.abs().max() <= bound
    assert type(method).reference_head_init in ("normal", "pytorch", "as_built")


def test_head_init_is_recorded_and_checked():
    from methods.csq import CSQ

    X, y = tiny_data(dim=12)
    assert CSQ(n_bits=8, n_epochs=1, n_threads=1).fit(X, y).settings_["head_init"] == "reference"
    with pytest.raises(InvalidInputError, match="head_init='normal' is unknown"):
        CSQ(head_init="normal").validate_params()
    with pytest.raises(InvalidInputError, match="trunk='wide' is unknown"):
        CSQ(trunk="wide").validate_params()
