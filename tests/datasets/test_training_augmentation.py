"""ImageNet100 fine-tuning trains on randomly resized crops and flips (the LTHNet reference's
ImageNet loader); queries, database and CIFAR-100 keep the deterministic evaluation transform."""
import numpy as np
import torch

from benchmark.runner import _inputs
from datasets.base import BenchmarkData
from datasets.images import BackboneTransform, ImageSource, TrainingAugmentation


def _source(n=6, size=40):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return ImageSource(pixels, np.arange(n) % 2, BackboneTransform(crop_size=32), name="tiny")


def test_augmentation_is_random_seeded_and_of_the_crop_size():
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    augment = TrainingAugmentation(crop_size=32)
    torch.manual_seed(0)
    first, second = augment(image), augment(image)
    assert first.shape == (3, 32, 32)
    assert not torch.equal(first, second)  # a different crop / flip each time
    torch.manual_seed(0)
    assert torch.equal(augment(image), first)  # reproducible from torch's seed
    assert "RandomResizedCrop(32)" in augment.description


def test_only_training_images_are_augmented():
    source = _source()
    data = BenchmarkData("tiny", np.zeros((6, 4), np.float32), source.labels, np.arange(2), np.arange(2, 6),
                         image_source=source, training_transform=TrainingAugmentation(crop_size=32))
    train = _inputs(data, np.arange(2, 6), "finetune", training=True)
    database = _inputs(data, np.arange(2, 6), "finetune")
    assert isinstance(train.transform, TrainingAugmentation)
    assert isinstance(database.transform, BackboneTransform)
    plain = BenchmarkData("tiny", np.zeros((6, 4), np.float32), source.labels, np.arange(2), np.arange(2, 6),
                          image_source=source)
    assert isinstance(_inputs(plain, np.arange(2, 6), "finetune", training=True).transform, BackboneTransform)
