"""benchmarks/hashnet_pairs.py: similar pairs per HashNet batch under the three pairings, on
CIFAR-100's IF-100 class sizes (small: 2,598 training labels, no training)."""
import importlib.util
import json
import math
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script():
    spec = importlib.util.spec_from_file_location("hashnet_pairs", os.path.join(ROOT, "benchmarks", "hashnet_pairs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_per_pairing_on_if100_class_sizes():
    script = load_script()
    labels = script.cifar100_training_labels(100.0)
    sizes = np.bincount(labels)
    assert labels.size == 2598 and sizes.max() == 500 and sizes.min() == 5
    counts = script.similar_pairs_per_batch(labels, 8)
    assert {name: values.size for name, values in counts.items()} == {name: math.ceil(2598 / 8) for name in script.PAIRINGS}
    # the old in-batch pairing leaves about a quarter of the batches without a similar pair
    assert 0.15 < np.mean(counts["in_batch"] == 0) < 0.35
    assert np.mean(counts["second_batch"] == 0) < np.mean(counts["in_batch"] == 0)
    # the bank: never; every item meets its class-mates (4 to 499 of them)
    assert np.all(counts["memory_bank"] >= 8 * 4) and counts["memory_bank"].mean() > 100 * counts["in_batch"].mean()


def test_main_writes_the_rows(tmp_path):
    script = load_script()
    out = tmp_path / "pairs.json"
    script.main(["--imbalance-factors", "100", "--batch-sizes", "32", "--out", str(out)])
    document = json.loads(out.read_text())
    assert [row["pairing"] for row in document["rows"]] == list(script.PAIRINGS)
    bank = document["rows"][2]
    assert bank["share_without_similar_pair"] == 0 and bank["n_batches"] == 82 and bank["mean_similar_pairs"] > 1000
    assert document["command"].startswith("python benchmarks/hashnet_pairs.py --imbalance-factors 100")
