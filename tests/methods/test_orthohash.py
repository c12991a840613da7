"""OrthoHash: loss by hand, parity with the reference loss and codebook, BatchNorm on a one-row batch,
learning on long-tail clusters."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from methods.base import InvalidInputError
from methods.orthohash import (OrthoHash, OrthoHashHead, bernoulli_codebook, optimized_codebook, orthohash_loss,
                               quantization_error)
from parity_data import load_parity


@pytest.fixture(scope="module")
def parity():
    return load_parity("orthohash")


def test_loss_value_by_hand():
    codebook = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    v = torch.tensor([[3.0, 3.0]], dtype=torch.float64)  # cosines (1, 0) with the two codes
    label = torch.tensor([0])
    cos_margin = orthohash_loss(v, codebook, label, scale=8.0, margin=0.2)
    # logits 8 (1 - 0.2) = 6.4 and 0: CE = log(1 + e^-6.4)
    assert abs(cos_margin.item() - math.log1p(math.exp(-6.4))) < 1e-12
    assert abs(cos_margin.item() - 0.0016602) < 1e-7
    arc_margin = orthohash_loss(v, codebook, label, scale=8.0, margin=0.2, margin_type="arc")
    target = 8.0 * math.cos(math.acos(0.99999) + 0.2)  # the cosine 1 is clamped to 0.99999 first
    other = 8.0 * math.cos(math.acos(0.0))
    assert abs(arc_margin.item() - (math.log(math.exp(target) + math.exp(other)) - target)) < 1e-9


def test_quantization_terms_by_hand():
    v = torch.tensor([[2.0, 0.5], [-1.0, -1.0]], dtype=torch.float64)
    # row 1: sgn (1, 1), cos = 2.5 / (sqrt(4.25) sqrt(2)); row 2: on its sign, cos = 1
    cs = (1 - 2.5 / (math.sqrt(4.25) * math.sqrt(2))) / 2
    assert abs(quantization_error(v, "cs").item() - cs) < 1e-12
    assert abs(quantization_error(v, "l1").item() - (1.0 + 0.5 + 0 + 0) / 4) < 1e-12
    assert abs(quantization_error(v, "l2").item() - (1.0 + 0.25) / 4) < 1e-12
    codebook = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    plain = orthohash_loss(v, codebook, labels, scale=8.0, margin=0.2)
    weighted = orthohash_loss(v, codebook, labels, scale=8.0, margin=0.2, quantization_weight=0.5)
    assert abs(weighted.item() - plain.item() - 0.5 * cs) < 1e-12


def test_parity_with_reference_loss(parity):
    """CosSim + OrthoHashLoss of kamwoh/orthohash on the same batch, for every case in the fixture."""
    case = parity["loss"]
    v, codebook = torch.tensor(case["code_logits"]), torch.tensor(case["codebook"])
    labels = torch.tensor(case["labels"])
    assert len(case["cases"]) >= 5
    for reference in case["cases"]:
        ours = orthohash_loss(v, codebook, labels, scale=reference["s"], margin=reference["m"],
                              margin_type=reference["m_type"], quantization_weight=reference["quan"],
                              quantization_type=reference["quan_type"])
        assert abs(ours.item() - reference["reference_loss"]) < 1e-6, reference


def test_parity_with_reference_optimized_codebook(parity):
    """get_codebook after torch.manual_seed(seed) == ours from a Generator seeded the same: every entry."""
    for case in parity["codebooks"]["cases"]:
        generator = torch.Generator().manual_seed(case["seed"])
        ours = optimized_codebook(case["n_classes"], case["n_bits"], generator, max_tries=case["max_tries"])
        assert ours.to(torch.int64).tolist() == case["reference_codebook"], case["seed"]


def test_optimized_codebook_spreads_codes_and_fails_clearly():
    codes = optimized_codebook(10, 32, torch.Generator().manual_seed(0), max_tries=100)
    distances = (codes[:, None, :] != codes[None, :, :]).sum(-1)[np.triu_indices(10, 1)]
    random = bernoulli_codebook(10, 32, torch.Generator().manual_seed(0))
    random_distances = (random[:, None, :] != random[None, :, :]).sum(-1)[np.triu_indices(10, 1)]
    assert distances.min() > random_distances.min()
    with pytest.raises(InvalidInputError, match="codebook='bernoulli'"):
        optimized_codebook(40, 2, torch.Generator().manual_seed(0), max_tries=5)  # 4 distinct codes only


def test_bernoulli_codebook_is_the_references_draw_for_its_seed():
    ours = OrthoHash(n_bits=32, random_state=11).make_codebook(10)
    with torch.random.fork_rng():
        torch.manual_seed(11)  # the reference seeds the global RNG, then draws the codebook first
        reference_draw = torch.bernoulli(torch.ones(10, 32) * 0.5) * 2.0 - 1.0
    assert torch.equal(ours, reference_draw)
    assert set(ours.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(ours, OrthoHash(n_bits=32, random_state=12).make_codebook(10))
    big = bernoulli_codebook(100, 64, torch.Generator().manual_seed(0))
    assert abs((big > 0).float().mean().item() - 0.5) < 0.02


def test_batch_norm_of_a_one_row_batch():
    torch.manual_seed(0)
    head = OrthoHashHead(6, 4).train()
    head(torch.randn(8, 6))  # an ordinary batch updates the running statistics
    mean, var = head.batch_norm.running_mean.clone(), head.batch_norm.running_var.clone()
    row = torch.randn(1, 6)
    out = head(row)
    assert torch.equal(head.batch_norm.running_mean, mean) and torch.equal(head.batch_norm.running_var, var)
    assert torch.allclose(out, head.eval()(row))  # normalised with the running statistics


def test_fit_with_a_last_batch_of_one(clustered_features):
    X, y = clustered_features
    method = OrthoHash(n_bits=8, n_epochs=2, batch_size=32, n_threads=1).fit(X[:33], y[:33])
    assert np.isfinite(method.training_log_["loss"]).all()
    assert method.codebook_.shape == (int(y[:33].max()) + 1, 8) and method.codebook_.dtype == np.int8


@pytest.mark.parametrize("params,match", [
    ({"margin_type": "angle"}, "margin_type"), ({"quantization_type": "l3"}, "quantization_type"),
    ({"codebook": "hadamard"}, "codebook"), ({"scale": 0.0}, "scale"), ({"margin": -0.1}, "margin"),
])
def test_bad_parameters_are_named(params, match, clustered_features):
    X, y = clustered_features
    with pytest.raises(InvalidInputError, match=match):
        OrthoHash(n_bits=8, n_epochs=1, **params).fit(X, y)


def test_reference_head_init_is_normal_0_01_without_bias():
    from test_deep_trunk import hash_layer_of

    _, layer = hash_layer_of("OrthoHash", "reference")  # models/alexnet.py: hash_fc[0], bias=False
    assert layer.bias is None and layer.weight.std().item() == pytest.approx(0.01, rel=0.02)


# ---------------------------------------------------------------------------- training
def test_learns_on_long_tail_features(long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    method = OrthoHash(n_bits=64, random_state=0, settings="features", learning_rate=1e-3, n_epochs=30, n_threads=1)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.3  # measured 0.92-0.93 (seeds 0, 1) against 0.37
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]
    # training codes lie nearest (in Hamming distance) to their own class's code
    X, y = long_tail_benchmark.features, long_tail_benchmark.labels
    train = long_tail_benchmark.train_index
    codes = method.encode(X[train]).astype(np.int64)
    nearest = np.argmax(codes @ method.codebook_.T.astype(np.int64), axis=1)
    assert np.mean(nearest == y[train]) > 0.9
