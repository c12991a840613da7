"""The contract checks every hashing method must pass, shipped for plugin authors (the way
scikit-learn ships ``check_estimator``): ``check_method(MyHash)`` before registering a new row.

    from methods.checks import check_method
    check_method(MyHash)                      # a class: built with its ``test_params``
    check_method(MyHash(n_bits=32, alpha=2))  # an instance: its own parameters
    check_method(MyHash, only=["codes", "deterministic"])

The checks run on small synthetic clustered data made here (10 classes x 60 items, 32-d,
non-negative; 450 training items, 150 to encode) unless ``data=(X_train, y_train, X_test)`` is
given. Each check raises ``ContractCheckError`` (an ``AssertionError``) naming the method, the check and what went wrong;
``check_method`` returns the names of the checks that passed. No pytest needed.

Checks (``CHECK_NAMES``, in order): ``class_attributes`` (registered name, family, uses_labels),
``codes`` (shape (n, n_bits), int8, values in {-1, +1}), ``deterministic`` (two fits under the same
``random_state`` give the same codes), ``not_constant`` (some bit varies across items),
``bit_lengths`` (8 and 24 bits), ``clone_and_pickle`` (``sklearn.clone`` keeps the parameters; a
pickled fitted method encodes the same), ``not_fitted`` (``encode`` before ``fit`` raises
``NotFittedError``), and the named input errors (``InvalidInputError`` whose message names the
problem): ``nan_input`` ("NaN"), ``one_dimensional_input`` ("2-D"), ``zero_bits`` ("n_bits"),
``wrong_feature_count`` ("features").
"""
from __future__ import annotations

import pickle
import re
from typing import Callable

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from .base import HashingMethod, InvalidInputError

#: the seed and code length of the main fit the checks share
RANDOM_STATE = 7
N_BITS = 16
BIT_LENGTHS = (8, 24)
FAMILIES = ("shallow", "deep")


class ContractCheckError(AssertionError):
    """A method failed a contract check; the message names the method, the check and the fix."""


