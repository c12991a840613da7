"""Long-tail diagnostics: shot groups, per-class AP, the protocol-inflation diagnostic and the
retrieval examples (Hamming top-k with ties by database index), on constructed stores."""
import os

import numpy as np
import pandas as pd
import pytest
from report_store import run_dict, write_cell

from benchmark import analysis_report, diagnostics
from benchmark.metrics import pack_codes
from benchmark.results import StoredResults
from benchmark.store import ResultStore


def test_shot_groups_use_absolute_counts():
    groups = diagnostics.shot_groups([150, 101, 100, 20, 19, 0])
    assert groups["many_shot"].tolist() == [0, 1]
    assert groups["medium_shot"].tolist() == [2, 3]
    assert groups["few_shot"].tolist() == [4, 5]


def test_per_class_ap_is_the_mean_over_the_class_queries_and_seeds(tmp_path):
    store = ResultStore(str(tmp_path))
    labels = np.array([0, 0, 1, 1, 1, 2])
    sizes = np.array([30, 5, 1])
    write_cell(store, "M", [0.2, 0.4, 1.0, 0.5, 0.0, 0.9], query_labels=labels, train_class_sizes=sizes, seed=0)
    write_cell(store, "M", [0.4, 0.6, 1.0, 0.5, 0.3, 0.1], query_labels=labels, train_class_sizes=sizes, seed=1)
    results = StoredResults.load(store)
    table = diagnostics.per_class_ap(results, results.frame).set_index("class")
    assert table.loc[0, "ap"] == pytest.approx(0.4)  # (0.3 + 0.5) / 2
    assert table.loc[1, "ap"] == pytest.approx((0.5 + 0.6) / 2)
    assert table.loc[2, "ap"] == pytest.approx(0.5)
    assert table["train_size"].tolist() == [30, 5, 1] and table["n_queries"].tolist() == [2, 3, 1]


def _log(maps, n_epochs):
    return {"loss": [1.0 / (e + 1) for e in range(n_epochs)],
            "query_map_diagnostic": [{"epoch": e, "map": m} for e, m in maps]}


def test_inflation_diagnostic_table_figure_and_report(tmp_path):
    store = ResultStore(str(tmp_path))
    labels, sizes = np.repeat(np.arange(3), 20), np.array([40, 8, 2])
    ap = np.full(60, 0.4)  # the final epoch's MAP: 0.4
    for factor in (50.0, 100.0):
        write_cell(store, "LTHNet (k=3)", ap, key="LTHNet(k=3)", factor=factor, query_labels=labels,
                   train_class_sizes=sizes, training_log=_log([(1, 0.3), (2, 0.5), (3, 0.4)], 3))
        write_cell(store, "CSQ", ap - 0.1, factor=factor, query_labels=labels, train_class_sizes=sizes,
                   training_log={"loss": [1.0, 0.5]})  # no diagnostic recorded: skipped
        write_cell(store, "LSH", ap - 0.2, family="shallow", factor=factor, query_labels=labels,
                   train_class_sizes=sizes)
    results = StoredResults.load(store)
    table = diagnostics.inflation_table(results, results.frame)
    assert sorted(table["method"].unique()) == ["LTHNet (k=3)"]
    row = table.iloc[0]
    assert (row["final_epoch"], row["best_epoch"]) == (3, 2)
    assert row["final_map"] == pytest.approx(0.4) and row["best_on_query_map"] == pytest.approx(0.5)
    assert row["inflation"] == pytest.approx(0.1)

    run = run_dict([("LTHNet (k=3)", "LTHNet(k=3)", "LTHNet (k=3)"), ("CSQ", "CSQ", "CSQ"), ("LSH", "LSH", "LSH")],
                   factors=(50.0, 100.0))
    written = analysis_report.finish_run(results, run, "features")
    csv = pd.read_csv(written["query_map_diagnostic_csv"])
    assert csv["inflation"].tolist() == pytest.approx([0.1, 0.1])
    assert os.path.getsize(written["query_map_diagnostic.png"]) > 10_000
    report = open(written["report"]).read()
    section = report.split("#### Protocol-inflation diagnostic")[1]
    assert "| LTHNet (k=3) | 50 | 16 | 0.4000 | 0.5000 | +0.1000 |" in section
    assert "![query_map_diagnostic](figures/query_map_diagnostic_synthetic_features.png)" in section
    # nothing in the main table uses it: LTHNet's value there is the final epoch's 0.4000
    main = report.split("#### Tail MAP")[0]
    assert "0.4000" in main.split("| LTHNet (k=3) |")[1].split("\n")[0]
    assert "0.5000" not in main


