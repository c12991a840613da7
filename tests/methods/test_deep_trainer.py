"""The shared deep trainer (methods/_deep/) through every deep method: end-to-end fine-tuning on
tiny images with a random-init ResNet34, per-epoch loss log, and clear errors for bad labels, NaN
features and a diverging optimisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.registry import registered_methods
from methods._deep import TrainingDivergedError
from methods.base import InvalidInputError

DEEP_METHODS = sorted(name for name, cls in registered_methods().items() if cls.family == "deep")


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def build(name, **params):
    cls = registered_methods()[name]
    base = {"n_bits": 8, "settings": "features", "n_threads": 1}
    if "hidden_dim" in cls.test_params:
        base["hidden_dim"] = 16
    return cls(**{**base, **params})


def tiny_features(seed=0, n=40, dim=12, n_classes=4):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = (rng.standard_normal((n, dim)) + 2.0 * np.eye(n_classes, dim)[y]).astype(np.float32)
    return X, y


def test_every_deep_method_is_tested_here():
    assert {"DPSH", "HashNet", "DSDH", "CSQ", "LTHNet", "LTHNet_sq"} <= set(DEEP_METHODS)


# ---------------------------------------------------------------------------- per-epoch log


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_loss_log_has_one_entry_per_epoch(name):
    X, y = tiny_features()
    method = build(name, n_epochs=3, batch_size=16, learning_rate=1e-3).fit(X, y)
    log = method.training_log_
    assert len(log["loss"]) == 3 and len(log["learning_rate"]) == 3
    assert all(np.isfinite(log["loss"]))
    # cosine annealing over the whole run (default schedule): the learning rate decreases
    assert log["learning_rate"][0] > log["learning_rate"][-1]
    assert not hasattr(method, "trainer_")  # the live trainer is dropped after fit


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_bad_labels_and_features_are_named(name):
    X, y = tiny_features()
    with pytest.raises(InvalidInputError, match="negative"):
        build(name, n_epochs=1).fit(X, np.where(np.arange(len(y)) == 5, -1, y))
    with pytest.raises(InvalidInputError, match="n_classes"):
        build(name, n_epochs=1, n_classes=3).fit(X, y)  # label 3 is outside 0..2
    with pytest.raises(InvalidInputError, match="integer"):
        build(name, n_epochs=1).fit(X, y + 0.5)
    with pytest.raises(InvalidInputError, match="labels"):
        build(name, n_epochs=1).fit(X, y[:-1])
    bad = X.copy()
    bad[7, 3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        build(name, n_epochs=1).fit(bad, y)
    fitted = build(name, n_epochs=1).fit(X, y)
    with pytest.raises(InvalidInputError, match="NaN"):
        fitted.encode(bad)


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_diverging_loss_raises_a_clear_error(name):
    X, y = tiny_features()
    with pytest.raises(TrainingDivergedError, match="diverged") as error:
        build(name, n_epochs=3, batch_size=8, learning_rate=1e30).fit(X, y)
    message = str(error.value)
    assert "learning_rate" in message and "epoch 1/3" in message
    assert isinstance(error.value, InvalidInputError)


def test_infinite_features_are_named():
    X, y = tiny_features()
    X[2, 0] = np.inf
    with pytest.raises(InvalidInputError, match="infinite"):
        build("LTHNet", n_epochs=1).fit(X, y)


def test_bad_trainer_parameters_are_named():
    X, y = tiny_features()
    for params, match in [({"mode": "gpu"}, "mode"), ({"settings": "fast"}, "settings"),
                          ({"optimizer": "lbfgs"}, "optimizer"), ({"n_epochs": 0}, "n_epochs"),
                          ({"learning_rate": float("nan")}, "learning_rate"), ({"batch_size": 2.5}, "batch_size")]:
        with pytest.raises(InvalidInputError, match=match):
            build("LTHNet", **params).fit(X, y)


# ---------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def tiny_images():
    """4 random 32x32 RGB images (2 classes), transformed at their own size (no 224 resize)."""
    from datasets.images import BackboneTransform, ImageSource
    from methods._deep import import_torchvision

    import_torchvision()  # one-time import cost outside the timed tests
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    return ImageSource(images, [0, 1, 0, 1], transform=BackboneTransform(crop_size=32, resize_size=32))


def initial_backbone(random_state):
    """The random ResNet34 the trainer starts from: initialised under the method's random_state."""
    from methods._deep import build_resnet34_backbone

    return build_resnet34_backbone("random", random_seed=random_state)


@pytest.mark.parametrize("name,params", [("LTHNet", {"k": 1, "hidden_dim": 32}), ("DPSH", {})])
def test_finetune_one_step_then_encode(name, params, tiny_images):
    method = registered_methods()[name](
        n_bits=8, random_state=3, mode="finetune", backbone_weights="random", n_epochs=1, batch_size=4,
        learning_rate=1e-3, n_threads=1, **params,
    )
    method.fit(tiny_images)  # labels come from the image source
    assert len(method.training_log_["loss"]) == 1 and np.isfinite(method.training_log_["loss"][0])
    assert method.n_classes_ == 2 and method.n_features_in_ is None
    codes = method.encode(tiny_images)
    assert codes.shape == (4, 8) and codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    np.testing.assert_array_equal(method.encode(tiny_images), codes)  # eval mode: deterministic
    # end to end: the one optimisation step moved the backbone away from its random start
    start = initial_backbone(3)
    assert method.backbone_ is not None
    for key in ("conv1.weight", "layer4.2.conv2.weight"):
        before, after = start.state_dict()[key], method.backbone_.state_dict()[key]
        assert before.shape == after.shape and not torch.equal(before, after)
    if name == "LTHNet":  # memory of (k+1)C rows from the fine-tuned direct features
        assert tuple(method.head_.memory.shape) == (4, 32)
        assert torch.isfinite(method.head_.memory).all() and method.head_.memory.abs().sum() > 0


def test_finetune_needs_an_image_source(tiny_images):
    X, y = tiny_features()
    method = build("DPSH", mode="finetune", backbone_weights="random", n_epochs=1)
    with pytest.raises(InvalidInputError, match="image source"):
        method.fit(X, y)
    with pytest.raises(InvalidInputError, match="ImageNet|ResNet34|random"):
        build("DPSH", mode="finetune", backbone_weights="NOT_A_WEIGHT_SET", n_epochs=1).fit(tiny_images)


def test_finetune_bad_labels_are_named(tiny_images):
    method = build("LTHNet", mode="finetune", backbone_weights="random", n_epochs=1, n_classes=1)
    with pytest.raises(InvalidInputError, match="n_classes"):
        method.fit(tiny_images)