def check_data(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test): 10 clearly clustered classes x 60 items, 32-d, shuffled; 450/150."""
    from datasets.synthetic import make_class_clusters

    X, y = make_class_clusters(10, 60, 32, seed=seed, noise=0.6)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    return X[:450], y[:450], X[450:]


class MethodChecker:
    """Runs the contract checks on one method (class or instance), sharing its fits between checks.

    ``build(**params)`` makes a fresh, unfitted method: the class with its ``test_params`` (or the
    instance's own parameters) updated by ``params``.
    """

    def __init__(self, method, *, data: tuple | None = None):
        if isinstance(method, HashingMethod):
            self.cls, self.params = type(method), method.get_params(deep=False)
        elif isinstance(method, type) and issubclass(method, HashingMethod):
            self.cls, self.params = method, dict(method.test_params)
        else:
            raise TypeError(f"check_method needs a methods.base.HashingMethod subclass or instance, got {method!r}.")
        # a registered class's own name; a subclass inherits its parent's, so fall back to the class name
        self.label = self.cls.__dict__.get("name") or self.cls.__name__
        self.X_train, self.y_train, self.X_test = check_data() if data is None else data
        self._fits: dict[tuple, tuple[HashingMethod, np.ndarray]] = {}

    def build(self, **params) -> HashingMethod:
        return self.cls(**{**self.params, **params})

    def fitted(self, n_bits: int = N_BITS, random_state=RANDOM_STATE, replica: int = 0):
        """(fitted method, codes of X_test), memoised; ``replica`` > 0 forces an independent fit."""
        key = (n_bits, random_state, replica)
        if key not in self._fits:
            method = self.build(n_bits=n_bits, random_state=random_state).fit(self.X_train, self.y_train)
            self._fits[key] = method, method.encode(self.X_test)
        return self._fits[key]

    def fail(self, check: str, message: str):
        raise ContractCheckError(f"{self.label}: contract check '{check}' failed: {message}")

    def expect_input_error(self, check: str, action: Callable, pattern: str, what: str, fix: str) -> None:
        """``action()`` must raise InvalidInputError whose message matches ``pattern``."""
        try:
            action()
        except InvalidInputError as error:
            if not re.search(pattern, str(error)):
                self.fail(check, f"{what} raised InvalidInputError({str(error)!r}), whose message does not "
                                 f"mention {pattern!r}; say what is wrong and how to fix it.")
            return
        except Exception as error:  # noqa: BLE001 - any other class is the failure being reported
            self.fail(check, f"{what} raised {type(error).__name__}({error}) instead of "
                             f"methods.base.InvalidInputError; {fix}")
        self.fail(check, f"{what} raised no error; {fix}")

    def run(self, only=None, skip=()) -> list[str]:
        """Run the checks (all, or ``only`` those, minus ``skip``) in order; the names that passed."""
        names = list(CHECK_NAMES if only is None else only)
        unknown = [name for name in [*names, *skip] if name not in CHECKS]
        if unknown:
            raise ValueError(f"unknown contract checks {unknown}; choose from {list(CHECK_NAMES)}.")
        passed = []
        for name in names:
            if name in skip:
                continue
            try:
                CHECKS[name](self)
            except ContractCheckError:
                raise
            except Exception as error:  # a crash inside fit/encode is a failed check, named
                self.fail(name, f"raised {type(error).__name__}: {error}")  # chained to the crash
            passed.append(name)
        return passed


# ---------------------------------------------------------------------------- the checks


def check_class_attributes(checker: MethodChecker) -> None:
    from .registry import registered_methods

    cls = checker.cls
    if not cls.name or registered_methods().get(cls.name) is not cls:
        checker.fail("class_attributes", f"{cls.__name__} is not registered under its name {cls.name!r}; "
                                         "decorate the class with @register('Name') (from methods import register).")
    if cls.family not in FAMILIES:
        checker.fail("class_attributes", f"family is {cls.family!r}; set the class attribute to one of {FAMILIES}.")
    if not isinstance(cls.uses_labels, bool):
        checker.fail("class_attributes", f"uses_labels is {cls.uses_labels!r}; set it to True or False.")


def check_codes(checker: MethodChecker) -> None:
    _, codes = checker.fitted()
    expected = (len(checker.X_test), N_BITS)
    if not isinstance(codes, np.ndarray) or codes.shape != expected:
        checker.fail("codes", f"encode returned shape {getattr(codes, 'shape', type(codes).__name__)}, expected "
                              f"{expected} (n_samples, n_bits).")
    if codes.dtype != np.int8:
        checker.fail("codes", f"encode returned dtype {codes.dtype}, expected int8 (use methods.base.binarize).")
    values = set(np.unique(codes).tolist())
    if not values <= {-1, 1}:
        checker.fail("codes", f"codes hold the values {sorted(values)}, expected only -1 and +1.")


def check_deterministic(checker: MethodChecker) -> None:
    _, first = checker.fitted()
    _, second = checker.fitted(replica=1)
    if not np.array_equal(first, second):
        differ = int((first != second).any(axis=1).sum())
        checker.fail("deterministic", f"two fits with random_state={RANDOM_STATE} gave different codes for {differ} "
                                      f"of {len(first)} items; draw all randomness from random_state (self._rng()), "
                                      "never from a global or unseeded generator.")


def check_not_constant(checker: MethodChecker) -> None:
    _, codes = checker.fitted()
    if not (codes.std(axis=0) > 0).any():
        checker.fail("not_constant", f"every item got the same code (all {N_BITS} bits constant across "
                                     f"{len(codes)} clustered items); the codes carry no information.")


def check_bit_lengths(checker: MethodChecker) -> None:
    for n_bits in BIT_LENGTHS:
        _, codes = checker.fitted(n_bits=n_bits)
        if codes.shape != (len(checker.X_test), n_bits):
            checker.fail("bit_lengths", f"n_bits={n_bits} gave codes of shape {codes.shape}, expected "
                                        f"{(len(checker.X_test), n_bits)}.")


def check_clone_and_pickle(checker: MethodChecker) -> None:
    rule = "__init__ must store every argument unchanged under its own name (and do nothing else)"
    method = checker.build(n_bits=N_BITS)
    try:
        cloned = clone(method)
    except RuntimeError as error:  # sklearn's own detection of a modified parameter
        checker.fail("clone_and_pickle", f"sklearn.clone refused the method ({error}); {rule}.")
    if cloned.get_params() != method.get_params():
        checker.fail("clone_and_pickle", f"sklearn.clone changed the parameters; {rule}.")
    fitted, codes = checker.fitted()
    restored = pickle.loads(pickle.dumps(fitted))
    if not np.array_equal(restored.encode(checker.X_test), codes):
        checker.fail("clone_and_pickle", "a pickled and restored fitted method encodes differently; keep the whole "
                                         "fitted state in attributes ending in '_'.")


def check_not_fitted(checker: MethodChecker) -> None:
    try:
        checker.build(n_bits=N_BITS).encode(checker.X_test)
    except NotFittedError:
        return
    except Exception as error:  # noqa: BLE001
        checker.fail("not_fitted", f"encode before fit raised {type(error).__name__}({error}) instead of "
                                   "sklearn's NotFittedError (call self._check_fitted()).")
    checker.fail("not_fitted", "encode before fit raised no error; call self._check_fitted() first.")


def check_nan_input(checker: MethodChecker) -> None:
    bad = checker.X_train.copy()
    bad[3, 2] = np.nan
    checker.expect_input_error("nan_input", lambda: checker.build(n_bits=N_BITS).fit(bad, checker.y_train), "NaN",
                               "fit on features with a NaN", "validate X with methods.base.check_features.")


def check_one_dimensional_input(checker: MethodChecker) -> None:
    checker.expect_input_error(
        "one_dimensional_input", lambda: checker.build(n_bits=N_BITS).fit(checker.X_train[0], checker.y_train),
        "2-D", "fit on a 1-D array", "validate X with methods.base.check_features.")


def check_zero_bits(checker: MethodChecker) -> None:
    checker.expect_input_error(
        "zero_bits", lambda: checker.build(n_bits=0).fit(checker.X_train, checker.y_train), "n_bits",
        "fit with n_bits=0", "check n_bits first (self._check_n_bits()).")


def check_wrong_feature_count(checker: MethodChecker) -> None:
    fitted, _ = checker.fitted()
    checker.expect_input_error(
        "wrong_feature_count", lambda: fitted.encode(checker.X_test[:, :-1]), "features",
        "encode with one feature fewer than fit", "check X against n_features_in_ in encode.")


#: every contract check by name, in the order check_method runs them
CHECKS: dict[str, Callable[[MethodChecker], None]] = {
    "class_attributes": check_class_attributes,
    "codes": check_codes,
    "deterministic": check_deterministic,
    "not_constant": check_not_constant,
    "bit_lengths": check_bit_lengths,
    "clone_and_pickle": check_clone_and_pickle,
    "not_fitted": check_not_fitted,
    "nan_input": check_nan_input,
    "one_dimensional_input": check_one_dimensional_input,
    "zero_bits": check_zero_bits,
    "wrong_feature_count": check_wrong_feature_count,
}
CHECK_NAMES = tuple(CHECKS)


def check_method(method, *, only=None, skip=(), data: tuple | None = None) -> list[str]:
    """Run the contract checks on a method class (built with its ``test_params``) or instance.

    ``only``/``skip``: names from ``CHECK_NAMES``; ``data``: ``(X_train, y_train, X_test)`` instead
    of the built-in clustered data. Returns the names of the checks that passed; the first failure
    raises ``ContractCheckError`` (an ``AssertionError``) naming the method, the check and the fix.
    """
    return MethodChecker(method, data=data).run(only=only, skip=skip)
