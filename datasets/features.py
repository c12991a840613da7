"""ResNet34 features for image sources, computed once per dataset and cached on disk.

Every shallow method, and deep methods in their default frozen-backbone mode, read these 512-d rows.

Conventions:
- Backbone: torchvision ``resnet34`` with ``fc`` replaced by identity, so a row is the 512-d
  global-average-pooled output of the last block, in eval mode (batch-norm running statistics).
  ``weights="IMAGENET1K_V1"`` (default, the paper's pre-trained network) or ``"random"``
  (random initialisation under ``random_seed``, for tests and offline smoke runs only).
- Cache: ``<cache_dir>/<dataset>-<key>.npy`` (float32 (n, 512), memory-mapped read-only on load)
  plus ``<dataset>-<key>.json`` (the card: dataset name and item checksum, transform description,
  weights and their identity, torch/torchvision versions, feature checksum). The key hashes
  (dataset identity, transform description, weights identity), so a changed transform or weights is
  a new entry, never a stale hit. Files are written with ``common.io.atomic_write`` (a temporary
  name, then ``os.replace``), the card last; an entry whose card or checksum does not match is
  recomputed (with a warning). File names start with ``common.io.file_slug(dataset name)``.
- Default cache dir: ``results/cache/features`` relative to the working directory.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import time
import warnings
from typing import Any, Callable

import numpy as np

from common.io import atomic_write, file_slug

from .base import BenchmarkData, DatasetError, LongTailProtocol, array_checksum
from .images import ImageSource, transform_description

DEFAULT_CACHE_DIR = os.path.join("results", "cache", "features")
FEATURE_DIM = 512
WEIGHT_CHOICES = ("IMAGENET1K_V1", "random")


# ---------------------------------------------------------------------------- backbone


def weights_identity(weights: str = "IMAGENET1K_V1", random_seed: int = 0) -> str:
    """Text identifying the backbone weights in cache keys (the checkpoint URL, or the seed)."""
    check_weights(weights)
    if weights == "random":
        import torch

        # torch's default initialisers define what a seed produces; keep its version in the key.
        return f"resnet34 random init, seed {int(random_seed)}, torch {torch.__version__.split('+')[0]}"
    from ._torchvision import import_torchvision

    return f"resnet34 {weights}: {import_torchvision().models.ResNet34_Weights[weights].url}"


def check_weights(weights: str) -> None:
    if weights not in WEIGHT_CHOICES:
        raise DatasetError(f"unknown backbone weights {weights!r}; choose one of {', '.join(WEIGHT_CHOICES)} "
                           "('random' only for tests and offline smoke runs).")


def build_backbone(weights: str = "IMAGENET1K_V1", random_seed: int = 0):
    """torchvision ResNet34 in eval mode whose forward pass returns (batch, 512) pooled features."""
    import torch

    from ._torchvision import import_torchvision

    check_weights(weights)
    models = import_torchvision().models
    if weights == "random":
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's global RNG
            torch.manual_seed(int(random_seed))
            model = models.resnet34(weights=None)
    else:
        model = models.resnet34(weights=None)
        model.load_state_dict(_pretrained_state_dict(models.ResNet34_Weights[weights]))
    model.fc = torch.nn.Identity()
    return model.eval()


def _pretrained_state_dict(weights_enum) -> dict:
    import torch

    checkpoint = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights_enum.url))
    try:
        return weights_enum.get_state_dict(progress=True, check_hash=True)
    except Exception as error:  # offline (URLError), truncated or tampered checkpoint (RuntimeError)
        raise DatasetError(
            f"cannot load the ImageNet-pretrained ResNet34 weights ({type(error).__name__}: {error}). "
            f"Download {weights_enum.url} on a machine with internet and place it at {checkpoint} "
            "(torch hub cache; delete a partial file there first), or pass weights='random' for testing "
            "(features then carry no ImageNet knowledge)."
        ) from error


@functools.lru_cache(maxsize=1)
def _extraction_backbone(weights: str, random_seed: int):
    """The last backbone used for extraction, kept for the next dataset; only ever run in inference."""
    return build_backbone(weights, random_seed)


def resolve_device(device=None):
    """``None``/"auto": CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------------------- extraction


