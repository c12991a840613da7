"""Plugin registry of hashing methods: ``@register("ITQ")`` on a class makes it a benchmark row.

Method specs name a method and optional parameters, e.g. ``ITQ`` or ``LTHNet(k=3)``; the
paper's display form ``LTHNet (k=3)`` is accepted too.
"""
from __future__ import annotations

import ast
import fnmatch
import importlib
import re
from dataclasses import dataclass, field
from typing import Any

_REGISTRY: dict[str, type] = {}
_BUILTINS_LOADED = False


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def register(name: str):
    """Class decorator: register a ``HashingMethod`` subclass under ``name``."""

    def decorator(cls):
        from methods.base import HashingMethod

        if not (isinstance(cls, type) and issubclass(cls, HashingMethod)):
            raise TypeError(f"@register({name!r}) must decorate a methods.base.HashingMethod subclass.")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", name):
            raise ValueError(f"method name {name!r} must be letters, digits, '_' or '-'.")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"method name {name!r} is already registered by {existing.__module__}.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def load_builtin_methods() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        importlib.import_module("methods")
        _BUILTINS_LOADED = True


def load_plugin(module_name: str) -> None:
    """Import a user's module (dotted name or path to a .py file) so its ``@register`` classes appear."""
    import importlib.util
    import os
    import sys

    if module_name.endswith(".py") or os.path.sep in module_name:
        path = os.path.abspath(module_name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"plugin file {module_name!r} does not exist.")
        mod_name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"plugin module {module_name!r} could not be imported ({error}); pass a module on "
            "PYTHONPATH or a path to a .py file."
        ) from error


def registered_methods() -> dict[str, type]:
    load_builtin_methods()
    return dict(_REGISTRY)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (case-insensitive), in registration order."""
    return [n for n in registered_methods() if fnmatch.fnmatch(n.lower(), pattern.lower())]


def get_method_class(name: str) -> type:
    methods = registered_methods()
    if name in methods:
        return methods[name]
    lowered = {n.lower(): n for n in methods}
    if name.lower() in lowered:
        return methods[lowered[name.lower()]]
    raise UnknownMethodError(
        f"unknown method {name!r}. Registered methods: {', '.join(methods)}. "
        "Load your own with --plugin MODULE."
    )


@dataclass(frozen=True)
class MethodSpec:
    """A method name plus the parameters that make it a distinct table row."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Canonical identifier, e.g. ``LTHNet(k=3)``; used in file names and the result store."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={self.params[k]!r}" for k in sorted(self.params))
        return f"{self.name}({inner})"

    @property
    def display(self) -> str:
        """The paper's row label, e.g. ``LTHNet (k=3)``."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={self.params[k]!r}" for k in sorted(self.params))
        return f"{self.name} ({inner})"

    def method_class(self) -> type:
        return get_method_class(self.name)

    def build(self, **overrides):
        cls = self.method_class()
        params = {**self.params, **overrides}
        valid = cls().get_params()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise UnknownMethodError(
                f"{self.name} has no parameter(s) {unknown}; its parameters are {sorted(valid)}."
            )
        return cls(**params)


_SPEC_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_\-]*)\s*(?:\((.*)\))?\s*$")


def _literal(node: ast.AST) -> Any:
    """A Python literal, or a bare word read as a string (``settings=paper`` = ``settings='paper'``)."""
    if isinstance(node, ast.Name) and node.id not in ("True", "False", "None"):
        return node.id
    return ast.literal_eval(node)


def parse_method_spec(text: str) -> MethodSpec:
    """Parse ``NAME`` or ``NAME(key=value, ...)`` into a MethodSpec with the registered name."""
    match = _SPEC_RE.match(text)
    if not match:
        raise UnknownMethodError(f"cannot read method spec {text!r}; write NAME or NAME(param=value).")
    cls = get_method_class(match.group(1))
    params: dict[str, Any] = {}
    if match.group(2) and match.group(2).strip():
        try:
            call = ast.parse(f"f({match.group(2)})", mode="eval").body
            params = {kw.arg: _literal(kw.value) for kw in call.keywords}
            if call.args or any(kw.arg is None for kw in call.keywords):
                raise ValueError
        except (SyntaxError, ValueError) as error:
            raise UnknownMethodError(
                f"cannot read the parameters of {text!r}; write them as key=value, e.g. LTHNet(k=3)."
            ) from error
    spec = MethodSpec(cls.name, params)
    spec.build()  # validates the parameter names now, not mid-run
    return spec


def expand_method_specs(names: list[str]) -> list[MethodSpec]:
    """Turn CLI method arguments into specs: ``all``, wildcards, names and ``NAME(k=v)``.

    A plain name of a method with table variants (LTHNet) expands to all of its variants.
    """
    specs: list[MethodSpec] = []
    for text in names:
        if text.lower() == "all" or any(ch in text for ch in "*?["):
            pattern = "*" if text.lower() == "all" else text
            matched = list_methods(pattern)
            if not matched:
                raise UnknownMethodError(
                    f"no registered method matches {text!r}; registered: {', '.join(registered_methods())}."
                )
            for name in matched:
                specs.extend(_variants(name))
        elif "(" in text:
            specs.append(parse_method_spec(text))
        else:
            specs.extend(_variants(get_method_class(text).name))
    unique: dict[str, MethodSpec] = {}
    for spec in specs:
        unique.setdefault(spec.key, spec)
    return list(unique.values())


def _variants(name: str) -> list[MethodSpec]:
    cls = get_method_class(name)
    if cls.table_variants:
        return [MethodSpec(cls.name, dict(v)) for v in cls.table_variants]
    return [MethodSpec(cls.name, {})]
