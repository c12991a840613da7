"""Built-in hashing methods; importing this package registers every one of them.

One module per method (discovered here: every module of this package except the shared ones);
``base`` holds the contract, ``registry`` the ``@register`` decorator and the lookups,
``checks`` the contract checks shipped to plugin authors, ``shared_math`` the math several
methods share, and modules whose name starts with ``_`` are helpers.

    from methods import register, list_methods, get_method_class
"""
import pkgutil
from importlib import import_module

from .registry import UnknownMethodError, get_method_class, list_methods, register, registered_methods

SHARED_MODULES = {"base", "checks", "registry", "shared_math"}
# the paper's row order (Tables 3-4); any other module follows alphabetically
PAPER_ORDER = ("lsh", "pcah", "itq", "knnh", "sdh", "cosdish", "fasthash", "fssh", "scdh",
               "dpsh", "hashnet", "dsdh", "csq", "lthnet", "lthnet_sq")

_found = sorted(
    info.name for info in pkgutil.iter_modules(__path__)
    if not info.name.startswith("_") and info.name not in SHARED_MODULES and not info.ispkg
)
BUILTIN_MODULES = tuple(sorted(_found, key=lambda m: (PAPER_ORDER.index(m) if m in PAPER_ORDER else len(PAPER_ORDER), m)))

for _module in BUILTIN_MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["register", "list_methods", "registered_methods", "get_method_class", "UnknownMethodError",
           "BUILTIN_MODULES"]
