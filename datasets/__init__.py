"""Dataset sources, long-tail splits and the ResNet34 feature cache.

NB: this top-level package shadows the third-party ``datasets`` (Hugging Face) library where both
are installed; the layout follows the project's design card.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from .base import BenchmarkData, DatasetError, LongTailProtocol
from .cifar100 import load_cifar100
from .digits import load_digits_benchmark
from .imagenet100 import load_imagenet100
from .longtail import make_long_tail, zipf_class_sizes
from .lthnet_folder import load_lthnet_folder
from .synthetic import SYNTHETIC_PRESETS, load_synthetic_benchmark

# name -> loader(**options) -> BenchmarkData. Loaders accept data_root, cache_dir, download,
# device and ignore options they do not use.
DATASET_LOADERS: dict[str, Callable[..., BenchmarkData]] = {
    "digits": load_digits_benchmark,
    **{name: partial(load_synthetic_benchmark, name) for name in SYNTHETIC_PRESETS},
    "cifar100": load_cifar100,
    "imagenet100": load_imagenet100,
    "lthnet-folder": load_lthnet_folder,  # path=DIR option
}


def register_dataset(name: str, loader: Callable[..., BenchmarkData]) -> None:
    DATASET_LOADERS[name] = loader


def list_datasets() -> list[str]:
    return list(DATASET_LOADERS)


def load_dataset(name: str, **options) -> BenchmarkData:
    """Load a benchmark dataset by name (see ``list_datasets()``); ``features:PATH.npz`` for a file."""
    if name.startswith("features:"):
        from .features_file import load_features_file

        return load_features_file(name.split(":", 1)[1], **options)
    if name not in DATASET_LOADERS:
        raise DatasetError(
            f"unknown dataset {name!r}. Available: {', '.join(DATASET_LOADERS)}, or features:PATH.npz "
            "for your own precomputed features."
        )
    return DATASET_LOADERS[name](**options)


__all__ = [
    "BenchmarkData", "DatasetError", "LongTailProtocol", "DATASET_LOADERS", "register_dataset",
    "list_datasets", "load_dataset", "make_long_tail", "zipf_class_sizes",
]