def test_hamming_top_k_breaks_ties_by_database_index():
    rng = np.random.default_rng(0)
    database = rng.integers(0, 2, (200, 16))
    query = rng.integers(0, 2, 16)
    order, distances = diagnostics.hamming_top_k(pack_codes(query[None] * 2 - 1)[0], pack_codes(database * 2 - 1), 10)
    brute = (database != query).sum(axis=1)
    expected = sorted(range(200), key=lambda j: (brute[j], j))[:10]
    assert order.tolist() == expected and distances.tolist() == brute[expected].tolist()


@pytest.fixture(scope="module")
def digits():
    from datasets import load_dataset

    return load_dataset("digits")


def _digits_store(tmp_path, data):
    """Three methods on the real digits query/database, with codes that are the class (plus noise
    for one method), and a long-tail class-size vector."""
    store = ResultStore(str(tmp_path))
    query_labels, database_labels = data.labels[data.query_index], data.labels[data.database_index]
    sizes = np.array([139, 60, 30, 20, 12, 8, 5, 3, 2, 1])
    rng = np.random.default_rng(1)
    class_codes = rng.choice([-1, 1], size=(10, 16))
    for name, family, noise in (("ITQ", "shallow", 0.0), ("CSQ", "deep", 0.3),
                                ("LTHNet (k=3)", "deep", 0.1)):
        def codes(labels):
            flip = rng.random((labels.size, 16)) < noise
            return pack_codes(np.where(flip, -class_codes[labels], class_codes[labels]))
        write_cell(store, name, rng.uniform(0.2, 0.9, query_labels.size), key=name.replace(" ", ""), family=family,
                   factor=100.0, query_labels=query_labels, database_labels=database_labels, train_class_sizes=sizes,
                   query_codes=codes(query_labels), database_codes=codes(database_labels), dataset="digits")
    run = run_dict([("ITQ", "ITQ", "ITQ"), ("CSQ", "CSQ", "CSQ"), ("LTHNet (k=3)", "LTHNet(k=3)", "LTHNet (k=3)")],
                   dataset="digits", factors=(100.0,))
    return store, run


def test_retrieval_examples_choose_tail_queries_and_mark_hits(tmp_path, digits):
    store, run = _digits_store(tmp_path, digits)
    results = StoredResults.load(store)
    frame = results.frame
    methods = diagnostics.choose_example_methods(frame, "LTHNet (k=3)", {"LTHNet (k=3)"})
    assert [role for role, _ in methods] == ["best shallow", "best deep baseline", "LTHNet (k=3)"]
    examples = diagnostics.retrieval_examples(results, frame, digits, methods)
    assert len(examples) == 9  # 3 queries x 3 methods
    query_labels = digits.labels[digits.query_index]
    # the three smallest training classes (sizes 1, 2, 3: classes 9, 8, 7), the first query of each
    assert [e["query_label"] for e in examples[::3]] == [9, 8, 7]
    assert examples[0]["query"] == int(np.flatnonzero(query_labels == 9)[0])
    itq = examples[0]
    assert len(itq["items"]) == 10 and all(i["distance"] == 0 and i["correct"] for i in itq["items"])
    rows = [i["row"] for i in itq["items"]]  # exact codes: ties at distance 0, broken by database index
    assert rows == sorted(rows) and all(digits.labels[r] == 9 for r in rows)
    for example in examples:
        for item in example["items"]:
            assert item["correct"] == (digits.labels[item["row"]] == example["query_label"])
    written = analysis_report.finish_run(results, run, "features", data=digits)
    assert os.path.getsize(written["retrieval_examples.png"]) > 20_000
    assert "#### Retrieval examples" in open(written["report"]).read()


def test_retrieval_examples_are_skipped_without_images(tmp_path, digits):
    import dataclasses

    store, run = _digits_store(tmp_path, digits)
    results = StoredResults.load(store)
    assert "retrieval_examples.png" not in analysis_report.finish_run(results, run, "features", data=None)
    no_images = dataclasses.replace(digits, name="my-features")  # a feature file: no images
    assert diagnostics.image_loader(no_images) is None
    assert "retrieval_examples.png" not in analysis_report.finish_run(results, run, "features", data=no_images)
    # images that cannot be read (e.g. files absent beside cached features): a note, the rest of the report
    from datasets.base import DatasetError

    class Unreadable:
        def load_image(self, row):
            raise DatasetError(f"cannot read image {row}")

    written = analysis_report.finish_run(results, run, "features", data=dataclasses.replace(
        digits, image_source=Unreadable()))
    assert "retrieval_examples.png" not in written and os.path.exists(written["html_report"])
    # data whose query set is not the stored one (changed data): no examples rather than wrong ones
    shifted = dataclasses.replace(digits, query_index=np.roll(digits.query_index, 1))
    frame = results.frame
    assert diagnostics.retrieval_examples(results, frame, shifted, [("x", "ITQ")]) == []
