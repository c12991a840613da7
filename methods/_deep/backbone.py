"""The backbone and the image input of the deep trainer's ``mode="finetune"``: ResNet34 from the
project's one builder (``datasets.features.build_backbone``), image sources batched with row indices.

In ``mode="finetune"`` ResNet34 (``backbone_weights="IMAGENET1K_V1"``, the paper's; ``"random"``
for tests and offline runs) plus the head are trained end to end; X is an image source
(``datasets.images.ImageSource``: ``len``, ``source[i] -> (image tensor, label)``), in ``fit``
and in ``encode``. The builder's errors (unknown weights, weights not downloadable) become the
method's ``InvalidInputError`` with the same message.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from datasets._torchvision import import_torchvision
from datasets.base import DatasetError
from datasets.features import FEATURE_DIM, WEIGHT_CHOICES, build_backbone

from ..base import InvalidInputError

#: ResNet34's pooled output width, the head's input in mode="finetune"
BACKBONE_FEATURE_DIM = FEATURE_DIM

__all__ = ["BACKBONE_FEATURE_DIM", "WEIGHT_CHOICES", "build_resnet34_backbone", "check_image_source",
           "image_loader", "import_torchvision"]


def build_resnet34_backbone(weights: str = "IMAGENET1K_V1", random_seed: int = 0) -> nn.Module:
    """ResNet34 with its classifier removed, images (n, 3, H, W) -> pooled features (n, 512), in
    eval mode (the trainer switches it to training mode); ``"random"`` weights are initialised
    under ``random_seed`` without touching the global RNG."""
    try:
        return build_backbone(weights, random_seed=random_seed)
    except DatasetError as error:
        # the method's parameter is called backbone_weights; the message is the builder's
        message = str(error).replace("weights='random'", "backbone_weights='random'")
        raise InvalidInputError(f"backbone_weights={weights!r}: {message}") from error


def check_image_source(source, *, name: str = "X"):
    if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")) or isinstance(source, np.ndarray):
        raise InvalidInputError(
            f"mode='finetune' needs {name} to be an image source (len(), source[i] -> (image, label)), "
            f"e.g. datasets.images.ImageSource; got {type(source).__name__}. Pass cached features "
            "with mode='features' instead."
        )
    if len(source) == 0:
        raise InvalidInputError(f"{name} has no images; pass at least one.")
    return source


class _IndexedImages(torch.utils.data.Dataset):
    """Wrap an image source so batches carry row indices: item i -> (image tensor, i)."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        image = self.source[index][0]
        return image, index


class OrderSampler(torch.utils.data.Sampler):
    """Yields the row order the trainer set for the current epoch (works with persistent workers)."""

    def __init__(self, order: list[int]):
        self.order = order

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


def image_loader(source, sampler, batch_size, num_workers, device, persistent=False):
    """Batches (images, row indices) of an image source in the sampler's order."""
    return torch.utils.data.DataLoader(
        _IndexedImages(source), batch_size=batch_size, sampler=sampler, shuffle=False,
        num_workers=num_workers, pin_memory=device.type == "cuda",
        persistent_workers=persistent and num_workers > 0, drop_last=False,
    )
