"""LTHNet / LTHNet_sq (paper §4, Table 1, Algorithm 1): network equations, memory (eqs. 3-4),
class-balanced loss (eq. 13), square loss (eqs. 14-15), per-epoch memory refresh, learning on
long-tail features, and the no-meta-embedding ablation (Fig. 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from methods._dpp import diverse_prototypes
from methods.lthnet import LTHNet, LTHNetHead, LTHNetSquare, build_memory, class_balanced_weights, lthnet_loss


pytestmark = pytest.mark.usefixtures("single_torch_thread")

# ---------------------------------------------------------------------------- network (Table 1)


def test_layer_shapes_follow_table_1():
    head = LTHNet(n_bits=48, k=3).build_head(512, 10)  # default hidden_dim = 2000
    assert tuple(head.direct_layer.weight.shape) == (2000, 512)        # layer 2: FC 512x2000
    assert tuple(head.selector_layer.weight.shape) == (2000, 2000)     # layer 3: FC+Tanh 2000x2000
    assert tuple(head.attention_layer.weight.shape) == ((3 + 1) * 10, 2000)  # FC+Softmax 2000x(k+1)C
    assert tuple(head.memory.shape) == (40, 2000)                      # memory (k+1)C x 2000
    assert tuple(head.hash_layer.weight.shape) == (48, 2000)           # layer 4: 2000 x q
    assert tuple(head.classifier.weight.shape) == (10, 48)             # layer 5: q x C
    # the memory is a buffer (recomputed, never a trained parameter)
    assert "memory" not in dict(head.named_parameters())
    ablation = LTHNet(n_bits=48, use_meta_embedding=False).build_head(512, 10)
    assert not hasattr(ablation, "attention_layer") and not hasattr(ablation, "memory")


def numpy_forward(head, x, use_meta_embedding=True):
    """Eqs. 5-6, 8, 10 written out with numpy from the head's parameters."""
    p = {name: value.detach().double().numpy() for name, value in head.state_dict().items()}
    direct = np.maximum(x @ p["direct_layer.weight"].T + p["direct_layer.bias"], 0)
    meta = direct
    if use_meta_embedding:
        scores = direct @ p["attention_layer.weight"].T + p["attention_layer.bias"]
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        attention /= attention.sum(axis=1, keepdims=True)
        memory_feature = attention @ p["memory"]
        selector = np.tanh(direct @ p["selector_layer.weight"].T + p["selector_layer.bias"])
        meta = direct + selector * memory_feature
    codes = np.tanh(meta @ p["hash_layer.weight"].T + p["hash_layer.bias"])
    logits = codes @ p["classifier.weight"].T + p["classifier.bias"]
    return direct, codes, logits


@pytest.mark.parametrize("use_meta_embedding", [True, False])
def test_forward_is_equations_5_6_8_10(use_meta_embedding):
    torch.manual_seed(0)
    head = LTHNetHead(6, 10, 5, 3, 2, use_meta_embedding).double()
    if use_meta_embedding:
        head.memory.copy_(torch.randn(9, 10, dtype=torch.float64))
    x = torch.randn(7, 6, dtype=torch.float64)
    out = head(x)
    direct, codes, logits = numpy_forward(head, x.numpy(), use_meta_embedding)
    np.testing.assert_allclose(out["direct"].detach().numpy(), direct, atol=1e-12)
    np.testing.assert_allclose(out["codes"].detach().numpy(), codes, atol=1e-12)
    np.testing.assert_allclose(out["logits"].detach().numpy(), logits, atol=1e-12)
    if use_meta_embedding:  # the memory enters the codes
        head.memory.zero_()
        assert not torch.allclose(head(x)["codes"], out["codes"])


def test_head_gradient_matches_finite_differences():
    torch.manual_seed(1)
    head = LTHNetHead(5, 8, 4, 3, 1, True).double()
    head.memory.copy_(torch.rand(6, 8, dtype=torch.float64))
    weights = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 2])
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda inp: lthnet_loss(head(inp)["logits"], labels, weights), (x,))


# ---------------------------------------------------------------------------- losses (eqs. 10-15)


@pytest.mark.parametrize("square_loss", [False, True])
def test_loss_gradient_matches_finite_differences(square_loss):
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 0, 2])
    weights = torch.tensor([0.2, 1.0, 0.6, 0.4], dtype=torch.float64)
    assert gradcheck(lambda z: lthnet_loss(z, labels, weights, square_loss), (logits,))


def test_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    weights = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    z = logits.numpy()
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    cross_entropy = -np.log(softmax[[0, 1], [0, 1]])                       # eqs. 10, 12
    expected = np.mean([0.5, 2.0] * cross_entropy)                          # eq. 13, batch mean
    assert abs(lthnet_loss(logits, labels, weights).item() - expected) < 1e-12
    # LTHNet_sq: y_hat = FC(h) (no softmax), ||y_hat - y||^2 (eqs. 14-15), same class weight
    squares = np.array([(2 - 1) ** 2 + 0 + 1, 0.25 + 0.25 + 9])
    assert abs(lthnet_loss(logits, labels, weights, square_loss=True).item() - np.mean([0.5, 2.0] * squares)) < 1e-12


