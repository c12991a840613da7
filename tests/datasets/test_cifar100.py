"""CIFAR-100 loader on a tiny archive in the real python-pickle format, through torchvision's
CIFAR100 class (its expected md5 values patched to the tiny files), plus the failure messages."""
from __future__ import annotations

import dataclasses
import hashlib
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest

from datasets import DatasetError, load_dataset
from datasets import features as features_module
from datasets._torchvision import import_torchvision
from datasets.cifar100 import CIFAR100_PROTOCOL, OFFLINE_HINT

CLASS_NAMES = ["apple", "bear", "castle"]


def md5_of(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """(data root holding cifar-100-python.tar.gz, test pixels HWC, train labels): 3 classes,
    1 test and 2 train images per class; torchvision's expected md5 values point at these files."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "build" / "cifar-100-python"
    folder.mkdir(parents=True)
    parts = {}
    for part, per_class in (("test", 1), ("train", 2)):
        labels = np.repeat(np.arange(3), per_class).tolist()
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)  # rows: R, G, B planes
        parts[part] = (data, labels)
        with open(folder / part, "wb") as handle:
            pickle.dump({"filenames": [f"{part}_{i}.png" for i in range(len(labels))], "batch_label": part,
                         "fine_labels": labels, "coarse_labels": [0] * len(labels), "data": data}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": CLASS_NAMES, "coarse_label_names": ["all"]}, handle)
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-100-python")

    cifar = import_torchvision().datasets.CIFAR100
    monkeypatch.setattr(cifar, "tgz_md5", md5_of(archive))
    monkeypatch.setattr(cifar, "train_list", [["train", md5_of(folder / "train")]])
    monkeypatch.setattr(cifar, "test_list", [["test", md5_of(folder / "test")]])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5_of(folder / "meta")})
    test_pixels = parts["test"][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return root, test_pixels, parts["train"][1]


def load(root, cache_dir, **options):
    return load_dataset("cifar100", data_root=str(root), download=False, image_size=32, weights="random",
                        cache_dir=str(cache_dir), progress=False, **options)


def test_loads_archive_then_extracted_folder(tiny_cifar, tmp_path, monkeypatch):
    root, test_pixels, train_labels = tiny_cifar
    data = load(root, tmp_path / "cache")
    assert data.features.shape == (9, 512) and np.isfinite(data.features).all()
    assert data.query_index.tolist() == [0, 1, 2]  # test images first
    assert data.database_index.tolist() == list(range(3, 9))
    assert data.labels.tolist() == [0, 1, 2] + train_labels
    assert data.class_names == tuple(CLASS_NAMES)
    assert data.long_tail_protocol == CIFAR100_PROTOCOL
    assert (root / "cifar-100-python" / "train").is_file()  # extracted next to the archive
    # the image source is aligned with the feature rows and holds the HWC pixels
    assert len(data.image_source) == 9
    np.testing.assert_array_equal(data.image_source.items[:3], test_pixels)
    assert data.image_source.subset(data.database_index).labels.tolist() == train_labels
    assert data.card["features"]["weights"] == "random" and data.card["n_query"] == 3

    def must_not_run(*args, **kwargs):
        raise AssertionError("features must come from the cache")

    monkeypatch.setattr(features_module, "extract_features", must_not_run)
    (root / "cifar-100-python.tar.gz").unlink()  # now only the extracted folder
    again = load(root / "cifar-100-python", tmp_path / "cache")  # naming the folder itself also works
    np.testing.assert_array_equal(again.features, data.features)


def test_truncated_archive_is_a_checksum_error(tiny_cifar, tmp_path):
    root, _, _ = tiny_cifar
    archive = root / "cifar-100-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"fails its md5 checksum.*truncated or corrupt.*Delete it"):
        load(root, tmp_path / "cache")


def test_corrupt_extracted_file_is_a_checksum_error(tiny_cifar, tmp_path):
    root, _, _ = tiny_cifar
    with tarfile.open(root / "cifar-100-python.tar.gz") as tar:
        tar.extractall(root, filter="data")
    (root / "cifar-100-python.tar.gz").unlink()
    with open(root / "cifar-100-python" / "train", "ab") as handle:
        handle.write(b"junk")
    with pytest.raises(DatasetError, match=r"train fails its md5.*checksum failure"):
        load(root, tmp_path / "cache")


def test_missing_data_offline_tells_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(DatasetError) as no_download:
        load(tmp_path / "empty", tmp_path / "cache")
    assert OFFLINE_HINT in str(no_download.value)
    assert "pass --data-root DIR containing cifar-100-python (or the archive), or run --dataset digits offline" \
        in OFFLINE_HINT

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(import_torchvision().datasets.utils, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match="cannot download CIFAR-100") as failed_download:
        load_dataset("cifar100", data_root=str(tmp_path / "empty"), download=True, weights="random",
                     cache_dir=str(tmp_path / "cache"))
    assert OFFLINE_HINT in str(failed_download.value)


@pytest.mark.parametrize("factor, n_train, n_max, n_min", [(1, 50000, 500, 500), (50, 3732, 500, 10),
                                                           (100, 2598, 500, 5)])
def test_table2_cifar100_from_the_loader_protocol(factor, n_train, n_max, n_min):
    from datasets.longtail import long_tail_class_sizes

    labels = np.repeat(np.arange(100), 500)  # CIFAR-100 training set: 500 per class
    sizes, _, s1 = long_tail_class_sizes(labels, 100, factor, CIFAR100_PROTOCOL)
    assert (int(sizes.sum()), int(sizes.max()), int(sizes.min()), s1) == (n_train, n_max, n_min, 500)


def test_row_paths_extracted_images_and_list_round_trip(tiny_cifar, tmp_path):
    from PIL import Image

    from datasets import export_split, load_list_files, make_long_tail
    from datasets.cifar100 import extract_cifar100_images
    from datasets.longtail import LongTailProtocol

    root, test_pixels, train_labels = tiny_cifar
    data = load(root, tmp_path / "cache")
    # LTHNet layout with the archive's file names: test images are queries, train images the database
    assert data.row_paths[:3] == ("query/apple/test_0.png", "query/bear/test_1.png", "query/castle/test_2.png")
    assert data.row_paths[3] == f"database/{CLASS_NAMES[train_labels[0]]}/train_0.png"

    assert extract_cifar100_images(str(tmp_path / "out"), data_root=str(root), download=False) == 9
    for row in (0, 4):
        with Image.open(tmp_path / "out" / "images" / data.row_paths[row]) as image:
            np.testing.assert_array_equal(np.asarray(image), data.image_source.items[row])

    split = make_long_tail(dataclasses.replace(data, long_tail_protocol=LongTailProtocol()), 2)
    written = export_split(split, str(tmp_path / "lists"))
    for line in open(written[0]).read().splitlines():  # train.txt names extracted files
        assert (tmp_path / "out" / "images" / line.split()[0]).is_file()
    back = load_list_files(str(tmp_path / "lists"), data)
    np.testing.assert_array_equal(back.train, split.train)
    assert back.fingerprint() == split.fingerprint()
