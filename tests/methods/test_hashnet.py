"""HashNet: the weighted pairwise loss between two sets of codes (hand-computed values, gradient),
the memory-bank pairing, the continuation schedule tied to the fraction of training, training."""
from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from methods.base import InvalidInputError
from methods.hashnet import continuation_scale, hashnet_loss, pair_weights


def softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def test_loss_of_two_batches_matches_hand_computed_value():
    codes_a = torch.tensor([[1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)
    codes_b = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    labels_a, labels_b = torch.tensor([0, 1]), torch.tensor([1, 1, 0])
    similar, dissimilar = pair_weights(labels_a, labels_b, dtype=torch.float64)
    assert similar.tolist() == [[0, 0, 1], [1, 1, 0]] and dissimilar.tolist() == [[1, 1, 0], [0, 0, 1]]
    # a = 0.5: logits row 0 = 0.5 * (0, -2, 2) = (0, -1, 1), row 1 = 0.5 * (2, 0, 0) = (1, 0, 0)
    # similar pairs (0,2) logit 1, (1,0) logit 1, (1,1) logit 0: softplus(x) - x
    similar_mean = (2 * (softplus(1.0) - 1.0) + (softplus(0.0) - 0.0)) / 3
    # dissimilar pairs (0,0) logit 0, (0,1) logit -1, (1,2) logit 0: softplus(x)
    dissimilar_mean = (softplus(0.0) + softplus(-1.0) + softplus(0.0)) / 3
    loss = hashnet_loss(codes_a, codes_b, similar, dissimilar, 0.5).item()
    assert loss == pytest.approx(similar_mean + dissimilar_mean, abs=1e-12)
    assert loss == pytest.approx(1.0064089, abs=1e-6)
    # the reference's weighting, written out: sum w_ij l_ij / S with w = S/S1, S/S0 (S1 = S0 = 3, S = 6)
    weighted = (6 / 3 * 3 * similar_mean + 6 / 3 * 3 * dissimilar_mean) / 6
    assert loss == pytest.approx(weighted, abs=1e-12)


def test_excluded_self_pairs_count_in_neither_mean():
    codes = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 2])
    # batch rows 0 and 2 against the bank of all three items; their own rows are excluded
    similar, dissimilar = pair_weights(labels[[0, 2]], labels, torch.tensor([0, 2]), dtype=torch.float64)
    assert similar.tolist() == [[0, 1, 0], [0, 0, 0]]
    assert dissimilar.tolist() == [[0, 0, 1], [1, 1, 0]]
    logits = codes[[0, 2]] @ codes.T  # a = 1
    expected = (softplus(logits[0, 1].item()) - logits[0, 1].item()) + sum(
        softplus(logits[i, j].item()) for i, j in ((0, 2), (1, 0), (1, 1))) / 3
    assert hashnet_loss(codes[[0, 2]], codes, similar, dissimilar, 1.0).item() == pytest.approx(expected, abs=1e-12)


def test_pairing_without_similar_pairs_uses_the_dissimilar_mean_only():
    h = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])
    similar, dissimilar = pair_weights(labels, labels, torch.arange(3), dtype=torch.float64)
    logits = h @ h.T
    mask = ~torch.eye(3, dtype=torch.bool)
    expected = torch.nn.functional.softplus(logits[mask]).mean()
    assert hashnet_loss(h, h, similar, dissimilar, 1.0).item() == pytest.approx(expected.item(), abs=1e-12)


def test_loss_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(5, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    bank = torch.tanh(torch.randn(9, 6, dtype=torch.float64, generator=generator))
    similar, dissimilar = pair_weights(torch.tensor([0, 1, 0, 2, 1]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2]),
                                       torch.tensor([0, 1, 2, 3, 4]), dtype=torch.float64)
    assert gradcheck(lambda x: hashnet_loss(torch.tanh(2.0 * x), bank, similar, dissimilar, 10.0 / 6), (z,))


# ---------------------------------------------------------------------------- continuation
def test_continuation_matches_the_reference_over_its_10000_iterations():
    # network.py: iter_num counts the forward pass first, the scale steps when iter_num % 200 == 0
    assert continuation_scale(0, 10_000) == 1.0
    assert continuation_scale(198, 10_000) == 1.0
    assert continuation_scale(199, 10_000) == math.sqrt(2.0)
    assert continuation_scale(399, 10_000) == math.sqrt(3.0)
    assert continuation_scale(9_999, 10_000) == math.sqrt(51.0)