def extract_features(
    image_source: ImageSource, weights: str = "IMAGENET1K_V1", device=None, batch_size: int = 64,
    num_workers: int | None = None, progress: bool = True, random_seed: int = 0, out: np.ndarray | None = None,
) -> np.ndarray:
    """ResNet34 features (n, 512) float32 of every image in ``image_source``, in order.

    ``out`` (optional, e.g. a memmap of shape (n, 512)) receives the rows batch by batch.
    ``num_workers`` defaults to 0 on CPU and min(8, cores) on CUDA.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    n = len(image_source)
    if out is None:
        out = np.empty((n, FEATURE_DIM), dtype=np.float32)
    elif out.shape != (n, FEATURE_DIM):
        raise DatasetError(f"feature output buffer has shape {out.shape}, expected {(n, FEATURE_DIM)}.")
    if batch_size < 1:
        raise DatasetError(f"batch_size must be >= 1, got {batch_size}.")
    device = resolve_device(device)
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    model = _extraction_backbone(weights, int(random_seed)).to(device)
    loader = DataLoader(image_source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    row = 0
    with torch.inference_mode(), tqdm(total=n, desc=f"ResNet34 features: {image_source.name}", unit="img",
                                      disable=not progress) as bar:
        for images, _labels in loader:
            batch = model(images.to(device, non_blocking=True)).float().cpu().numpy()
            out[row:row + len(batch)] = batch
            row += len(batch)
            bar.update(len(batch))
    if row != n:
        raise DatasetError(f"{image_source.name}: extracted {row} feature rows for {n} images.")
    return out


# ---------------------------------------------------------------------------- cache


def feature_cache_key(dataset_identity: str, transform: str, weights: str) -> str:
    """sha256 (first 20 hex digits) of (dataset identity, transform description, weights identity)."""
    payload = json.dumps({"dataset": dataset_identity, "transform": transform, "weights": weights}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cache_paths(cache_dir: str, dataset_name: str, key: str) -> tuple[str, str]:
    stem = file_slug(dataset_name) + "-" + key
    return os.path.join(cache_dir, stem + ".npy"), os.path.join(cache_dir, stem + ".json")


def _read_entry(features_path: str, card_path: str, key: str, n: int, verify: bool):
    """(memmap, card) of a valid cache entry, None when absent; raises ValueError when corrupt."""
    if not (os.path.exists(features_path) and os.path.exists(card_path)):
        return None
    with open(card_path) as handle:
        card = json.load(handle)
    if card.get("key") != key:
        raise ValueError(f"card key {card.get('key')!r} differs from {key!r}")
    features = np.load(features_path, mmap_mode="r")
    if features.shape != (n, FEATURE_DIM) or features.dtype != np.float32:
        raise ValueError(f"array is {features.dtype} {features.shape}, expected float32 {(n, FEATURE_DIM)}")
    if verify and array_checksum(features) != card.get("feature_checksum"):
        raise ValueError("feature checksum does not match the card")
    return features, card


def cached_features(
    image_source: ImageSource, dataset_name: str, cache_dir: str | None = None, weights: str = "IMAGENET1K_V1",
    device=None, batch_size: int = 64, num_workers: int | None = None, progress: bool = True,
    random_seed: int = 0, verify: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(read-only memmap (n, 512) float32, card) for ``image_source``: from the cache, else computed.

    ``verify`` re-checks the stored feature checksum on every load (a corrupt entry is recomputed).
    """
    import torch

    from ._torchvision import import_torchvision

    cache_dir = cache_dir or DEFAULT_CACHE_DIR
    identity = image_source.identity()
    transform = transform_description(image_source.transform)
    weights_id = weights_identity(weights, random_seed)
    key = feature_cache_key(identity, transform, weights_id)
    features_path, card_path = cache_paths(cache_dir, dataset_name, key)
    n = len(image_source)
    try:
        entry = _read_entry(features_path, card_path, key, n, verify)
    except (OSError, ValueError, json.JSONDecodeError) as error:
        warnings.warn(f"feature cache entry {features_path} is unusable ({error}); recomputing it.")
        entry = None
    if entry is not None:
        return entry

    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"cannot create the feature cache directory {cache_dir!r} ({error}); "
                           "pass a writable cache_dir (--cache-dir).") from error
    resolved_device = resolve_device(device)
    started = time.perf_counter()
    features = np.empty((n, FEATURE_DIM), dtype=np.float32)  # in memory: 273 MB at ImageNet100 size
    extract_features(image_source, weights=weights, device=resolved_device, batch_size=batch_size,
                     num_workers=num_workers, progress=progress, random_seed=random_seed, out=features)
    if not np.isfinite(features).all():
        raise DatasetError(f"{dataset_name}: the backbone produced non-finite features; nothing was cached.")
    atomic_write(features_path, lambda handle: np.save(handle, features))
    card = {
        "key": key, "dataset": dataset_name, "dataset_identity": identity, "n_items": n,
        "transform": transform, "weights": weights, "weights_identity": weights_id,
        "backbone": "torchvision resnet34, fc = identity, eval mode, 512-d global average pool",
        "torch": torch.__version__, "torchvision": import_torchvision().__version__,
        "device": str(resolved_device), "batch_size": batch_size,
        "feature_shape": [n, FEATURE_DIM], "feature_dtype": "float32", "feature_checksum": array_checksum(features),
        "seconds": round(time.perf_counter() - started, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write(card_path, json.dumps(card, indent=1))  # last: an entry without its card is never read
    return np.load(features_path, mmap_mode="r"), card


# ---------------------------------------------------------------------------- benchmark data


FEATURE_OPTIONS = ("cache_dir", "weights", "device", "batch_size", "num_workers", "progress", "random_seed",
                   "verify")


def takes_feature_options(loader: Callable[..., BenchmarkData]) -> Callable[..., BenchmarkData]:
    """Decorate a loader ``f(..., feature_options: dict)``: the feature-cache options of
    ``cached_features`` (FEATURE_OPTIONS, with its defaults) become explicit keyword-only arguments
    of its signature, so ``datasets.dataset_options`` lists them and unknown options are refused."""
    defaults = inspect.signature(cached_features).parameters
    signature = inspect.signature(loader)
    parameters = [p for p in signature.parameters.values() if p.name != "feature_options"]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name].default)
                   for name in FEATURE_OPTIONS]

    @functools.wraps(loader)
    def wrapper(*args, **kwargs):
        feature_options = {name: kwargs.pop(name) for name in FEATURE_OPTIONS if name in kwargs}
        return loader(*args, feature_options=feature_options, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)
    return wrapper


