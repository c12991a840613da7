"""REPORT.md says where its numbers come from: a warning when cells come from different versions of
the suite, the split manifests of the cells it shows, and (features mode) which trunk the deep rows
trained under their heads."""
from __future__ import annotations

import json

import numpy as np

from benchmark.analysis_report import provenance_lines, record_run, split_manifest_lines, write_report
from benchmark.report import table_caption
from benchmark.results import StoredResults
from benchmark.store import ResultStore

from report_store import run_dict, write_cell

MANIFEST = {"version": 1, "index_hash": "sha256 of the row numbers as little-endian int64, in list order",
            "n_train": 30, "n_query": 20, "n_database": 80, "train_sha256": "a" * 64, "query_sha256": "b" * 64,
            "database_sha256": "c" * 64, "query_database_disjoint": True, "train_in_database": True}
CARD = {"long_tail": {"imbalance_factor": 50.0, "split_seed": 0, "realised_imbalance_factor": 69.5,
                      "manifest": MANIFEST}}


def _set_versions(store: ResultStore, cell, versions: dict) -> None:
    """Give a stored record other versions (as a cell computed by another checkout would have)."""
    path = store.record_path(cell)
    record = json.load(open(path))
    record["versions"] = versions
    with open(path, "w") as handle:
        json.dump(record, handle)


def test_report_warns_when_cells_come_from_different_versions(tmp_path):
    store = ResultStore(str(tmp_path))
    first = write_cell(store, "ITQ", np.full(20, 0.5), family="shallow", card=CARD)
    second = write_cell(store, "LSH", np.full(20, 0.4), family="shallow", card=CARD)
    _set_versions(store, first, {"longtail-hashing-benchmark": "0.2.0", "git_commit": "1" * 40})
    _set_versions(store, second, {"longtail-hashing-benchmark": "0.2.0", "git_commit": "2" * 40})
    record_run(store, run_dict([("ITQ", "ITQ", "ITQ"), ("LSH", "LSH", "LSH")]), "features")
    text = open(write_report(store)).read()
    assert "2 different versions" in text and "0.2.0 (commit 111111111111): 1 cells" in text
    # one version: no warning
    same = StoredResults.load(store).records.values()
    for record in same:
        record["versions"] = {"longtail-hashing-benchmark": "0.2.0", "git_commit": "1" * 40}
    assert provenance_lines(same) == []


def test_report_lists_the_split_manifest_of_its_cells(tmp_path):
    store = ResultStore(str(tmp_path))
    write_cell(store, "ITQ", np.full(20, 0.5), family="shallow", card=CARD)
    record_run(store, run_dict([("ITQ", "ITQ", "ITQ")]), "features")
    text = open(write_report(store)).read()
    assert "### Split manifests" in text
    row = next(line for line in text.splitlines() if line.startswith("| 50 | 0 |"))
    assert "69.5" in row and "`aaaaaaaaaaaaaaaa`" in row and "`cccccccccccccccc`" in row
    assert row.rstrip().endswith("| yes | yes |")
    broken = {"long_tail": {**CARD["long_tail"], "manifest": {**MANIFEST, "train_in_database": False}}}
    lines = split_manifest_lines([{"dataset": {"card": broken}}])
    assert lines[-2].rstrip().endswith("| yes | NO |")


def test_caption_names_the_trunk_of_the_deep_rows(tmp_path):
    store = ResultStore(str(tmp_path))
    write_cell(store, "CSQ", np.full(20, 0.5), settings={"trunk": "shared", "head_init": "reference"})
    write_cell(store, "LTHNet (k=3)", np.full(20, 0.6), key="LTHNet(k=3)", settings={"trunk": "own"})
    frame = StoredResults.load(store).frame
    caption = table_caption(frame, "synthetic", "features", "tie_aware")
    assert "same trunk in features mode, Linear(d, 2000) + ReLU" in caption
    write_cell(store, "DPSH", np.full(20, 0.3), settings={"trunk": "none"})
    caption = table_caption(StoredResults.load(store).frame, "synthetic", "features", "tie_aware")
    assert "DPSH: its head alone on the features" in caption and "CSQ: the shared trunk" in caption
