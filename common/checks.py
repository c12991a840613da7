"""Value checks shared by the command line, the methods and the evaluator (one rule, one place)."""
from __future__ import annotations

import numbers

from .errors import InvalidValueError


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value, name: str, *, error: type[Exception] = InvalidValueError, hint: str = "") -> int:
    """``value`` as an int if it is an integer >= 1 (bools refused), else ``error`` naming ``name``."""
    if not _is_integer(value) or value < 1:
        raise error(f"{name} must be a positive integer, got {value!r}{'; ' + hint if hint else '.'}")
    return int(value)


def check_nonnegative_int(value, name: str, *, error: type[Exception] = InvalidValueError, hint: str = "") -> int:
    """``value`` as an int if it is an integer >= 0 (bools refused), else ``error`` naming ``name``."""
    if not _is_integer(value) or value < 0:
        raise error(f"{name} must be an integer >= 0, got {value!r}{'; ' + hint if hint else '.'}")
    return int(value)
