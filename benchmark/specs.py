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

from common.errors import BenchmarkError
from methods.registry import NAME_PATTERN, UnknownMethodError, get_method_class, list_methods, registered_methods


class PluginError(BenchmarkError, ImportError):
    """A plugin module that cannot be found or fails while it is imported; names its file and line."""


class InvalidSpecError(BenchmarkError, ValueError):
    """A method parameter value of the wrong type or outside its domain."""


class PluginNotFoundError(PluginError, ModuleNotFoundError):
    """A plugin file or module that does not exist."""


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
        for name, value in self.params.items():
            _check_type(self.name, name, value, valid[name])
        method = cls(**params)
        validate = getattr(method, "validate_params", None)
        if callable(validate):  # the method's own checks of its values (before any training)
            validate()
        return method


def _check_type(method: str, name: str, value, default) -> None:
    """A spec's value must have the type of the parameter's default (ints where floats are
    expected are fine); parameters whose default is None are left to the method's own checks."""
    if default is None or value is None:
        return
    numeric = (int, float)
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) == isinstance(value, bool)
    elif isinstance(default, numeric):
        ok = isinstance(value, numeric) and (isinstance(default, float) or isinstance(value, int))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise InvalidSpecError(
            f"{method} parameter {name}={value!r} has the wrong type: expected {type(default).__name__} like its "
            f"default {default!r}; e.g. --set {name}={default!r}.")


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


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: ``LTHNet(k=3,beta=0.9),CSQ`` -> two items."""
    items, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


def expand_method_specs(names: list[str], exclude: list[str] = ()) -> list[MethodSpec]:
    """Turn CLI method arguments into specs: ``all``, wildcards, names and ``NAME(k=v)``.

    A plain name of a method with table variants (LTHNet) expands to all of its variants. An item
    can hold several comma-separated entries; an entry starting with ``-`` (``all,-FastHash``) is
    left out, like every entry of ``exclude``: a name or wildcard leaves out all of that method's
    rows, a spec with parameters (``LTHNet(k=0)``) only that row.
    """
    wanted, unwanted = [], list(exclude)
    for item in names:
        for entry in split_top_level(item):
            (unwanted if entry.startswith("-") else wanted).append(entry.lstrip("-").strip())
    specs = _expand(wanted)
    if unwanted:
        drop_names, drop_keys = set(), set()
        for entry in unwanted:
            if "(" in entry:
                drop_keys.add(parse_method_spec(entry).key)
            else:
                drop_names |= {spec.name for spec in _expand([entry])}
        specs = [spec for spec in specs if spec.name not in drop_names and spec.key not in drop_keys]
        if not specs:
            raise UnknownMethodError(f"excluding {', '.join(unwanted)} leaves no method to run.")
    return specs


def _expand(names: list[str]) -> list[MethodSpec]:
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
            raise PluginNotFoundError(f"plugin file {module_name!r} does not exist; pass the path of your .py file "
                              "(or a module name on PYTHONPATH) to --plugin.")
        mod_name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except BenchmarkError:
            raise
        except Exception as error:  # a user's module: whatever it raises is reported, not a traceback
            sys.modules.pop(mod_name, None)
            raise PluginError(_import_failure(module_name, error, path)) from error
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise PluginNotFoundError(
            f"plugin module {module_name!r} could not be imported ({error}); pass a module on "
            "PYTHONPATH or a path to a .py file."
        ) from error
    except BenchmarkError:
        raise
    except Exception as error:
        raise PluginError(_import_failure(module_name, error, None)) from error


def _import_failure(module_name: str, error: Exception, path: str | None) -> str:
    """"plugin X failed while being imported: <error> (at file:line)"."""
    import traceback

    if isinstance(error, SyntaxError):
        where = f"{error.filename}:{error.lineno}"
        detail = f"SyntaxError: {error.msg}"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        mine = [f for f in frames if path is None or os.path.abspath(f.filename) == path] or frames
        where = f"{mine[-1].filename}:{mine[-1].lineno}" if mine else "?"
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    return f"plugin {module_name!r} failed while being imported: {detail} (at {where}); fix the module and re-run."


# ---------------------------------------------------------------------------- shipping plugins to workers


def plugin_classes(specs) -> dict:
    """Registered classes of the specs' methods that live outside the built-in ``methods`` package."""
    classes = {}
    for spec in specs:
        cls = spec.method_class()
        module = cls.__module__
        if module == "methods" or module.startswith("methods."):
            continue
        classes[spec.name] = cls
    return classes


def ship_classes(classes: dict) -> bytes:
    """The plugin classes pickled by value, so a worker process (local or Dask) can register them
    without importing the user's module."""
    import cloudpickle

    registered = []
    try:
        for cls in classes.values():
            module = sys.modules.get(cls.__module__)
            if (module is None or module.__name__ == "__main__" or module in registered
                    or module.__name__ in cloudpickle.list_registry_pickle_by_value()):
                continue  # __main__ classes are pickled by value anyway
            cloudpickle.register_pickle_by_value(module)
            registered.append(module)
        return cloudpickle.dumps(classes)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def register_shipped(payload: bytes | None) -> None:
    """In a worker: make shipped plugin classes known to its registry."""
    import pickle

    from methods.registry import register

    if not payload:
        return
    for name, cls in pickle.loads(payload).items():
        register(name, override=True)(cls)
