"""methods.checks.check_method, the contract checks shipped to plugin authors: a good method passes
every check (class or instance); deliberately broken plugins fail the right check with a message
that names the method, the check and the fix."""
from __future__ import annotations

import numpy as np
import pytest

from methods.base import HashingMethod
from methods.checks import CHECK_NAMES, ContractCheckError, check_data, check_method
from methods.lsh import LSH
from methods.pcah import PCAH


class ConstantCodes(HashingMethod):
    """Broken: every item gets the all-ones code."""

    def _fit(self, X, y):
        pass

    def _encode(self, X):
        return np.ones((X.shape[0], self.n_bits))


class UnseededProjection(HashingMethod):
    """Broken: the projection comes from an unseeded generator, so random_state is ignored."""

    def _fit(self, X, y):
        self.projection_ = np.random.default_rng().standard_normal((X.shape[1], self.n_bits))

    def _encode(self, X):
        return X @ self.projection_ - np.median(X @ self.projection_, axis=0)


class NoValidation(LSH):
    """Broken: fit skips the input checks (NaN and 1-D input slip through or crash unnamed)."""

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = X.shape[-1]
        self._fit(X.reshape(len(X), -1), y)
        self.is_fitted_ = True
        return self


class FloatCodes(LSH):
    """Broken: encode returns float codes."""

    def encode(self, X):
        return super().encode(X).astype(np.float64)


class ForgetsParameters(LSH):
    """Broken: __init__ renames its argument, so clone loses it."""

    def __init__(self, n_bits=64, random_state=0, scale=1.0):
        super().__init__(n_bits=n_bits, random_state=random_state)
        self.scale = scale * 2


def test_a_registered_method_passes_every_check_as_class_and_instance():
    assert check_method(LSH) == list(CHECK_NAMES)
    assert check_method(PCAH(n_bits=32), skip=["class_attributes"]) == [n for n in CHECK_NAMES if n != "class_attributes"]


@pytest.mark.parametrize("broken,check,words", [
    (ConstantCodes, "not_constant", "same code"),
    (UnseededProjection, "deterministic", "random_state"),
    (NoValidation, "nan_input", "check_features"),
    (FloatCodes, "codes", "int8"),
    (ForgetsParameters, "clone_and_pickle", "__init__ must store"),
])
def test_a_broken_plugin_fails_the_right_check_with_a_clear_message(broken, check, words):
    with pytest.raises(ContractCheckError) as error:
        check_method(broken, skip=["class_attributes"])
    message = str(error.value)
    assert message.startswith(f"{broken.__name__}: contract check '{check}' failed:"), message
    assert words in message
    assert isinstance(error.value, AssertionError)
    # the checks before the failing one passed
    before = list(CHECK_NAMES[1:CHECK_NAMES.index(check)])
    assert check_method(broken, only=before) == before


def test_an_unregistered_class_is_told_to_register():
    with pytest.raises(AssertionError, match=r"ConstantCodes: contract check 'class_attributes' failed: .*@register"):
        check_method(ConstantCodes, only=["class_attributes"])


def test_own_data_and_bad_arguments():
    X_train, y_train, X_test = check_data()
    assert X_train.shape == (450, 32) and len(y_train) == 450 and X_test.shape == (150, 32)
    assert check_method(LSH, only=["codes"], data=(X_train[:, :8], y_train, X_test[:, :8])) == ["codes"]
    with pytest.raises(ValueError, match="unknown contract checks.*'codes'"):
        check_method(LSH, only=["shape"])
    with pytest.raises(TypeError, match="HashingMethod"):
        check_method(object)


def test_a_crash_inside_a_check_is_named():
    class Crashes(LSH):
        def _encode(self, X):
            raise ZeroDivisionError("boom")

    with pytest.raises(ContractCheckError, match=r"Crashes: contract check 'codes' failed: raised ZeroDivisionError: boom"):
        check_method(Crashes, only=["codes"])
