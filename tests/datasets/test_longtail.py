"""Long-tail splits: eq. (1) with the paper's exponents reproduces Table 2 exactly."""
import numpy as np
import pytest

from datasets import DatasetError, load_dataset, make_long_tail
from datasets.base import LongTailProtocol
from datasets.longtail import long_tail_class_sizes, long_tail_train_index, zipf_class_sizes, zipf_exponent

CIFAR = LongTailProtocol(500, {1.0: 0.0, 50.0: 0.83, 100.0: 0.99})
IMAGENET = LongTailProtocol(1300, {1.0: 0.0, 50.0: 0.845, 100.0: 0.99}, balanced_class_size=100)


@pytest.mark.parametrize("factor, n_train, n_max, n_min", [(1, 50000, 500, 500), (50, 3732, 500, 10),
                                                           (100, 2598, 500, 5)])
def test_table2_cifar100(factor, n_train, n_max, n_min):
    labels = np.repeat(np.arange(100), 500)
    sizes, _, _ = long_tail_class_sizes(labels, 100, factor, CIFAR)
    assert (sizes.sum(), sizes.max(), sizes.min()) == (n_train, n_max, n_min)
    assert sizes[0] == n_max and sizes[-1] == n_min  # class 0 is the head on a balanced database


@pytest.mark.parametrize("factor, n_train, n_max, n_min", [(1, 10000, 100, 100), (50, 9437, 1300, 26),
                                                           (100, 6834, 1300, 13)])
def test_table2_imagenet100_with_uneven_database(factor, n_train, n_max, n_min):
    # ImageNet100's database has 1,029..1,300 images per class: head ranks go to the largest classes
    counts = np.full(100, 1300)
    counts[::3] = 1029 + np.arange(34)
    labels = np.repeat(np.arange(100), counts)
    sizes, _, _ = long_tail_class_sizes(labels, 100, factor, IMAGENET)
    assert (sizes.sum(), sizes.max(), sizes.min()) == (n_train, n_max, n_min)
    assert np.all(sizes <= counts)


def test_generic_exponent_gives_the_imbalance_factor():
    mu = zipf_exponent(20, 10)
    sizes = zipf_class_sizes(10, 200, mu)
    assert sizes[0] == 200 and sizes[-1] == 10


def test_split_is_deterministic_per_seed_and_within_database():
    data = load_dataset("digits")
    a = make_long_tail(data, 50, seed=3)
    b = make_long_tail(data, 50, seed=3)
    c = make_long_tail(data, 50, seed=4)
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)
    np.testing.assert_array_equal(a.train_class_sizes(), c.train_class_sizes())
    assert np.isin(a.train, data.database_index).all()
    assert not np.isin(a.train, data.query_index).any()
    assert a.card["long_tail"]["n_train"] == len(a.train)
    sizes = a.train_class_sizes()
    assert sizes.max() / sizes.min() == pytest.approx(50, rel=0.45)


@pytest.mark.parametrize("factor", [0.5, 0, -3, float("nan")])
def test_imbalance_factor_below_one_is_an_error(factor):
    with pytest.raises(DatasetError, match=">= 1"):
        make_long_tail(load_dataset("digits"), factor)


def test_imbalance_factor_too_large_for_the_data():
    with pytest.raises(DatasetError, match="tail class empty"):
        make_long_tail(load_dataset("digits"), 10_000)


def test_class_too_small_for_the_protocol():
    labels = np.repeat(np.arange(3), [10, 10, 4])
    with pytest.raises(DatasetError, match="class 2 has 4"):
        long_tail_train_index(np.arange(24), labels, 3, 1, 0, LongTailProtocol(max_class_size=10))
