"""The registry of hashing methods: ``@register("ITQ")`` on a ``HashingMethod`` subclass makes it a
benchmark row; ``list_methods("LTH*")`` and ``get_method_class(name)`` look methods up.

It lives beside the methods so that a method module needs nothing outside methods/ (and common/).
Importing it imports the package ``methods`` first, which registers every built-in method, so the
registry is complete whenever it can be asked. Method specs with parameters (``LTHNet(k=3)``) and
plugin loading belong to the runner (``benchmark.specs``).
"""
from __future__ import annotations

import fnmatch
import re

from common.errors import BenchmarkError

_REGISTRY: dict[str, type] = {}
NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_\-]*"


class UnknownMethodError(BenchmarkError, KeyError):
    """A method name (or spec) that is not registered; the message lists what is."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def register(name: str, *, override: bool = False):
    """Class decorator: register a ``HashingMethod`` subclass under ``name``.

    A name that is taken by another class is an error unless ``override=True``; registering the
    same class again (a plugin module imported twice, a class shipped to a Dask worker) is allowed.
    """
    from .base import HashingMethod

    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, HashingMethod)):
            raise TypeError(f"@register({name!r}) must decorate a methods.base.HashingMethod subclass.")
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"method name {name!r} must be letters, digits, '_' or '-', starting with a letter.")
        existing = _REGISTRY.get(name)
        same_class = existing is not None and (existing.__module__, existing.__qualname__) == (
            cls.__module__, cls.__qualname__)
        if existing is not None and not same_class and not override:
            raise ValueError(f"method name {name!r} is already registered by {existing.__module__}."
                             f"{existing.__qualname__}; choose another name or pass override=True.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def registered_methods() -> dict[str, type]:
    """Name -> class of every registered method, built-ins first (the paper's row order)."""
    return dict(_REGISTRY)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (case-insensitive), in registration order."""
    return [name for name in _REGISTRY if fnmatch.fnmatch(name.lower(), pattern.lower())]


def get_method_class(name: str) -> type:
    """The class registered under ``name`` (case-insensitive)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    lowered = {registered.lower(): registered for registered in _REGISTRY}
    if isinstance(name, str) and name.lower() in lowered:
        return _REGISTRY[lowered[name.lower()]]
    raise UnknownMethodError(
        f"unknown method {name!r}. Registered methods: {', '.join(_REGISTRY)}. "
        "Load your own with --plugin MODULE."
    )
