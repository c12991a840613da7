"""Method specs: a registered method name plus the parameters that make it a distinct table row,
as written on the command line (``ITQ``, ``LTHNet(k=3)``, the paper's ``LTHNet (k=3)``, ``all``,
wildcards), and the loading of a user's plugin module.

One rule reads every value written on the command line, in specs and in ``--set NAME=VALUE``
alike (``parse_value``): a Python literal if it is one (``3``, ``0.9``, ``True``, ``'x'``), ``true``
/ ``false`` as booleans, and any other bare word as a string (``settings=paper``).
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from methods.registry import NAME_PATTERN, UnknownMethodError, get_method_class, list_methods, registered_methods


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal if the text is one, ``true``/``false`` as booleans,
    anything else as the text itself (a bare word such as ``paper``)."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return text


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


_SPEC_RE = re.compile(rf"^\s*({NAME_PATTERN})\s*(?:\((.*)\))?\s*$")


def parse_method_spec(text: str) -> MethodSpec:
    """Parse ``NAME`` or ``NAME(key=value, ...)`` into a MethodSpec with the registered name."""
    match = _SPEC_RE.match(text)
    if not match:
        raise UnknownMethodError(f"cannot read method spec {text!r}; write NAME or NAME(param=value).")
    cls = get_method_class(match.group(1))
    params: dict[str, Any] = {}
    inner = match.group(2)
    if inner and inner.strip():
        source = f"f({inner})"
        try:
            call = ast.parse(source, mode="eval").body
            if call.args or any(kw.arg is None for kw in call.keywords):
                raise ValueError
            params = {kw.arg: parse_value(ast.get_source_segment(source, kw.value)) for kw in call.keywords}
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


def load_plugin(module_name: str) -> None:
    """Import a user's module (dotted name or path to a .py file) so its ``@register`` classes appear."""
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
