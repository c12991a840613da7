"""Every shallow method of the registry on 512-d class-clustered features with a long-tail (IF = 10)
training split: supervised ones beat LSH clearly at 64 bits, all run at the paper's 32/64/96 bits,
and small or odd training sets get a documented fallback or a clear InvalidInputError.

Parametrised over ``registered_methods()``: a shallow method added later is covered automatically
(with its ``test_params``)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmark.metrics import evaluate
from methods.registry import registered_methods
from methods.base import InvalidInputError

REGISTRY = registered_methods()
SHALLOW = sorted(name for name, cls in REGISTRY.items() if cls.family == "shallow")
SUPERVISED = [name for name in SHALLOW if REGISTRY[name].uses_labels]
KERNEL = [name for name in SHALLOW if "n_anchors" in REGISTRY[name]().get_params()]
PAPER_BITS = (32, 64, 96)
DIM = 512
MARGIN = 0.1  # MAP points over LSH (mean of 3 seeds) at 64 bits


def build(name, **params):
    cls = REGISTRY[name]
    return cls(**{**cls.test_params, **params})


def mean_average_precision(model, query, database) -> float:
    (Xq, yq), (Xd, yd) = query, database
    return evaluate(model.encode(Xq), model.encode(Xd), yq, yd, pr_curve=False).map_tie_aware


@pytest.fixture(scope="module")
def split():
    """20 classes of 512-d ReLU'd Gaussian clusters; train = IF-10 long-tail subset of the database."""
    from datasets import load_dataset, make_long_tail

    data = load_dataset("synthetic", n_classes=20, query_per_class=10, database_per_class=50, dim=DIM, noise=1.4)
    data = make_long_tail(data, 10, seed=0)
    train = data.subset(data.train)
    counts = np.bincount(train[1])
    assert counts.max() >= 10 * counts.min() * 0.9  # really long-tailed (head 50, tail 5)
    return train, data.subset(data.query_index), data.subset(data.database_index)


@pytest.fixture(scope="module")
def fitted(split):
    """One fit per (method, n_bits), shared by the quality and the bit-length tests."""
    (X, y), _, _ = split
    cache = {}

    def get(name, n_bits):
        if (name, n_bits) not in cache:
            cache[name, n_bits] = build(name, n_bits=n_bits).fit(X, y)
        return cache[name, n_bits]

    return get


@pytest.fixture(scope="module")
def lsh_map(split):
    (X, _), query, database = split
    return float(np.mean([mean_average_precision(build("LSH", n_bits=64, random_state=s).fit(X), query, database)
                          for s in range(3)]))


@pytest.mark.parametrize("name", SUPERVISED)
def test_supervised_method_beats_lsh_at_64_bits(name, fitted, split, lsh_map):
    _, query, database = split
    value = mean_average_precision(fitted(name, 64), query, database)
    assert value >= lsh_map + MARGIN, (name, value, lsh_map)


@pytest.mark.parametrize("n_bits", PAPER_BITS)
@pytest.mark.parametrize("name", SHALLOW)
def test_runs_at_the_paper_bit_lengths_on_512d(name, n_bits, fitted, split):
    _, (Xq, _), _ = split
    assert Xq.shape[1] == DIM
    codes = fitted(name, n_bits).encode(Xq)
    assert codes.shape == (len(Xq), n_bits)
    assert codes.dtype == np.int8
    assert set(np.unique(codes)) == {-1, 1}
    # (almost) every bit carries information across the 200 queries (SDH's classification loss
    # leaves a few bits constant: 89% of its 64 bits vary here; every other method >= 96%)
    assert (codes.std(axis=0) > 0).mean() >= 0.85, name
    # codes differ between items of different classes
    assert len(np.unique(codes, axis=0)) >= 20


# ---------------------------------------------------------------------------- odd training sets


@pytest.mark.parametrize("name", KERNEL)
def test_fewer_training_samples_than_anchors_uses_every_sample(name, split):
    """Documented fallback of every kernel method: all training samples become anchors, with a warning."""
    (X, y), (Xq, _), _ = split
    X, y = X[::4], y[::4]  # 60 samples from most classes
    assert len(np.unique(y)) >= 12
    with pytest.warns(UserWarning, match="anchors"):
        model = build(name, n_bits=16, n_anchors=2000).fit(X, y)
    assert model.n_anchors_ == len(X)
    assert model.anchors_.shape == (len(X), DIM)
    assert np.all(np.isfinite(model._encode(Xq)))
    assert (model.encode(Xq).std(axis=0) > 0).mean() >= 0.5


@pytest.mark.parametrize("name", SUPERVISED)
def test_class_with_a_single_sample(name, clustered_features):
    X, y = clustered_features
    rng = np.random.default_rng(0)
    keep = rng.permutation(len(y))[:300]
    X, y = X[keep], y[keep]
    single = (X[:1] + 0.5).astype(X.dtype)
    X, y = np.vstack([X, single]), np.append(y, y.max() + 5)  # one item of a new (sparse) class id
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 or overflow inside the method
        model = build(name, n_bits=16).fit(X, y)
        real = model._encode(X)
    assert np.all(np.isfinite(real))
    codes = model.encode(X)
    assert (codes.std(axis=0) > 0).mean() >= 0.5  # not a constant code
    assert len(np.unique(codes, axis=0)) >= 5


# methods with a code-length limit (PCA-based: K <= min(d, n); SCDH: K <= n - 1), on 60 training
# samples of 512-d features (limited by n) and on 200 samples of 32-d features (limited by d)
LIMITED_CASES = [
    pytest.param(name, n, d, id=f"{name}-n{n}-d{d}")
    for name in SHALLOW
    for n, d in ((60, DIM), (200, 32))
    if REGISTRY[name].max_bits_for(d, n) is not None and REGISTRY[name].max_bits_for(d, n) < max(PAPER_BITS)
]


def test_pca_based_methods_are_limited():
    assert {"PCAH", "ITQ"} <= {case.values[0] for case in LIMITED_CASES}


@pytest.mark.parametrize(("name", "n", "d"), LIMITED_CASES)
def test_more_bits_than_the_method_can_give_is_a_clear_error(name, n, d, split):
    (X, y), _, _ = split
    order = np.random.default_rng(1).permutation(len(y))[:n]
    X, y = X[order][:, :d], y[order]
    limit = REGISTRY[name].max_bits_for(d, n)
    with pytest.raises(InvalidInputError, match="n_bits") as error:
        build(name, n_bits=limit + 1).fit(X, y)
    assert str(limit) in str(error.value)  # the message names the largest usable code length
    # the limit itself works
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kernel anchors fallback etc.
        codes = build(name, n_bits=limit).fit(X, y).encode(X[:5])
    assert codes.shape == (5, limit)
