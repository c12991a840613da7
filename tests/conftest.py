"""Shared fixtures: small synthetic class-clustered data with a long-tail training split."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def clustered_features():
    """(X, y): 10 classes x 60 items, 32-d, clearly clustered, non-negative."""
    from datasets.synthetic import make_class_clusters

    return make_class_clusters(10, 60, 32, seed=3, noise=0.6)


@pytest.fixture(scope="session")
def long_tail_benchmark():
    """A synthetic 20-class benchmark with its IF=10 long-tail training split."""
    from datasets import load_dataset, make_long_tail

    data = load_dataset("synthetic", n_classes=20, query_per_class=15, database_per_class=80, dim=64, noise=1.2)
    return make_long_tail(data, 10, seed=0)


@pytest.fixture(scope="session")
def long_tail_split(long_tail_benchmark):
    """(train, query, database) subsets of ``long_tail_benchmark``."""
    data = long_tail_benchmark
    return data.subset(data.train), data.subset(data.query_index), data.subset(data.database_index)


@pytest.fixture(scope="session")
def long_tail_train_float64(long_tail_benchmark):
    """(X, y) of the long-tail training split, X in float64 (objectives recomputed in the tests)."""
    X, y = long_tail_benchmark.subset(long_tail_benchmark.train)
    return X.astype(np.float64), y


@pytest.fixture
def single_torch_thread():
    """Tiny tensors: one intra-op torch thread (no spin-waiting when the CI machine is busy)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data_dir():
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip("../shared/data is not present beside the checkout")
    return path
