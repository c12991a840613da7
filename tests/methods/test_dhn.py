"""DHN: loss by hand, stable log cosh, parity with the reference DHNLoss, learning on long-tail clusters."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from methods.dhn import DHN, dhn_loss, log_cosh
from methods.dpsh import pairwise_similarity
from parity_data import load_parity


def test_loss_value_by_hand():
    u = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    bank = torch.tensor([[1.0, -2.0], [2.0, 0.0]], dtype=torch.float64)
    similarity = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    # Theta = u.U_j / 2 = (2.5, 1.0); s = (1, 0); |u| - 1 = (0, 1)
    likelihood = (math.log1p(math.exp(2.5)) - 2.5 + math.log1p(math.exp(1.0))) / 2
    quantization = (math.log(math.cosh(0.0)) + math.log(math.cosh(1.0))) / 2
    expected = likelihood + 0.1 * quantization
    assert abs(dhn_loss(u, bank, similarity, 0.1).item() - expected) < 1e-12
    assert abs(expected - 0.7177648) < 1e-7  # the same number written out


def test_loss_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(4, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    bank = torch.randn(9, 6, dtype=torch.float64, generator=generator)
    similarity = pairwise_similarity(torch.tensor([0, 1, 0, 2]), torch.arange(9) % 3, torch.float64)
    assert gradcheck(lambda x: dhn_loss(x, bank, similarity, 0.1), (u,))


def test_log_cosh_is_stable():
    x = torch.tensor([-30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 30.0], dtype=torch.float64)
    np.testing.assert_allclose(log_cosh(x).numpy(), np.log(np.cosh(x.numpy())), rtol=1e-12, atol=1e-12)
    huge = log_cosh(torch.tensor([200.0, -1e4], dtype=torch.float32))  # cosh overflows float32 here
    np.testing.assert_allclose(huge.numpy(), [200.0 - math.log(2.0), 1e4 - math.log(2.0)], rtol=1e-6)


def test_parity_with_reference_loss():
    """Same seeded batches as swuxyj/DeepHash-pytorch DHNLoss (benchmarks/parity/dhn_reference_loss.py):
    three consecutive calls through DHN.loss with its memory bank, to 1e-6."""
    fixture = load_parity("dhn")
    inputs = fixture["inputs"]
    labels = torch.tensor(inputs["train_labels"])
    for alpha, reference_values in fixture["reference_losses_by_alpha"].items():
        method = DHN(n_bits=inputs["n_bits"], quantization_weight=float(alpha))
        method.trainer_ = SimpleNamespace(train_labels=labels, n_train=inputs["n_train"])
        method.on_fit_start(SimpleNamespace(n_train=inputs["n_train"], device=torch.device("cpu")))
        ours = []
        for index, outputs in zip(inputs["batch_indices"], inputs["batch_outputs"]):
            index = torch.tensor(index)
            ours.append(method.loss(torch.tensor(outputs, dtype=torch.float32), labels[index], index).item())
        np.testing.assert_allclose(ours, reference_values, rtol=0, atol=1e-6)
    assert len(reference_values) == 3 and reference_values[0] != reference_values[2]  # the bank mattered


def test_reference_head_init_is_normal_0_01():
    from test_deep_trunk import hash_layer_of

    _, layer = hash_layer_of("DHN", "reference")  # DeepHash-pytorch network.py's hash_layer
    assert layer.weight.std().item() == pytest.approx(0.01, rel=0.02) and torch.count_nonzero(layer.bias) == 0


def test_bad_quantization_weight_is_named():
    from methods.base import InvalidInputError

    with pytest.raises(InvalidInputError, match="quantization_weight"):
        DHN(quantization_weight=-0.1).validate_params()


# ---------------------------------------------------------------------------- training
SHORT_RUN = dict(settings="features", learning_rate=1e-3, n_epochs=30, n_threads=1)


def test_learns_on_long_tail_features(long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    method = DHN(n_bits=64, random_state=0, **SHORT_RUN)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.1  # measured 0.51-0.55 (seeds 0, 1) against 0.37
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.9 * losses[0]
    assert not hasattr(method, "output_bank_")  # training state is dropped after fit
