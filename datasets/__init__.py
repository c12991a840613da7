"""Dataset sources, long-tail splits and the ResNet34 feature cache.

NB: this top-level package shadows the third-party ``datasets`` (Hugging Face) library where both
are installed; the layout follows the project's design card.
"""
from __future__ import annotations

import dataclasses
import inspect
from functools import partial
from typing import Callable

from .base import BenchmarkData, DatasetError, LongTailProtocol
from .cifar100 import load_cifar100
from .digits import load_digits_benchmark
from .features_file import load_features_file
from .imagenet100 import load_imagenet100
from .lists import export_split, load_list_files, load_lists
from .longtail import given_split_factor, make_long_tail, zipf_class_sizes
from .lthnet_folder import load_lthnet_folder
from .synthetic import SYNTHETIC_PRESETS, load_synthetic_benchmark

FEATURES_PREFIX = "features:"

# name -> loader(**options) -> BenchmarkData. Every option is a named parameter of the loader
# (``dataset_options(name)`` lists them; ``load_dataset`` refuses any other).
DATASET_LOADERS: dict[str, Callable[..., BenchmarkData]] = {
    "digits": load_digits_benchmark,
    **{name: partial(load_synthetic_benchmark, name) for name in SYNTHETIC_PRESETS},
    "cifar100": load_cifar100,
    "imagenet100": load_imagenet100,
    "lthnet-folder": load_lthnet_folder,  # data_root=DIR (alias path=DIR)
    "lists": load_lists,  # data_root=DIR of exported train/test/database.txt (datasets/lists.py)
}


def register_dataset(name: str, loader: Callable[..., BenchmarkData]) -> None:
    """Add a loader; its named parameters are its options (one taking ``**kwargs`` gets every option)."""
    DATASET_LOADERS[name] = loader


def list_datasets() -> list[str]:
    return list(DATASET_LOADERS)


def _loader(name: str) -> Callable[..., BenchmarkData]:
    if name.startswith(FEATURES_PREFIX):
        return partial(load_features_file, name[len(FEATURES_PREFIX):])
    if name not in DATASET_LOADERS:
        raise DatasetError(
            f"unknown dataset {name!r}. Available: {', '.join(DATASET_LOADERS)}, or features:PATH.npz "
            "for your own precomputed features."
        )
    return DATASET_LOADERS[name]


def _parameters(loader) -> list[inspect.Parameter]:
    return list(inspect.signature(loader).parameters.values())


def dataset_options(name: str) -> tuple[str, ...]:
    """The options ``load_dataset(name, **options)`` takes, e.g. ``("data_root", ..., "cache_dir", ...)``:
    only loaders that use the ResNet34 feature cache take ``cache_dir``; digits and features files
    take neither ``data_root`` nor ``cache_dir``."""
    return tuple(p.name for p in _parameters(_loader(name))
                 if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def load_dataset(name: str, **options) -> BenchmarkData:
    """Load a benchmark dataset by name (see ``list_datasets()``); ``features:PATH.npz`` for a file.

    An option the loader does not take is a DatasetError naming it and the options it does take.
    The card records the loader: ``card["loader"] = {"name": name, "options": {...}}``.
    """
    loader = _loader(name)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _parameters(loader))
    accepted = dataset_options(name)
    unknown = [key for key in options if key not in accepted]
    if unknown and not takes_any:
        shown = "features:PATH.npz" if name.startswith(FEATURES_PREFIX) else name
        raise DatasetError(
            f"dataset {shown} does not take the option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or 'no options'}."
        )
    data = loader(**options)
    recorded = {key: value for key, value in options.items() if isinstance(value, (str, int, float, bool, type(None)))}
    return dataclasses.replace(data, card={**data.card, "loader": {"name": name, "options": recorded}})


__all__ = [
    "BenchmarkData", "DatasetError", "LongTailProtocol", "DATASET_LOADERS", "register_dataset",
    "list_datasets", "load_dataset", "dataset_options", "make_long_tail", "given_split_factor", "zipf_class_sizes", "export_split",
    "load_list_files",
]
