"""Reports: published numbers as data, Table 3/4 layout, best/second marks, paired t-tests."""
import numpy as np
import pandas as pd
import pytest

from benchmark.report import (paired_ttests, published_map, results_frame, summary_table, to_latex,
                              wide_table, write_reports)
from benchmark.store import Cell, ResultStore


def test_published_numbers_are_the_papers_tables():
    frame = published_map()
    assert len(frame) == 306
    value = frame.query("dataset == 'cifar100' and method == 'LTHNet (k=3)' and imbalance_factor == 100 and bits == 96")
    assert value["map"].item() == pytest.approx(0.2620)
    value = frame.query("dataset == 'imagenet100' and method == 'CSQ' and imbalance_factor == 1 and bits == 64")
    assert value["map"].item() == pytest.approx(0.8733)


def _fake_store(tmp_path, ap_by_method, dataset="cifar100", seeds=(0,)):
    store = ResultStore(str(tmp_path))
    for display, (family, base_ap) in ap_by_method.items():
        for seed in seeds:
            ap = np.clip(base_ap + 0.01 * seed, 0, 1)
            cell = Cell(dataset, 50.0, 64, display.replace(" ", ""), seed, "features", 0)
            store.write(cell, {
                "method": {"display": display, "key": cell.method, "family": family},
                "metrics": {"map_tie_aware": float(ap.mean()), "map_index_order": float(ap.mean()) - 0.001},
                "timings": {"fit_seconds": 1.0},
                "dataset": {"default_bits": [32, 64, 96]},
            }, {"ap_tie_aware": ap, "ap_index_order": ap})
    return store


def test_table_layout_published_and_difference(tmp_path):
    rng = np.random.default_rng(0)
    store = _fake_store(tmp_path, {
        "LTHNet (k=3)": ("deep", rng.uniform(0.3, 0.4, 200)),
        "CSQ": ("deep", rng.uniform(0.2, 0.3, 200)),
        "LSH": ("shallow", rng.uniform(0.0, 0.1, 200)),
    })
    frame = results_frame(store, "cifar100")
    summary = summary_table(frame)
    assert list(summary["method"]) == ["LSH", "CSQ", "LTHNet (k=3)"]  # the paper's order
    row = summary.set_index("method").loc["CSQ"]
    assert row["published"] == pytest.approx(0.2745)
    assert row["difference"] == pytest.approx(row["map"] - 0.2745)
    latex = to_latex(wide_table(summary), "caption")
    assert r"\textbf{0.3" in latex.split("LTHNet")[1]
    assert r"\underline{0.2" in latex.split("CSQ")[1]
    paths = write_reports(store, "cifar100")
    assert "ours / published" in paths["markdown"] or "/ 0.2745" in paths["markdown"]
    assert "latex_difference" in paths


def test_paired_ttest_detects_a_real_difference(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, 300)
    store = _fake_store(tmp_path, {
        "LTHNet (k=3)": ("deep", base + 0.05 + rng.normal(0, 0.01, 300)),
        "CSQ": ("deep", base),
        "LSH": ("shallow", base - 0.2),
    }, seeds=(0, 1, 2))
    tests = paired_ttests(store, "cifar100")
    row = tests.iloc[0]
    assert row["best_other"] == "CSQ"
    assert row["p_value"] < 1e-10 and row["significant_0.05"]
    assert row["n_seeds"] == 3 and row["n_queries"] == 300


def test_paired_ttest_without_a_difference(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.uniform(0.2, 0.6, 300)
    store = _fake_store(tmp_path, {"LTHNet (k=3)": ("deep", a), "CSQ": ("deep", rng.permutation(a))})
    row = paired_ttests(store, "cifar100").iloc[0]
    assert row["p_value"] > 0.01
