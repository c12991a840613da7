"""ResNet34 feature cache and image sources: real extraction on tiny images (random weights), cache
hits, keys, corruption handling, atomic writes, offline weights error, torchvision import shim."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from datasets import DatasetError
from datasets import features as features_module
from datasets.features import cached_features, feature_cache_key, weights_identity
from datasets.images import BackboneTransform, ImageSource


@pytest.fixture
def tiny_source():
    """6 random 32x32 RGB images, 3 classes, transformed at 32 pixels (fast on CPU)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    return ImageSource(pixels, [0, 0, 1, 1, 2, 2], BackboneTransform(crop_size=32), name="tiny")


def fake_extractor(calls):
    """Stands in for ResNet34: row i = i + 1 in every column; counts its calls."""
    def extract(image_source, out=None, **_):
        calls.append(len(image_source))
        out[:] = np.arange(1, len(image_source) + 1, dtype=np.float32)[:, None]
        return out
    return extract


def test_torchvision_import_shim_gives_models_and_transforms():
    from datasets._torchvision import import_torchvision

    torchvision = import_torchvision()
    assert hasattr(torchvision.models, "resnet34")
    assert import_torchvision() is torchvision


def test_image_source_items_subset_and_identity(tiny_source):
    tensor, label = tiny_source[3]
    assert tuple(tensor.shape) == (3, 32, 32) and label == 1
    # Normalised with ImageNet statistics: a mid-grey pixel maps near (0.5 - mean) / std.
    grey = ImageSource(np.full((1, 8, 8, 3), 128, dtype=np.uint8), [0], BackboneTransform(crop_size=8))
    expected = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(grey[0][0].numpy()[:, 4, 4], expected, rtol=1e-5)
    part = tiny_source.subset([5, 0])
    assert len(part) == 2 and part.labels.tolist() == [2, 0]
    np.testing.assert_array_equal(part.items[0], tiny_source.items[5])
    assert tiny_source.identity() == tiny_source.with_transform(BackboneTransform(16)).identity()
    assert tiny_source.identity() != part.identity()
    with pytest.raises(DatasetError, match="uint8"):
        ImageSource(np.zeros((2, 4, 4, 3), dtype=np.float32), [0, 1])
    with pytest.raises(DatasetError, match="labels"):
        ImageSource(tiny_source.items, [0, 1])


def test_real_resnet34_extraction_and_cache_hit(tiny_source, tmp_path, monkeypatch):
    features, card = cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random",
                                     progress=False, batch_size=4)
    assert features.shape == (6, 512) and features.dtype == np.float32
    assert np.isfinite(features).all() and features.std() > 0
    assert not np.allclose(features[0], features[1])  # different images, different features
    assert card["weights"] == "random" and card["transform"] == BackboneTransform(32).description
    assert card["n_items"] == 6 and card["dataset_identity"] == tiny_source.identity()
    stored = json.loads((tmp_path / f"tiny-{card['key']}.json").read_text())
    assert stored["feature_checksum"] == card["feature_checksum"]
    assert sorted(os.listdir(tmp_path)) == [f"tiny-{card['key']}.json", f"tiny-{card['key']}.npy"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cache hit must not recompute features")

    monkeypatch.setattr(features_module, "extract_features", must_not_run)
    again, again_card = cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random",
                                        progress=False)
    assert isinstance(again, np.memmap) and not again.flags.writeable
    np.testing.assert_array_equal(again, features)
    assert again_card == card


def test_random_weights_are_seeded_without_touching_global_rng(tiny_source):
    import torch

    used = features_module._extraction_backbone("random", 0)  # built (and cached) by extraction
    state = torch.random.get_rng_state()
    rebuilt = features_module.build_backbone("random", random_seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(rebuilt.conv1.weight, used.conv1.weight)
    assert isinstance(rebuilt.fc, torch.nn.Identity)


def test_key_changes_with_transform_weights_and_items(tiny_source, tmp_path, monkeypatch):
    identity = tiny_source.identity()
    transform = BackboneTransform(32).description
    base = feature_cache_key(identity, transform, weights_identity("random"))
    assert base == feature_cache_key(identity, transform, weights_identity("random"))
    assert base != feature_cache_key(identity, BackboneTransform(224).description, weights_identity("random"))
    assert base != feature_cache_key(identity, transform, weights_identity("IMAGENET1K_V1"))
    assert base != feature_cache_key(identity, transform, weights_identity("random", random_seed=1))
    assert base != feature_cache_key(tiny_source.subset([0, 1]).identity(), transform, weights_identity("random"))
    assert "resnet34-b627a593.pth" in weights_identity("IMAGENET1K_V1")

    calls = []
    monkeypatch.setattr(features_module, "extract_features", fake_extractor(calls))
    _, card_32 = cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random", progress=False)
    _, card_16 = cached_features(tiny_source.with_transform(BackboneTransform(16)), "tiny", cache_dir=str(tmp_path),
                                 weights="random", progress=False)
    _, card_w = cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random", random_seed=1,
                                progress=False)
    assert calls == [6, 6, 6]  # every change is a new entry, computed afresh
    assert len({card_32["key"], card_16["key"], card_w["key"]}) == 3
    assert len(os.listdir(tmp_path)) == 6
    with pytest.raises(DatasetError, match="unknown backbone weights"):
        cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="IMAGENET1K_V2")


def test_corrupt_cache_entry_is_recomputed(tiny_source, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(features_module, "extract_features", fake_extractor(calls))
    features, card = cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random", progress=False)
    path = tmp_path / f"tiny-{card['key']}.npy"
    del features
    data = path.read_bytes()
    path.write_bytes(data[:-100] + b"\x00" * 100)  # same size, altered values
    with pytest.warns(UserWarning, match="checksum"):
        features, _ = cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random", progress=False)
    assert calls == [6, 6]
    np.testing.assert_array_equal(features[:, 0], np.arange(1, 7))
    path.write_bytes(data[:50])  # truncated
    with pytest.warns(UserWarning, match="unusable"):
        cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random", progress=False)
    assert calls == [6, 6, 6]


def test_failed_extraction_leaves_no_cache_files(tiny_source, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(features_module, "extract_features", broken)
    with pytest.raises(RuntimeError, match="device lost"):
        cached_features(tiny_source, "tiny", cache_dir=str(tmp_path), weights="random", progress=False)
    assert os.listdir(tmp_path) == []


def test_offline_pretrained_weights_give_clear_error(monkeypatch):
    from datasets._torchvision import import_torchvision

    weights_class = type(import_torchvision().models.ResNet34_Weights.IMAGENET1K_V1)

    def offline(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(weights_class, "get_state_dict", offline)
    with pytest.raises(DatasetError, match=r"resnet34-b627a593\.pth.*weights='random'"):
        features_module.build_backbone("IMAGENET1K_V1")
