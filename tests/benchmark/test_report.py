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


# ---------------------------------------------------------------------------- intervals, marks, Holm, direction


def _marked_store(tmp_path):
    """One column: A best, B within noise of A (a tie), C clearly worse; labels and class sizes."""
    from report_store import write_cell

    rng = np.random.default_rng(5)
    base = rng.uniform(0.2, 0.8, 400)
    labels = np.repeat(np.arange(4), 100)
    sizes = np.array([200, 50, 10, 2])
    store = ResultStore(str(tmp_path))
    aps = {"A": base, "B": np.clip(base + rng.normal(0, 0.05, 400), 0, 1), "C": np.clip(base - 0.1, 0, 1)}
    for name, ap in aps.items():
        write_cell(store, name, ap, family="shallow", query_labels=labels, train_class_sizes=sizes,
                   card={"long_tail": {"realised_imbalance_factor": 100.0}})
    return store, aps


def test_table_marks_a_tie_within_noise_and_not_a_clear_loser(tmp_path):
    store, aps = _marked_store(tmp_path)
    paths = write_reports(store, "synthetic")
    long = pd.read_csv(paths["long_csv"]).set_index("method")
    best = max(aps, key=lambda m: aps[m].mean())
    assert long.loc[best, "mark"] == "best"
    tied = "B" if best == "A" else "A"
    assert long.loc[tied, "mark"] == "not significantly different from best"
    assert long.loc["C", "mark"] == "significantly below best"
    assert long.loc["C", "p_vs_best"] < 1e-10 and long.loc[tied, "p_vs_best_holm"] >= 0.05
    # Holm over the column's two comparisons
    from benchmark.uncertainty import holm
    raw = long.loc[["B" if best == "A" else "A", "C"], "p_vs_best"].astype(float).to_numpy()
    assert long.loc[[tied, "C"], "p_vs_best_holm"].astype(float).to_numpy() == pytest.approx(holm(raw), rel=1e-2)
    # 95% intervals bracket every MAP
    assert (long["map_ci_low"] < long["map"]).all() and (long["map"] < long["map_ci_high"]).all()
    markdown = open(paths["markdown_file"]).read()
    assert "|" in markdown and "†" in markdown.split(f"| {tied} |")[1].split("\n")[0]
    assert "†" not in markdown.split("| C |")[1].split("\n")[0]
    assert "[" in markdown.split("| C |")[1].split("\n")[0]  # its interval
    latex = open(paths["latex"]).read()
    assert r"$^\dagger$" in latex.split(f"\n{tied} &")[1].split("\n")[0]
    assert r"$^\dagger$" not in latex.split("\nC &")[1].split("\n")[0]
    assert "not significantly different" in latex  # the caption says what the marks mean
    # the requested IF (50) differs from the realised n_max/n_min (100): the caption says so
    assert "IF=50: realised 100" in markdown


def test_groups_csv_has_thirds_and_shot_groups_with_intervals(tmp_path):
    store, aps = _marked_store(tmp_path)
    groups = pd.read_csv(write_reports(store, "synthetic")["groups_csv"]).set_index("method")
    row = groups.loc["C"]
    labels = np.repeat(np.arange(4), 100)
    # shots by absolute counts (200 / 50 / 10, 2): many = class 0, medium = class 1, few = classes 2-3
    assert row["many_shot"] == pytest.approx(aps["C"][labels == 0].mean(), abs=1e-4)
    assert row["few_shot"] == pytest.approx(aps["C"][labels >= 2].mean(), abs=1e-4)
    assert (row["many_shot_classes"], row["medium_shot_classes"], row["few_shot_classes"]) == (1, 1, 2)
    assert row["few_shot_ci_low"] < row["few_shot"] < row["few_shot_ci_high"]
    assert row["tail_ci_low"] < row["tail"] < row["tail_ci_high"]


def test_ttest_names_the_direction_and_corrects_across_the_grid(tmp_path):
    """LTHNet clearly worse than CSQ: the raw flag alone (False) hid it; 'result' says so."""
    from report_store import write_cell

    rng = np.random.default_rng(6)
    store = ResultStore(str(tmp_path))
    for factor in (1.0, 50.0, 100.0):
        base = rng.uniform(0.3, 0.7, 300)
        write_cell(store, "CSQ", base, factor=factor)
        write_cell(store, "LTHNet (k=3)", base - (0.1 if factor > 1 else 0.0) + rng.normal(0, 0.02, 300),
                   key="LTHNet(k=3)", factor=factor)
    paths = write_reports(store, "synthetic")
    tests = pd.read_csv(paths["ttest_csv"]).set_index("imbalance_factor")
    worse = tests.loc[[50.0, 100.0]]
    assert (worse["result"] == "significantly worse").all()
    assert (~worse["significant_0.05"]).all() and (worse["p_value"] < 1e-10).all()
    assert (worse["difference"] < 0).all() and (worse["difference_ci_high"] < 0).all()
    from benchmark.uncertainty import holm
    assert tests["p_holm"].to_numpy() == pytest.approx(holm(tests["p_value"].to_numpy()), rel=1e-2)
    assert tests.loc[1.0, "p_holm"] >= tests.loc[1.0, "p_value"]


def test_realised_imbalance_from_the_card_or_the_class_sizes():
    from benchmark.report import realised_imbalance_text
    from benchmark.results import realised_imbalance_factor

    card = {"dataset": {"card": {"long_tail": {"realised_imbalance_factor": 139.0}}, "train_class_sizes": [5, 1]}}
    assert realised_imbalance_factor(card) == 139.0  # the split card wins
    assert realised_imbalance_factor({"dataset": {"train_class_sizes": [20, 7, 4]}}) == pytest.approx(5.0)
    assert realised_imbalance_factor({"dataset": {"train_class_sizes": [3, 0]}}) == float("inf")
    assert np.isnan(realised_imbalance_factor({}))
    frame = pd.DataFrame({"imbalance_factor": [1.0, 50.0, 100.0], "realised_imbalance_factor": [1.0, 69.5, 100.4]})
    assert realised_imbalance_text(frame) == (" The drawn training splits' realised n_max/n_min differs from the "
                                              "requested IF: IF=50: realised 69.5.")
    assert realised_imbalance_text(frame.iloc[[0, 2]]) == ""
