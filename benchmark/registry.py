"""Deprecated: the registry moved beside the methods (``methods.registry``; ``from methods import
register``) and method specs to ``benchmark.specs``. This module re-exports both for one release
and warns on import."""
from __future__ import annotations

import warnings

from methods.registry import UnknownMethodError, get_method_class, list_methods, register, registered_methods

from .specs import MethodSpec, expand_method_specs, load_plugin, parse_method_spec

warnings.warn(
    "benchmark.registry is deprecated and will be removed in the next release: import register, "
    "list_methods and get_method_class from methods (methods.registry), and MethodSpec, "
    "parse_method_spec, expand_method_specs and load_plugin from benchmark.specs.",
    DeprecationWarning, stacklevel=2,
)


def load_builtin_methods() -> None:
    """Kept for old callers: importing ``methods.registry`` already registers the built-ins."""


__all__ = ["register", "registered_methods", "list_methods", "get_method_class", "UnknownMethodError",
           "MethodSpec", "parse_method_spec", "expand_method_specs", "load_plugin", "load_builtin_methods"]