@pytest.mark.parametrize("total_steps", [1, 7, 390, 2_500, 10_000, 37_500, 625_000])
def test_continuation_ends_at_the_reference_end_and_never_decreases(total_steps):
    steps = sorted({0, total_steps - 1, *range(0, total_steps, max(1, total_steps // 997))})
    betas = [continuation_scale(step, total_steps) for step in steps]
    assert all(later >= earlier for earlier, later in zip(betas, betas[1:]))
    assert betas[-1] == pytest.approx(math.sqrt(51.0), abs=1e-12)  # 7.1414, for every training length
    # half way through training: the reference's value at iteration 5,000
    if total_steps >= 10_000:
        assert continuation_scale(total_steps // 2 - 1, total_steps) == math.sqrt(1 + 0.005 * 5_000)
    # stepped: at most 50 distinct values (every 200 of the 10,000 reference iterations) plus the start
    assert len(set(betas)) <= 51


def test_continuation_refuses_a_step_outside_training():
    with pytest.raises(InvalidInputError, match="outside"):
        continuation_scale(10, 10)


# ---------------------------------------------------------------------------- training
SHORT_RUN = dict(settings="features", learning_rate=1e-3, n_epochs=30, n_threads=1)


def test_learns_on_long_tail_features(long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    from methods.hashnet import HashNet

    method = HashNet(n_bits=64, random_state=0, **SHORT_RUN)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.1
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.9 * losses[0]
    # 385 items, batch 32: 13 steps per epoch; beta follows the schedule over 390 steps, to sqrt(51)
    betas = method.training_log_["continuation_beta"]
    assert betas[0] == continuation_scale(12, 390)
    assert betas == sorted(betas) and betas[-1] == math.sqrt(51.0) == method.head_.beta
    # against the bank every batch meets similar pairs (the smallest class of this split has 8 items)
    assert method.training_log_["batches_without_similar_pair"] == [0.0] * 30
    assert min(method.training_log_["similar_pairs_per_batch"]) > 32
    assert not hasattr(method, "pre_activation_bank_")


def test_bank_pairing_meets_more_similar_pairs_than_one_batch_at_batch_8():
    """CIFAR-100 IF 1 class sizes (100 x 500 training items): in one batch of 8, all 8 items are
    from different classes with probability prod_{i<8} (1 - 499 i / 49,999) ~ 0.75; against the
    bank no batch lacks similar pairs (benchmarks/hashnet_pairs.py measures the whole table)."""
    from methods.hashnet import HashNet

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(100).repeat_interleave(500)
    order = torch.randperm(labels.numel(), generator=generator)[:8 * 400].view(400, 8)
    in_batch = [pair_weights(labels[rows], labels[rows], torch.arange(8))[0].sum().item() for rows in order]
    bank = [pair_weights(labels[rows], labels, rows)[0].sum().item() for rows in order[:25]]
    share_in_batch = sum(count == 0 for count in in_batch) / len(order)
    expected = math.prod(1 - 499 * i / 49_999 for i in range(8))
    assert abs(share_in_batch - expected) < 0.07  # 400 batches: standard error 0.022
    assert min(bank) == max(bank) == 8 * 499  # every item meets its 499 classmates
    assert HashNet().get_params()["continuation_iterations"] == 10_000


def test_sigmoid_scale_defaults_to_ten_over_bits():
    from methods.hashnet import HashNet

    assert HashNet(n_bits=32)._sigmoid_scale() == 10.0 / 32
    assert HashNet(n_bits=32, sigmoid_scale=0.5)._sigmoid_scale() == 0.5


@pytest.mark.parametrize("params, match", [({"sigmoid_scale": 0.0}, "sigmoid_scale"),
                                           ({"continuation_iterations": 0}, "continuation_iterations"),
                                           ({"continuation_step_size": 2.5}, "continuation_step_size")])
def test_bad_parameters_are_refused_by_name(params, match):
    from methods.hashnet import HashNet

    with pytest.raises(InvalidInputError, match=match):
        HashNet(**params).validate_params()
