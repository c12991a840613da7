"""Loader options are explicit: dataset_options lists them, load_dataset refuses any other with the
list of those it takes, and the card records how the data were loaded."""
from __future__ import annotations

import numpy as np
import pytest

from datasets import DATASET_LOADERS, DatasetError, dataset_options, load_dataset, register_dataset
from datasets.features import FEATURE_OPTIONS


@pytest.mark.parametrize("name", ["cifar100", "imagenet100", "lthnet-folder"])
def test_image_datasets_take_data_root_and_the_feature_cache_options(name):
    options = dataset_options(name)
    assert "data_root" in options and set(FEATURE_OPTIONS) <= set(options)


@pytest.mark.parametrize("name", ["digits", "synthetic", "features:my.npz"])
def test_feature_datasets_take_neither_data_root_nor_cache_dir(name):
    options = dataset_options(name)
    assert "data_root" not in options and "cache_dir" not in options and "seed" in options


def test_every_registered_loader_names_its_options():
    import inspect

    for name, loader in DATASET_LOADERS.items():
        kinds = {p.kind for p in inspect.signature(loader).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{name} hides its options behind **kwargs"
        assert dataset_options(name), name


def test_an_unknown_option_is_named_with_the_ones_the_loader_takes():
    with pytest.raises(DatasetError, match=r"digits does not take the option cache_dir; it takes: query_fraction, "
                                           r"seed\."):
        load_dataset("digits", cache_dir="x")
    with pytest.raises(DatasetError, match=r"features:PATH.npz does not take the options data_root, weights"):
        load_dataset("features:/nowhere.npz", data_root="x", weights="random")
    with pytest.raises(DatasetError, match="lthnet-folder does not take the option root.*data_root, path"):
        load_dataset("lthnet-folder", root="x")
    with pytest.raises(DatasetError, match="unknown dataset"):
        dataset_options("no-such-dataset")


def test_options_reach_the_loader_and_the_card_records_them():
    data = load_dataset("digits", query_fraction=0.25, seed=4)
    assert data.card["loader"] == {"name": "digits", "options": {"query_fraction": 0.25, "seed": 4}}
    assert len(data.query_index) == pytest.approx(0.25 * 1797, abs=10)
    other = load_dataset("digits", seed=5)
    assert not np.array_equal(other.query_index, load_dataset("digits", seed=4).query_index)


def test_a_loader_taking_any_option_gets_every_option(monkeypatch):
    seen = {}

    def loader(size=3, **options):
        seen.update(options, size=size)
        return load_dataset("digits")

    monkeypatch.setitem(DATASET_LOADERS, "anything", None)
    register_dataset("anything", loader)
    assert dataset_options("anything") == ("size",)
    load_dataset("anything", size=2, cache_dir="c")
    assert seen == {"size": 2, "cache_dir": "c"}
