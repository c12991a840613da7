"""Fixtures of the dataset tests: the LTHNet authors' demo folder and HashNet's ImageNet100 lists,
both read from ../shared/data (skipped when absent), and a small LTHNet-layout copy of the demo."""
from __future__ import annotations

import os
import shutil
import zipfile

import pytest


@pytest.fixture(scope="session")
def demo_folder(shared_data_dir, tmp_path_factory):
    """The demo zip extracted to a temporary folder: cifar-100-IF1 (100 query, 500 database = train)."""
    archive = os.path.join(shared_data_dir, "cifar100", "lthnet-demo-dataset.zip")
    if not os.path.isfile(archive):
        pytest.skip("LTHNet demo zip not present in ../shared/data/cifar100")
    target = tmp_path_factory.mktemp("lthnet-demo")
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(target)
    return target / "demo-dataset" / "cifar-100-IF1"


@pytest.fixture(scope="session")
def small_demo_folder(demo_folder, tmp_path_factory):
    """The demo's layout with its first 6 query, 10 database and 10 train images (train = database)."""
    root = tmp_path_factory.mktemp("small-demo") / "cifar-100-IF1"
    for split, keep in (("query", 6), ("database", 10), ("train", 10)):
        source = demo_folder / "images" / split / "apple"
        (root / "images" / split / "apple").mkdir(parents=True)
        for name in sorted(os.listdir(source))[:keep]:
            shutil.copy(source / name, root / "images" / split / "apple" / name)
    return root


@pytest.fixture(scope="session")
def hashnet_lists(shared_data_dir):
    """(folder, parsed HashNet ImageNet100 lists)."""
    from datasets.imagenet100 import load_imagenet100_lists

    folder = os.path.join(shared_data_dir, "imagenet100")
    if not os.path.isfile(os.path.join(folder, "database0.txt.gz")):
        pytest.skip("HashNet ImageNet100 lists not present in ../shared/data/imagenet100")
    return folder, load_imagenet100_lists(lists=folder, download=False)


@pytest.fixture(scope="session")
def small_demo_data(small_demo_folder, tmp_path_factory):
    """The small demo copy loaded as the CLI loads it: data_root and cache_dir (random ResNet34, 32 px)."""
    from datasets import load_dataset

    return load_dataset("lthnet-folder", data_root=str(small_demo_folder), cache_dir=str(tmp_path_factory.mktemp("c")),
                        weights="random", image_size=32, progress=False)
