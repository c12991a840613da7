"""The GPU check script runs in its CPU smoke form, without dask or PyMaxflow (the lent GPU
machine has neither), so it cannot rot between the sessions that have a GPU."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gpu_check_quick_form_on_cpu_without_dask_or_maxflow(tmp_path):
    blockers = tmp_path / "blockers"
    for name in ("dask", "distributed", "maxflow"):
        (blockers / name).mkdir(parents=True)
        (blockers / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the GPU machine')\n")
    out = tmp_path / "gpu.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blockers), ROOT]))
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--device", "cpu", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    measured = json.loads(out.read_text())
    rows = measured["features_mode"]["rows"]
    assert rows and all(row["if100_cell_s"] > 0 and row["if1_cell_s_extrapolated"] > 0 for row in rows)
    assert measured["features_mode"]["cells_per_minute"] > 0
    assert [row["batch_size"] for row in measured["finetune"]] == [2, 4]
    assert all(row["images_per_second"] > 0 for row in measured["finetune"])
    assert "cells/min" in result.stdout and "images/s" in result.stdout
