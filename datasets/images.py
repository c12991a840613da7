"""Image sources: labelled images (file paths or in-memory uint8 arrays) plus a transform, as a
torch-style dataset; used by feature extraction and by deep methods' end-to-end fine-tuning.

Conventions: ``source[i]`` is ``(float tensor (3, H, W), int label)``; in-memory items are uint8
RGB arrays of shape (H, W, 3) (HWC); file items are opened with PIL and converted to RGB. The
default transform is ``BackboneTransform()``: resize the shorter side to 256, centre-crop 224,
scale to [0, 1] and normalise with the ImageNet mean/std — the evaluation transform of the LTHNet
reference code (``data/transform.py`` ``query_transform``); the paper itself only says
"ResNet34 pre-trained on ImageNet". ``identity()`` is a checksum of the items and labels, used as
the dataset part of feature-cache keys.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .base import DatasetError, array_checksum

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneTransform:
    """PIL image -> normalised float tensor (3, crop, crop): resize shorter side, centre crop.

    ``resize_size`` defaults to round(crop_size * 256 / 224) (256 for the standard 224 crop).
    A frozen dataclass, so it pickles (DataLoader workers) and its ``description`` is exact.
    """

    crop_size: int = 224
    resize_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def effective_resize(self) -> int:
        return self.resize_size if self.resize_size is not None else int(round(self.crop_size * 256 / 224))

    @property
    def description(self) -> str:
        return (f"torchvision Resize({self.effective_resize}, bilinear, antialias) + CenterCrop({self.crop_size}) "
                f"+ ToTensor + Normalize(mean={list(self.mean)}, std={list(self.std)})")

    def __call__(self, image):
        return _torchvision_pipeline(self.crop_size, self.effective_resize, self.mean, self.std)(image)


@dataclass(frozen=True)
class TrainingAugmentation:
    """PIL image -> normalised float tensor (3, crop, crop) with random augmentation for training:
    RandomResizedCrop(crop) + RandomHorizontalFlip, then ToTensor and the ImageNet normalisation --
    the training transform of the LTHNet reference's ImageNet loader (``data/imagenet.py``; its
    CIFAR loader trains without augmentation). The randomness comes from torch's RNG, which the
    deep trainer seeds (DataLoader workers derive their seeds from it)."""

    crop_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def description(self) -> str:
        return (f"torchvision RandomResizedCrop({self.crop_size}) + RandomHorizontalFlip + ToTensor + "
                f"Normalize(mean={list(self.mean)}, std={list(self.std)})")

    def __call__(self, image):
        return _augmenting_pipeline(self.crop_size, self.mean, self.std)(image)


@functools.lru_cache(maxsize=8)
def _augmenting_pipeline(crop_size, mean, std):
    from ._torchvision import import_torchvision

    transforms = import_torchvision().transforms
    return transforms.Compose([
        transforms.RandomResizedCrop(crop_size, antialias=True),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=list(mean), std=list(std)),
    ])


@functools.lru_cache(maxsize=8)
def _torchvision_pipeline(crop_size, resize_size, mean, std):
    from ._torchvision import import_torchvision

    transforms = import_torchvision().transforms
    return transforms.Compose([
        transforms.Resize(resize_size, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.CenterCrop(crop_size),
        transforms.ToTensor(),
        transforms.Normalize(mean=list(mean), std=list(std)),
    ])


def transform_description(transform) -> str:
    """Text that identifies a transform in cache keys: its ``description`` or its repr."""
    return getattr(transform, "description", None) or repr(transform)


class ImageSource:
    """Labelled images with a transform: ``len``, ``source[i] -> (tensor, label)``, ``subset``.

    ``items`` is either a sequence of file paths (relative paths are joined to ``root``) or a
    uint8 array (n, H, W, 3). ``labels`` are int64 class indices, one per item.
    """

    def __init__(self, items, labels, transform: Callable | None = None, root: str | None = None,
                 name: str = "images"):
        if isinstance(items, np.ndarray) and items.dtype != object and items.dtype.kind not in "US":
            if items.dtype != np.uint8 or items.ndim != 4 or items.shape[-1] != 3:
                raise DatasetError(
                    f"{name}: in-memory images must be a uint8 array (n, H, W, 3), got {items.dtype} "
                    f"{items.shape}; convert with np.asarray(images, dtype=np.uint8)."
                )
            self.items = items
        else:
            self.items = np.asarray([str(item) for item in items], dtype=object)
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.shape != (len(self.items),):
            raise DatasetError(f"{name}: {self.labels.size} labels for {len(self.items)} images; "
                               "they must match one to one.")
        self.transform = BackboneTransform() if transform is None else transform
        self.root = root
        self.name = name

    # ------------------------------------------------------------------ dataset protocol
    @property
    def in_memory(self) -> bool:
        return self.items.dtype == np.uint8

    def __len__(self) -> int:
        return len(self.items)

    def path(self, i: int) -> str:
        item = self.items[i]
        return item if self.root is None else os.path.join(self.root, item)

    def load_image(self, i: int):
        """The i-th image as an RGB PIL image (before the transform)."""
        from PIL import Image

        if self.in_memory:
            return Image.fromarray(self.items[i])
        path = self.path(i)
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            raise DatasetError(f"{self.name}: cannot read image {path!r} ({error}); check the data "
                               "root and that the file is a complete image.") from error

    def __getitem__(self, i: int):
        return self.transform(self.load_image(int(i))), int(self.labels[i])

    # ------------------------------------------------------------------ derived sources
    def subset(self, index) -> "ImageSource":
        """The images at ``index`` (same transform and root), in that order."""
        index = np.asarray(index, dtype=np.int64)
        return ImageSource(self.items[index], self.labels[index], self.transform, self.root, self.name)

    def with_transform(self, transform: Callable) -> "ImageSource":
        return ImageSource(self.items, self.labels, transform, self.root, self.name)

    def identity(self) -> str:
        """sha256 of the item list (paths, or pixels) and labels; independent of the transform."""
        if self.in_memory:
            return array_checksum(self.items, self.labels)
        digest = hashlib.sha256()
        digest.update("\n".join(self.items.tolist()).encode())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()

    def check_files(self, sample: Sequence[int] | None = None) -> None:
        """Raise DatasetError if some file items (the first, middle and last by default) are missing."""
        if self.in_memory or len(self) == 0:
            return
        sample = sample if sample is not None else sorted({0, len(self) // 2, len(self) - 1})
        missing = [self.path(i) for i in sample if not os.path.isfile(self.path(i))]
        if missing:
            raise DatasetError(f"{self.name}: image file(s) not found, e.g. {missing[0]!r}; check the data "
                               "root and its layout (see the dataset module's docstring).")

    def __repr__(self) -> str:
        kind = "in-memory" if self.in_memory else "files"
        return f"ImageSource({self.name!r}, {len(self)} {kind} images, transform={transform_description(self.transform)!r})"


def concatenate_sources(sources: Sequence[ImageSource], name: str) -> ImageSource:
    """One source with the items of ``sources`` in order (same kind of item; first source's transform)."""
    first = sources[0]
    if first.in_memory:
        items = np.concatenate([s.items for s in sources])
    else:
        items = np.concatenate([np.asarray([s.path(i) for i in range(len(s))], dtype=object) for s in sources])
    labels = np.concatenate([s.labels for s in sources])
    return ImageSource(items, labels, first.transform, None, name)