def benchmark_from_images(
    name: str, image_source: ImageSource, query_index: np.ndarray, database_index: np.ndarray,
    class_names: tuple[str, ...], card: dict, long_tail_protocol: LongTailProtocol = LongTailProtocol(),
    train_index: np.ndarray | None = None, feature_options: dict | None = None,
    row_paths: tuple[str, ...] | None = None, training_transform=None,
) -> BenchmarkData:
    """BenchmarkData whose features are the cached ResNet34 rows of ``image_source`` (row i = item i).

    ``feature_options``: keyword arguments of ``cached_features`` (FEATURE_OPTIONS).
    """
    unknown = sorted(set(feature_options or {}) - set(FEATURE_OPTIONS))
    if unknown:
        raise DatasetError(f"unknown feature-cache option(s) {', '.join(unknown)}; the options are "
                           f"{', '.join(FEATURE_OPTIONS)}.")
    features, feature_card = cached_features(image_source, name, **(feature_options or {}))
    return BenchmarkData(
        name=name, features=features, labels=image_source.labels.copy(),
        query_index=np.asarray(query_index, dtype=np.int64), database_index=np.asarray(database_index, dtype=np.int64),
        train_index=None if train_index is None else np.asarray(train_index, dtype=np.int64),
        class_names=tuple(class_names), card={**card, "features": feature_card},
        long_tail_protocol=long_tail_protocol, image_source=image_source, row_paths=row_paths,
        training_transform=training_transform,
    )
