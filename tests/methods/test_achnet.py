"""ACHNet: loss by hand, class centres, parity with the reference (losses, centres, network), learning
on long-tail clusters, fine-tuning end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from methods.achnet import (ACHNet, ACHNetHead, achnet_loss, centre_contrastive_loss, class_centres,
                            classification_loss)
from methods.base import InvalidInputError
from parity_data import checksum, load_parity


@pytest.fixture(scope="module")
def parity():
    return load_parity("achnet")


def test_loss_value_by_hand():
    codes = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    centres = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[0.0, math.log(3.0), -math.inf]], dtype=torch.float64)  # softmax (1/4, 3/4, 0)
    labels = torch.tensor([0])
    # cosines (1, 0, -1): CCH = -log(e^1 / (e^0 + e^-1)); CE = -log(1/4 + 1e-6)
    expected = 0.2 * -math.log(0.25 + 1e-6) + (-1.0 + math.log(1.0 + math.exp(-1.0)))
    value = achnet_loss({"codes": codes, "logits": logits}, labels, centres.float(), None, 0.2, 1.0, 1e-6)
    assert abs(value.item() - expected) < 1e-6
    assert abs(expected - (-0.4094806)) < 1e-6  # the same number written out
    # temperature multiplies the cosines: t = 2 gives -2 + log(1 + e^-2)
    cch = centre_contrastive_loss(codes, centres, labels, 2.0)
    assert abs(cch.item() - (-2.0 + math.log1p(math.exp(-2.0)))) < 1e-12


def test_class_centres_and_absent_classes():
    codes = torch.tensor([[1.0, -1.0], [0.0, 1.0], [0.5, 0.5], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 2, 2])
    centres, present = class_centres(codes, labels, 4)
    np.testing.assert_allclose(centres.numpy(), [[0.5, 0.0], [0.0, 0.0], [-0.25, 0.25], [0.0, 0.0]])
    assert present.tolist() == [True, False, True, False]
    # an absent class (zero centre) is left out of the denominator: the same loss as without its row
    query = torch.tensor([[0.3, -0.8], [0.9, 0.1]])
    with_absent = centre_contrastive_loss(query, centres, torch.tensor([0, 2]), 1.0, present)
    without = centre_contrastive_loss(query, centres[[0, 2]], torch.tensor([0, 1]), 1.0)
    assert torch.isfinite(with_absent) and abs(with_absent.item() - without.item()) < 1e-6


def test_parity_with_reference_losses(parity):
    """tools/loss.py CELoss and CenConLoss on the same batch (benchmarks/parity/achnet_reference_loss.py)."""
    case = parity["loss"]
    codes, logits, centres = (torch.tensor(case[key]) for key in ("codes", "logits", "centres"))
    labels = torch.tensor(case["labels"])
    outputs = {"codes": codes, "logits": logits}
    assert abs(classification_loss(logits, labels, 1e-6).item() - case["reference_ce"]) < 1e-6
    assert abs(centre_contrastive_loss(codes, centres, labels, 1.0).item() - case["reference_cch"]) < 1e-6
    total = achnet_loss(outputs, labels, centres, torch.ones(10, dtype=torch.bool), 0.2, 1.0, 1e-6)
    assert abs(total.item() - case["reference_total"]) < 1e-6


def test_parity_with_reference_centres(parity):
    case = parity["centres"]
    generator = torch.Generator().manual_seed(1)  # the recipe in the fixture
    extra = torch.randint(0, 100, (150,), generator=generator)
    labels = torch.cat([torch.arange(100), extra])[torch.randperm(250, generator=generator)]
    codes = torch.tanh(torch.randn(250, 8, generator=generator))
    assert checksum(codes) == pytest.approx(case["checksum_codes"]), "torch's RNG changed: regenerate the fixture"
    assert checksum(labels) == pytest.approx(case["checksum_labels"])
    centres, present = class_centres(codes, labels, 100)
    assert bool(present.all())
    np.testing.assert_allclose(centres.numpy(), case["reference_centres"], rtol=0, atol=1e-6)


def test_parity_with_reference_network(parity):
    """network/resnet.py Resnet34 from the pooled feature on: same parameters, same input, same outputs."""
    case = parity["network"]
    head = ACHNetHead(512, case["hidden_dim"], case["n_bits"], case["n_classes"]).eval()
    assert [list(p.shape) for p in head.parameters()] == case["parameter_shapes"]  # same order as fc_1, fc_2, fc...
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        inputs = torch.randn(4, 512, generator=generator)
        assert checksum(inputs) == pytest.approx(case["checksum_input"]), "torch's RNG changed: regenerate the fixture"
        outputs = head(inputs)
    np.testing.assert_allclose(outputs["codes"].numpy(), case["reference_codes"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(outputs["logits"].numpy(), case["reference_logits"], rtol=0, atol=1e-6)


def test_head_branches_start_equal():
    torch.manual_seed(0)
    head = ACHNetHead(12, 20, 8, 3)
    assert torch.equal(head.branch_a.weight, head.branch_b.weight)
    assert torch.equal(head.branch_a.bias, head.branch_b.bias)
    assert not torch.equal(head.branch_a.weight, head.fusion.weight[:, :12])
    # Kaiming-normal weights: std sqrt(2 / fan_in)
    assert abs(head.fusion.weight.std().item() - math.sqrt(2 / 40)) < 0.03


def test_reference_head_init_is_kaiming_normal_as_built():
    from test_deep_trunk import hash_layer_of

    _, layer = hash_layer_of("ACHNet", "reference")  # hidden_dim 64 -> 64 bits
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    _, pytorch = hash_layer_of("ACHNet", "pytorch")
    assert pytorch.weight.abs().max() <= 1 / math.sqrt(64)


@pytest.mark.parametrize("params,match", [({"hidden_dim": 0}, "hidden_dim"), ({"temperature": -1.0}, "temperature"),
                                          ({"contrastive_balance": float("nan")}, "contrastive_balance")])
def test_bad_parameters_are_named(params, match):
    with pytest.raises(InvalidInputError, match=match):
        ACHNet(**params).validate_params()


def test_one_class_is_a_clear_error(clustered_features):
    X, y = clustered_features
    with pytest.raises(InvalidInputError, match="at least two classes"):
        ACHNet(n_bits=8, hidden_dim=16, n_epochs=1, n_threads=1).fit(X[y == 0], y[y == 0])


# ---------------------------------------------------------------------------- training
def test_learns_on_long_tail_features(long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    method = ACHNet(n_bits=64, random_state=0, hidden_dim=256, settings="features", learning_rate=1e-3,
                    n_epochs=30, n_threads=1)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.3  # measured 0.90 (seeds 0, 1) against 0.37
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.8 * losses[0]
    # the last epoch's centres: one per class, each nearest (by cosine) to its own class's codes
    X, y = long_tail_benchmark.features, long_tail_benchmark.labels
    train = long_tail_benchmark.train_index
    centres = method.centres_
    assert tuple(centres.shape) == (20, 64)
    relaxed = torch.from_numpy(method.relaxed_codes(X[train]))
    nearest = F.cosine_similarity(relaxed[:, None], centres[None], dim=2).argmax(1).numpy()
    assert np.mean(nearest == y[train]) > 0.9


def test_finetune_one_step_then_encode():
    """mode="finetune": the trainer's ResNet34 gives the pooled 512-d input of the attention."""
    from datasets.images import BackboneTransform, ImageSource

    rng = np.random.default_rng(0)
    images = ImageSource(rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), [0, 1, 0, 1],
                         transform=BackboneTransform(crop_size=32, resize_size=32))
    method = ACHNet(n_bits=8, random_state=3, mode="finetune", backbone_weights="random", n_epochs=1,
                    batch_size=4, learning_rate=1e-3, n_threads=1, hidden_dim=16)
    method.fit(images)
    assert np.isfinite(method.training_log_["loss"][0]) and method.head_.branch_a.in_features == 512
    codes = method.encode(images)
    assert codes.shape == (4, 8) and set(np.unique(codes)) <= {-1, 1}
    assert tuple(method.centres_.shape) == (2, 8)
