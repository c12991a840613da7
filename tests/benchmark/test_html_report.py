"""report.html: one self-contained offline page (tables, intervals, published values, embedded
figures, method cards), checked in headless Chromium when it is installed (skipped otherwise)."""
import json
import os
import re

import numpy as np
import pytest
from report_store import run_dict, write_cell

from benchmark import analysis_report, browser
from benchmark.figures import plot_class_sizes
from benchmark.results import StoredResults
from benchmark.store import ResultStore

METHODS = [("LSH", "LSH", "LSH"), ("CSQ", "CSQ", "CSQ"), ("LTHNet (k=3)", "LTHNet(k=3)", "LTHNet (k=3)")]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A cifar100 store (so published values show) with three methods at IF 50 and 100, 64 bits."""
    root = str(tmp_path_factory.mktemp("html"))
    store = ResultStore(root)
    rng = np.random.default_rng(0)
    labels, sizes = np.repeat(np.arange(10), 30), np.array([500, 300, 200, 120, 80, 50, 30, 20, 12, 10])
    for factor in (50.0, 100.0):
        base = rng.uniform(0.2, 0.6, labels.size)
        for (display, key, _base), shift in zip(METHODS, (-0.15, 0.0, 0.05)):
            family = "shallow" if display == "LSH" else "deep"
            params = {"trunk": "mlp-2000", "n_epochs": 3} if family == "deep" else {"n_bits": 64}
            settings = {"preset": "features", "learning_rate": 1e-4} if family == "deep" else None
            write_cell(store, display, np.clip(base + shift + rng.normal(0, 0.02, labels.size), 0, 1), key=key,
                       family=family, dataset="cifar100", factor=factor, bits=64, query_labels=labels,
                       train_class_sizes=sizes, params=params, settings=settings,
                       training_log={"loss": [1.0, 0.5, 0.4], "query_map_diagnostic": [
                           {"epoch": 1, "map": 0.3}, {"epoch": 2, "map": 0.6}, {"epoch": 3, "map": 0.5}]}
                       if family == "deep" else None)
    plot_class_sizes({50.0: sizes, 100.0: sizes}, "cifar100", os.path.join(root, "figures", "figure2_cifar100"))
    results = StoredResults.load(store)
    written = analysis_report.finish_run(results, run_dict(METHODS, "cifar100", (50.0, 100.0), (64,)), "features")
    return written, open(written["html_report"], encoding="utf-8").read()


def test_html_report_is_self_contained_and_complete(report):
    written, page = report
    assert written["html_report"].endswith("report.html") and os.path.dirname(written["html_report"]) == \
        os.path.dirname(written["report"])
    # offline: nothing is fetched -- no external src/href, no @import, no url() to the network
    assert not re.search(r'(src|href)\s*=\s*"(?!data:|#)', page)
    assert "@import" not in page and "http://" not in page and "https://" not in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 3  # Fig. 2, per-class AP, query MAP per epoch
    import base64
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert page.count('<table class="sortable">') >= 6 and "<script>" in page
    # published values and differences beside ours (cifar100 CSQ, IF 50, 64 bits: 0.3210 in the paper)
    assert 'class="pub">/ ' in page and "ours [95% interval] / published" in page
    assert re.search(r'<span class="ci">\[0\.\d{4}, 0\.\d{4}\]</span>', page)  # intervals
    assert "†" in page or "significantly below best" in page
    # method cards from the records: trunk, preset, selection rule
    cards = page.split("<h4>Methods</h4>")[1]
    assert cards.count('class="card"') == 3
    assert "<dt>trunk</dt><dd>mlp-2000</dd>" in cards and "<dt>settings preset</dt><dd>features</dd>" in cards
    assert "final epoch" in cards and "none (no epochs to choose)" in cards
    assert "Protocol-inflation diagnostic" in page and "best on query" in page


chromium = pytest.mark.skipif(browser.find_chromium() is None,
                              reason=f"headless Chromium not installed ({browser.INSTALL_HINT})")


@chromium
def test_html_report_renders_in_headless_chromium(report, tmp_path):
    written, page = report
    dom = browser.dump_dom(written["html_report"], fragment="selftest")
    rendered = json.loads(re.search(r'data-rendered="([^"]+)"', dom).group(1).replace("&quot;", '"'))
    assert rendered["tables"] == page.count("<table")
    assert rendered["images"] >= 3 and rendered["images_loaded"] == rendered["images"]  # every figure decoded
    assert rendered["rows"] > 10
    # the self-test clicked the main table's first value column twice (descending): the best value first
    first = float(re.search(r'data-selftest-first="([^"]+)"', dom).group(1))
    main = page.split('<table class="sortable">')[1].split("</table>")[0]
    column = [float(v) for v in re.findall(r'<tr><td data-sort="[^"]*">[^<]*</td><td data-sort="([0-9.e-]+)"', main)]
    assert first == pytest.approx(max(column))

    from PIL import Image

    png = browser.screenshot(written["html_report"], str(tmp_path / "shot.png"), width=1200, height=1600)
    image = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    assert image.shape == (1600, 1200, 3)
    assert image.std() > 10  # not a blank page
    dark = (image.sum(axis=2) < 200).mean()
    assert 0.001 < dark < 0.5  # text and table rules drawn
