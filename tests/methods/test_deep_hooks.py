"""The deep trainer's runner hooks (progress_callback_, diagnostic_callback_: called per epoch, logged,
without effect on the trained network, reset after fit, never pickled) and validate_params (bad
values fail when a method spec is read, before any training)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from benchmark.specs import parse_method_spec
from methods._deep import diagnostic_epochs
from methods.base import InvalidInputError
from methods.registry import registered_methods

DEEP_METHODS = sorted(name for name, cls in registered_methods().items() if cls.family == "deep")

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def tiny_features(seed=0, n=40, dim=12, n_classes=4):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = (rng.standard_normal((n, dim)) + 2.0 * np.eye(n_classes, dim)[y]).astype(np.float32)
    return X, y


def build(name, **params):
    cls = registered_methods()[name]
    base = {"n_bits": 8, "n_threads": 1, "batch_size": 16, "learning_rate": 1e-3}
    if "hidden_dim" in cls.test_params:
        base["hidden_dim"] = 16
    return cls(**{**base, **params})


# ---------------------------------------------------------------------------- progress / diagnostic


def test_diagnostic_epochs_are_every_epoch_or_10_evenly_spaced_ending_at_the_last():
    assert diagnostic_epochs(5) == [1, 2, 3, 4, 5]
    assert diagnostic_epochs(10) == list(range(1, 11))
    assert diagnostic_epochs(30) == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]  # every 10% of training
    hundred = diagnostic_epochs(100)
    assert len(hundred) == 10 and hundred[0] == 10 and hundred[-1] == 100
    assert np.all(np.diff(hundred) == 10)
    assert diagnostic_epochs(31)[-1] == 31 and len(diagnostic_epochs(31)) == 10


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_hooks_are_called_per_epoch_logged_and_leave_the_network_unchanged(name):
    X, y = tiny_features()
    plain = build(name, n_epochs=3).fit(X, y)
    texts, seen = [], []

    def diagnostic(encode):
        codes = encode(X[:10])
        assert codes.dtype == np.int8 and codes.shape == (10, 8) and set(np.unique(codes)) <= {-1, 1}
        seen.append(codes)
        return float(len(seen)) / 10  # a made-up "MAP": 0.1, 0.2, 0.3

    method = build(name, n_epochs=3)
    method.progress_callback_ = texts.append
    method.diagnostic_callback_ = diagnostic
    method.fit(X, y)
    assert [text.split(" loss ")[0] for text in texts] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    log = method.training_log_
    assert log["query_map_diagnostic"] == [{"epoch": 1, "map": 0.1}, {"epoch": 2, "map": 0.2},
                                           {"epoch": 3, "map": 0.3}]
    assert 0 <= log["diagnostic_seconds"] and isinstance(log["diagnostic_seconds"], float)
    # the last diagnostic saw the final network; the diagnostic changed nothing in training
    np.testing.assert_array_equal(seen[-1], method.encode(X[:10]))
    np.testing.assert_array_equal(method.encode(X), plain.encode(X))
    assert log["loss"] == plain.training_log_["loss"]
    # reset after fit (the class attribute None shows through) and never pickled
    assert method.progress_callback_ is None and method.diagnostic_callback_ is None
    assert "progress_callback_" not in vars(method) and "diagnostic_callback_" not in vars(method)
    pickle.loads(pickle.dumps(method))


def test_diagnostic_runs_at_30_epochs_when_there_are_more():
    X, y = tiny_features(n=16)
    epochs = []
    method = build("DPSH", n_epochs=33, batch_size=16)
    method.diagnostic_callback_ = lambda encode: epochs.append(len(epochs)) or 0.5
    method.fit(X, y)
    recorded = [point["epoch"] for point in method.training_log_["query_map_diagnostic"]]
    assert recorded == diagnostic_epochs(33) and len(recorded) == 10 and recorded[-1] == 33
    assert "query_map_diagnostic" not in build("DPSH", n_epochs=1).fit(X, y).training_log_


def test_callbacks_are_reset_when_fit_fails_and_dropped_from_pickles():
    X, y = tiny_features()
    method = build("CSQ", n_epochs=1)
    method.progress_callback_ = lambda text: None  # a lambda cannot be pickled
    state = pickle.loads(pickle.dumps(method))
    assert state.progress_callback_ is None
    with pytest.raises(InvalidInputError):
        method.fit(X, y[:-1])
    assert "progress_callback_" not in vars(method)
    method.diagnostic_callback_ = lambda encode: "not a number"
    with pytest.raises(InvalidInputError, match="must return a number"):
        method.fit(X, y)
    assert method.diagnostic_callback_ is None


# ---------------------------------------------------------------------------- validate_params


@pytest.mark.parametrize("spec,named", [
    ("CSQ(n_epochs='abc')", "n_epochs"), ("CSQ(learning_rate=-1)", "learning_rate"),
    ("DPSH(batch_size=0)", "batch_size"), ("DSDH(optimizer='lbfgs')", "optimizer"),
    ("CSQ(settings='fast')", "settings"), ("CSQ(trunk='wide')", "trunk"), ("CSQ(head_init='zeros')", "head_init"),
    ("CSQ(mode='gpu')", "mode"), ("LTHNet(k=-1)", "k"), ("LTHNet(beta=1.5)", "beta"),
    ("LTHNet(hidden_dim=0)", "hidden_dim"), ("LTHNet(trunk='none')", "trunk"), ("CSQ(dataset=3)", "dataset"),
    ("CSQ(n_classes=0)", "n_classes"), ("CSQ(lr_schedule='step')", "lr_schedule"),
])
def test_bad_values_fail_when_the_spec_is_read(spec, named):
    with pytest.raises(InvalidInputError, match=named):
        parse_method_spec(spec)


def test_good_specs_pass_and_fit_validates_first():
    assert parse_method_spec("LTHNet(k=3, settings='paper', dataset='imagenet100')").build().resolved_settings()[
        "batch_size"] == 16
    X, y = tiny_features()
    with pytest.raises(InvalidInputError, match="n_epochs"):
        build("DPSH", n_epochs="abc").fit(X, y)
    with pytest.raises(InvalidInputError, match="n_bits"):
        build("CSQ", n_bits=0).validate_params()