def test_class_balanced_weights_beta_zero_is_plain_cross_entropy():
    np.testing.assert_array_equal(class_balanced_weights(np.array([500, 50, 5, 0]), 0.0), [1, 1, 1, 1])


def test_class_balanced_weights_by_hand():
    # eq. 13, (1 - beta) / (1 - beta^n); with a class of one item the maximum is 1, so the
    # normalisation by the maximum (reference LTHNetLoss) leaves the raw values.
    # beta = 0.9,   n = 1, 2, 5:  0.1/0.1, 0.1/0.19, 0.1/(1 - 0.59049)
    np.testing.assert_allclose(class_balanced_weights(np.array([1, 2, 5]), 0.9),
                               [1.0, 0.1 / 0.19, 0.1 / 0.40951], rtol=1e-12)
    # beta = 0.999, n = 1, 2, 4:  0.001/0.001, 0.001/0.001999, 0.001/(1 - 0.996005996001)
    np.testing.assert_allclose(class_balanced_weights(np.array([1, 2, 4]), 0.999),
                               [1.0, 0.001 / 0.001999, 0.001 / 0.003994003999], rtol=1e-9)
    # the smallest class gets weight 1; the others (1 - beta^n_min) / (1 - beta^n):
    # beta = 0.9, n = 500, 50, 5 (0.9^50 = 0.00515377520732, 0.9^500 ~ 1.3e-23); empty class -> 1
    np.testing.assert_allclose(class_balanced_weights(np.array([500, 50, 5, 0]), 0.9),
                               [0.40951, 0.40951 / (1 - 0.00515377520732), 1.0, 1.0], rtol=1e-9)
    # beta -> 1 approaches inverse class frequency: 0.999 gives 500/50 -> 8.07
    weights = class_balanced_weights(np.array([500, 50]), 0.999)
    assert 8.0 < weights[1] / weights[0] < 8.1


def test_fit_uses_class_balanced_weights_of_the_training_counts(monkeypatch):
    seen = {}
    original = LTHNet.on_fit_end

    def spy(self, trainer):
        seen["weights"] = self._class_weights.cpu().numpy().copy()
        original(self, trainer)

    monkeypatch.setattr(LTHNet, "on_fit_end", spy)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [6, 3, 1])
    X = rng.random((10, 4)).astype(np.float32)
    LTHNet(n_bits=8, beta=0.9, hidden_dim=8, n_epochs=1, batch_size=5, n_threads=1).fit(X, y)
    np.testing.assert_allclose(seen["weights"], [0.1 / (1 - 0.9**6), 0.1 / (1 - 0.9**3), 1.0], rtol=1e-6)


# ---------------------------------------------------------------------------- memory (eqs. 3-4)


def toy_direct(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 7 + [1] * 2 + [2] * 5)
    rng.shuffle(labels)
    direct = np.abs(rng.standard_normal((len(labels), 6))) + 0.1
    return torch.tensor(direct, dtype=torch.float32), torch.tensor(labels)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_memory_rows_centroids_and_prototypes(k):
    direct, labels = toy_direct()
    n_classes = 4  # class 3 has no training item
    memory = build_memory(direct, labels, n_classes, k)
    assert tuple(memory.shape) == ((k + 1) * n_classes, 6)
    for c in range(n_classes):
        block = memory[c * (k + 1):(c + 1) * (k + 1)]
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) == 0:
            assert torch.all(block == 0)
            continue
        centroid = direct[rows].mean(dim=0)                                     # eq. 3
        torch.testing.assert_close(block[0], centroid, rtol=1e-6, atol=1e-6)
        chosen, _ = diverse_prototypes(direct[rows], centroid, k)               # eq. 4
        expected = direct[rows[chosen]]
        torch.testing.assert_close(block[1:1 + len(chosen)], expected)
        # chosen prototypes are distinct items of this class; empty slots repeat the centroid
        assert len(chosen) == min(k, len(rows)) and len(set(chosen.tolist())) == len(chosen)
        for slot in block[1 + len(chosen):]:
            torch.testing.assert_close(slot, centroid, rtol=1e-6, atol=1e-6)
    # k = 0: the memory is exactly the C class centroids
    if k == 0:
        assert memory.shape[0] == n_classes


def test_memory_of_the_tiny_class_holds_both_items():
    direct, labels = toy_direct(1)
    memory = build_memory(direct, labels, 3, 3)
    items = direct[labels == 1]  # 2 items, k = 3: both, then the centroid once more
    block = memory[4:8]
    assert {tuple(row.tolist()) for row in block[1:3]} == {tuple(row.tolist()) for row in items}
    torch.testing.assert_close(block[3], items.mean(dim=0))


