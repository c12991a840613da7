"""The shared contract every registered method must pass (methods/checks.py, our analogue of
sklearn's estimator checks), one test per check per method so that a failure names both.

Parametrised over the registry, so a method is tested the moment it is registered.
"""
from __future__ import annotations

import pytest

from methods.checks import CHECK_NAMES, MethodChecker
from methods.registry import registered_methods

METHOD_NAMES = list(registered_methods())
_CHECKERS: dict[str, MethodChecker] = {}


@pytest.fixture(scope="module", autouse=True)
def _drop_fits():
    yield
    _CHECKERS.clear()


def checker(name: str) -> MethodChecker:
    """One checker per method for the whole module: its fits are shared by the method's checks."""
    if name not in _CHECKERS:
        _CHECKERS[name] = MethodChecker(registered_methods()[name])
    return _CHECKERS[name]


@pytest.mark.parametrize("check", CHECK_NAMES)
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_contract(name, check):
    assert checker(name).run(only=[check]) == [check]
