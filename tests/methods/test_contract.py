"""The shared contract every registered method must pass (our analogue of sklearn's estimator checks).

Parametrised over the registry, so a method is tested the moment it is registered.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from methods.registry import registered_methods
from methods.base import InvalidInputError

METHOD_NAMES = list(registered_methods())


def build(name, **params):
    cls = registered_methods()[name]
    return cls(**{**cls.test_params, **params})


@pytest.fixture(scope="module")
def data(clustered_features):
    X, y = clustered_features
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    return X[:450], y[:450], X[450:]


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_codes_shape_values_and_determinism(name, data):
    X_train, y_train, X_test = data
    first = build(name, n_bits=16, random_state=7).fit(X_train, y_train).encode(X_test)
    second = build(name, n_bits=16, random_state=7).fit(X_train, y_train).encode(X_test)
    assert first.shape == (len(X_test), 16)
    assert first.dtype == np.int8
    assert set(np.unique(first)) <= {-1, 1}
    np.testing.assert_array_equal(first, second)
    # not a constant code: some bit varies across items
    assert (first.std(axis=0) > 0).any()


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("n_bits", [8, 24])
def test_every_bit_length(name, n_bits, data):
    X_train, y_train, X_test = data
    codes = build(name, n_bits=n_bits).fit(X_train, y_train).encode(X_test)
    assert codes.shape == (len(X_test), n_bits)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_clone_and_pickle_round_trip(name, data):
    X_train, y_train, X_test = data
    method = build(name, n_bits=16)
    cloned = clone(method)
    assert cloned.get_params() == method.get_params()
    method.fit(X_train, y_train)
    restored = pickle.loads(pickle.dumps(method))
    np.testing.assert_array_equal(restored.encode(X_test), method.encode(X_test))


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_bad_input_is_named(name, data):
    X_train, y_train, X_test = data
    method = build(name, n_bits=16)
    with pytest.raises(NotFittedError):
        method.encode(X_test)
    bad = X_train.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        build(name, n_bits=16).fit(bad, y_train)
    with pytest.raises(InvalidInputError, match="2-D"):
        build(name, n_bits=16).fit(X_train[0], y_train)
    with pytest.raises(InvalidInputError, match="n_bits"):
        build(name, n_bits=0).fit(X_train, y_train)
    fitted = build(name, n_bits=16).fit(X_train, y_train)
    with pytest.raises(InvalidInputError, match="features"):
        fitted.encode(X_test[:, :-1])


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_class_attributes(name):
    cls = registered_methods()[name]
    assert cls.name == name
    assert cls.family in {"shallow", "deep"}
    assert isinstance(cls.uses_labels, bool)