def test_memory_is_recomputed_from_the_training_set_at_every_epoch_start(monkeypatch):
    snapshots = []
    original = LTHNet.on_epoch_start

    def spy(self, epoch, trainer):
        original(self, epoch, trainer)
        snapshots.append({name: value.detach().clone() for name, value in trainer.head.state_dict().items()})

    monkeypatch.setattr(LTHNet, "on_epoch_start", spy)
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [12, 6, 3])
    X = (rng.random((21, 5)) + y[:, None]).astype(np.float32)
    method = LTHNet(n_bits=8, k=2, hidden_dim=16, n_epochs=3, batch_size=4, learning_rate=1e-2,
                    n_threads=1).fit(X, y)
    assert len(snapshots) == 3
    for state in snapshots:
        head = LTHNetHead(5, 16, 8, 3, 2, True)
        head.load_state_dict(state)
        with torch.no_grad():
            direct = head.direct(torch.from_numpy(X))
        expected = build_memory(direct, torch.from_numpy(y), 3, 2)
        torch.testing.assert_close(state["memory"], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(snapshots[0]["memory"], snapshots[-1]["memory"])
    # encoding uses the memory of the last epoch
    torch.testing.assert_close(method.head_.memory, snapshots[-1]["memory"])


# ---------------------------------------------------------------------------- learning on long-tail data
SHORT_RUN = dict(settings="features", learning_rate=1e-3, n_epochs=30, hidden_dim=128, n_threads=1)


@pytest.mark.parametrize("cls,params", [
    (LTHNet, {"k": 0}),
    (LTHNet, {"k": 3}),
    (LTHNetSquare, {"k": 3}),
    (LTHNet, {"k": 3, "use_meta_embedding": False}),
], ids=["LTHNet-k0", "LTHNet-k3", "LTHNet_sq", "no-meta-embedding"])
def test_learns_on_long_tail_features(cls, params, long_tail_benchmark):
    from deep_baseline_checks import benchmark_map, lsh_map

    method = cls(n_bits=64, random_state=0, **SHORT_RUN, **params)
    deep_map = benchmark_map(method, long_tail_benchmark)
    assert deep_map > lsh_map(long_tail_benchmark, 64) + 0.3
    losses = method.training_log_["loss"]
    assert len(losses) == 30 and losses[-1] < 0.2 * losses[0]
    # the classifier on the codes fits the training split
    X, y = long_tail_benchmark.features, long_tail_benchmark.labels
    train = long_tail_benchmark.train_index
    with torch.no_grad():
        logits = method.head_(torch.from_numpy(X[train].astype(np.float32)))["logits"]
    assert (logits.argmax(dim=1).numpy() == y[train]).mean() > 0.9


def test_paper_defaults():
    method = LTHNet()
    assert (method.k, method.beta, method.use_meta_embedding, method.hidden_dim) == (3, 0.0, True, 2000)
    assert LTHNet.table_variants == ({"k": 0}, {"k": 3})
    assert LTHNetSquare.square_loss and not LTHNet.square_loss


@pytest.mark.parametrize("params,match", [
    ({"k": -1}, "k"), ({"k": 1.5}, "k"), ({"beta": 1.0}, "beta"), ({"beta": -0.1}, "beta"),
    ({"hidden_dim": 0}, "hidden_dim"),
])
def test_bad_hyperparameters_are_named(params, match):
    from methods.base import InvalidInputError

    X = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    with pytest.raises(InvalidInputError, match=match):
        LTHNet(n_bits=4, n_epochs=1, **{"hidden_dim": 8, **params}).fit(X, np.array([0, 1] * 3))


def test_square_loss_reduction_mean_divides_by_the_classes():
    """LTHNet_sq's investigation knob: square_loss_reduction='mean' is eq. 15's sum over the C
    classes divided by C; 'sum' (the default) is eq. 15."""
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    weights = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    summed = lthnet_loss(logits, labels, weights, square_loss=True)
    averaged = lthnet_loss(logits, labels, weights, square_loss=True, class_reduction="mean")
    assert abs(averaged.item() - summed.item() / 3) < 1e-12
    assert LTHNetSquare().square_loss_reduction == "sum" and LTHNetSquare().classifier_init == "pytorch"


def test_square_variant_knobs_are_checked_and_zero_classifier_starts_at_zero():
    from methods.base import InvalidInputError

    X = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    y = np.array([0, 1] * 3)
    for params, match in (({"square_loss_reduction": "max"}, "square_loss_reduction"),
                          ({"classifier_init": "xavier"}, "classifier_init")):
        with pytest.raises(InvalidInputError, match=match):
            LTHNetSquare(n_bits=4, n_epochs=1, hidden_dim=8, **params).fit(X, y)
    head = LTHNetSquare(n_bits=4, hidden_dim=8, classifier_init="zeros").build_head(3, 2)
    assert torch.count_nonzero(head.classifier.weight) == 0 and torch.count_nonzero(head.classifier.bias) == 0
