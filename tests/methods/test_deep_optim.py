"""The deep trainer's fast paths give PyTorch's results: FusedRMSprop (methods/_deep/optim.py) against
torch.optim.RMSprop, and a whole fit with the fused optimiser and the all-classes DPP
(methods._dpp.class_prototypes) against one with PyTorch's optimiser and the per-class DPP."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from methods._deep import trainer as deep_trainer
from methods._dpp import DEFAULT_EPSILON
from methods._deep.optim import FusedRMSprop, make_optimizer

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def parameter_pair(seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(300, 257), (257,), (70_000,), (3, 4)]  # serial and parallel kernels
    values = [torch.randn(shape, generator=generator) for shape in shapes]
    return ([value.clone().requires_grad_() for value in values],
            [value.clone().requires_grad_() for value in values], generator)


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_fused_rmsprop_equals_pytorch_to_float32_rounding(weight_decay):
    reference, fused, generator = parameter_pair()
    torch_optimizer = torch.optim.RMSprop(reference, lr=1e-3, weight_decay=weight_decay, foreach=True)
    fused_optimizer = FusedRMSprop(fused, lr=1e-3, weight_decay=weight_decay)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30, eta_min=1e-5)
                  for o in (torch_optimizer, fused_optimizer)]
    for _ in range(30):
        for a, b in zip(reference, fused):
            gradient = torch.randn(a.shape, generator=generator)
            a.grad, b.grad = gradient.clone(), gradient.clone()
        torch_optimizer.step()
        fused_optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    for a, b, start in zip(reference, fused, parameter_pair()[0]):
        assert (a.detach() - start.detach()).abs().max() > 1e-3  # the parameters did move
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    state_a, state_b = torch_optimizer.state_dict(), fused_optimizer.state_dict()
    assert state_a["param_groups"][0]["lr"] == state_b["param_groups"][0]["lr"]
    for key in state_a["state"]:
        assert set(state_a["state"][key]) == set(state_b["state"][key])
        torch.testing.assert_close(state_b["state"][key]["square_avg"], state_a["state"][key]["square_avg"],
                                   rtol=1e-5, atol=1e-12)
        assert state_b["state"][key]["step"] == state_a["state"][key]["step"] == 30


def test_make_optimizer_takes_the_fused_kernels_on_cpu():
    cpu = [torch.nn.Parameter(torch.zeros(3))]
    settings = {"optimizer": "rmsprop", "learning_rate": 1e-3, "weight_decay": 5e-4}
    assert type(make_optimizer(settings, cpu)) is FusedRMSprop
    double = [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    assert type(make_optimizer(settings, double)) is torch.optim.RMSprop  # outside the kernel's domain
    for name, cls in (("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)):
        optimizer = make_optimizer({**settings, "optimizer": name}, cpu)
        assert type(optimizer) is cls and optimizer.defaults["fused"] is True


def pytorch_optimizer(settings, parameters):
    return torch.optim.RMSprop(list(parameters), lr=settings["learning_rate"],
                               weight_decay=settings["weight_decay"], foreach=True)


@pytest.mark.parametrize("name", ["LTHNet", "CSQ", "DSDH"])
def test_a_fit_with_the_fast_paths_gives_the_same_codes(name, monkeypatch, clustered_features):
    from methods import lthnet
    from methods._dpp import _class_prototypes_by_class
    from methods.registry import get_method_class

    X, y = clustered_features  # 10 classes x 60 items, 32-d
    params = dict(n_bits=16, n_epochs=3, batch_size=16, learning_rate=1e-3, n_threads=1)
    if name == "LTHNet":
        params.update(k=3, hidden_dim=64)
    fast = get_method_class(name)(**params).fit(X, y)
    monkeypatch.setattr(deep_trainer, "make_optimizer", pytorch_optimizer)
    monkeypatch.setattr(lthnet, "class_prototypes", lambda *args: _class_prototypes_by_class(*args, DEFAULT_EPSILON))
    slow = get_method_class(name)(**params).fit(X, y)
    np.testing.assert_array_equal(fast.encode(X), slow.encode(X))
    # float32 rounding apart, the same network: RMSprop's g / sqrt(square_avg) magnifies rounding of
    # near-zero gradients, so weights (|w| ~ 0.1) agree to ~1e-4 after three epochs (DSDH: 9e-5)
    for (key, a), b in zip(fast.head_.state_dict().items(), slow.head_.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-4, msg=key)
    assert np.allclose(fast.training_log_["loss"], slow.training_log_["loss"], rtol=1e-4)
