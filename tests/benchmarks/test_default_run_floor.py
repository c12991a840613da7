"""benchmarks/default_run.py's floor of the deep rows: matmul FLOPs counted on a stand-in fit agree
with the layer arithmetic, and the floor scales them by the cells' sizes."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import default_run  # noqa: E402

WIDTH = 2000  # the shared trunk's width (methods/_deep/trunk.py)


def csq_flops(n_features: int, n_bits: int) -> tuple[int, int]:
    """CSQ on the shared trunk: Linear(d, 2000) + ReLU, then Linear(2000, bits); its loss has no
    matmul. Training per item: forward 2(d W + W b); backward the trunk's weight gradient 2 d W
    (the frozen input needs no gradient) and the hash layer's weight and input gradients 2 W b each."""
    forward = 2 * (n_features * WIDTH + WIDTH * n_bits)
    return forward + 2 * n_features * WIDTH + 4 * WIDTH * n_bits, forward


@pytest.mark.parametrize("n_features,n_bits,batch", [(64, 16, 32), (20, 32, 8)])
def test_stand_in_counts_the_layer_arithmetic(n_features, n_bits, batch):
    train, encode, parameters = default_run._stand_in_flops("CSQ", n_bits, batch, n_features, 5)
    assert (train, encode) == csq_flops(n_features, n_bits)
    assert parameters == n_features * WIDTH + WIDTH + WIDTH * n_bits + n_bits


def test_floor_scales_by_the_cells(tmp_path):
    folder = tmp_path / "records" / "digits" / "features"
    folder.mkdir(parents=True)
    n_train, n_query, n_database, epochs, batch = 100, 30, 70, 4, 32

    def record(name, n_bits, family="deep", diagnostic=True):
        return {"method": {"family": family, "key": "CSQ", "display": "CSQ",
                           "settings": {"n_epochs": epochs, "batch_size": batch}},
                "cell": {"mode": "features", "n_bits": n_bits},
                "dataset": {"n_features": 64, "n_classes": 10,
                            "card": {"long_tail": {"n_train": n_train,
                                                   "manifest": {"n_query": n_query, "n_database": n_database}}}},
                "training_log": {"query_map_diagnostic": [{"epoch": 4, "map": 0.5}] if diagnostic else []},
                "timings": {"fit_seconds": 2.0, "diagnostic_seconds": 0.5, "encode_seconds": 0.5}}

    (folder / "a.json").write_text(json.dumps(record("a", 16)))
    (folder / "b.json").write_text(json.dumps(record("b", 32, diagnostic=False)))
    shallow = record("c", 16, family="shallow")
    shallow["method"]["key"] = shallow["method"]["display"] = "ITQ"
    (folder / "c.json").write_text(json.dumps(shallow))
    floor = default_run.deep_compute_floor(str(tmp_path), rates=(1e9, 1e9), cores=2)
    expected_flops = 0.0
    expected_bytes = 0.0
    for n_bits, n_encodes in ((16, 1 + 4), (32, 1)):  # 4 epochs <= 10 points: the diagnostic runs every epoch
        train, encode = csq_flops(64, n_bits)
        expected_flops += train * n_train * epochs + encode * (n_query + n_database) * n_encodes
        parameters = 64 * WIDTH + WIDTH + WIDTH * n_bits + n_bits
        expected_bytes += 20 * parameters * 4 * epochs  # ceil(100 / 32) = 4 steps an epoch
    [row] = floor["rows"]
    assert row["method"] == "CSQ" and row["cells"] == 2
    assert row["tflop"] == pytest.approx(expected_flops / 1e12)
    assert row["optimizer_gb"] == pytest.approx(expected_bytes / 1e9)
    assert floor["floor_seconds"] == pytest.approx((expected_flops + expected_bytes) / 1e9 / 2, abs=0.1)
    assert row["cell_s"] == pytest.approx(6.0)
