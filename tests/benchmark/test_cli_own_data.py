"""A new user's path through the CLI: their own features file end to end, changed data never served
stale, broken or concurrent stores, and every mistake ending in one clear message."""
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import build_parser, main
from benchmark.store import ResultStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _features_file(path, seed=0, noise=0.3, n_classes=5, per_class=40, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    features = centres[labels] + noise * rng.normal(0, 1, (labels.size, dim))
    np.savez(path, features=features.astype(np.float32), labels=labels)
    return str(path)


def _run(argv, results):
    return main(argv + ["--no-progress", "--results-dir", str(results)])


def test_a_features_file_end_to_end(tmp_path, capsys):
    path = _features_file(tmp_path / "my.npz")
    results = tmp_path / "run"
    argv = ["--dataset", f"features:{path}", "--methods", "LSH", "ITQ", "--if", "1", "--bits", "16"]
    assert _run(argv, results) == 0
    out = capsys.readouterr().out
    assert "| LSH |" in out and "| ITQ |" in out  # the table is printed
    tables = glob.glob(os.path.join(results, "tables", "map_features-my_features_tie_aware.*"))
    assert {os.path.splitext(p)[1] for p in tables} >= {".csv", ".tex", ".md"}
    table = pd.read_csv(os.path.join(results, "tables", "map_features-my_features_tie_aware.csv"), index_col=0)
    assert list(table.index) == ["LSH", "ITQ"]
    report = open(os.path.join(results, "REPORT.md")).read()
    assert "## features-my" in report and "No stored cells yet" not in report and "| ITQ |" in report
    assert _run(argv + ["--recompute-metrics"], results) == 0
    assert "recomputed the metrics of 2 stored cell(s)" in capsys.readouterr().out


def test_changed_data_under_the_same_name_is_a_new_cell(tmp_path, capsys):
    path = str(tmp_path / "my.npz")
    results = tmp_path / "run"
    argv = ["--dataset", f"features:{path}", "--methods", "ITQ", "--if", "1", "--bits", "16"]
    _features_file(path, noise=8.0)  # classes buried in noise: low MAP
    assert _run(argv, results) == 0
    capsys.readouterr()
    _features_file(path, noise=0.05)  # same name, clean clusters
    assert _run(argv, results) == 0
    out = capsys.readouterr().out
    assert "1 computed, 0 already stored" in out
    table = pd.read_csv(os.path.join(results, "tables", "map_features-my_features_tie_aware.csv"), index_col=0)
    assert table.loc["ITQ"].iloc[0] > 0.9  # the new data's number, not the stale one
    assert len(ResultStore(str(results)).cells()) == 2  # the old cell is kept, never overwritten


def test_a_broken_record_is_set_aside_and_recomputed(tmp_path, capsys):
    results = tmp_path / "run"
    argv = ["--dataset", "digits", "--methods", "LSH", "--if", "1", "--bits", "16"]
    assert _run(argv, results) == 0
    (record,) = glob.glob(os.path.join(results, "records", "**", "*.json"), recursive=True)
    open(record, "w").close()  # an empty record, as a full disk or a killed copy leaves it
    capsys.readouterr()
    assert _run(argv, results) == 0
    captured = capsys.readouterr()
    assert "1 computed, 0 already stored" in captured.out
    assert "set aside" in captured.err and "recomputed" in captured.err
    assert glob.glob(os.path.join(results, "set_aside", "**", "*.json"), recursive=True)
    assert json.load(open(record))["metrics"]["map_tie_aware"] > 0


def test_two_concurrent_runs_split_the_cells(tmp_path):
    results = str(tmp_path / "run")
    argv = [sys.executable, "run_benchmark.py", "--dataset", "digits", "--methods", "ITQ", "KNNH", "SDH",
            "--if", "1", "50", "100", "--bits", "16", "32", "--jobs", "1", "--no-progress", "--results-dir", results]
    runs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    computed = [int(out.split("cells: ")[1].split(" computed")[0]) for out, _err in outputs]
    assert sum(computed) == 18  # every cell computed once, by one of the two runs
    assert len(ResultStore(results).cells()) == 18


def test_an_unwritable_results_folder_fails_before_any_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the results folder should be")
    code = main(["--dataset", "digits", "--methods", "LSH", "--no-progress", "--results-dir", str(blocker / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "--results-dir" in err


@pytest.mark.parametrize("source, message", [
    ("def broken(:\n", "SyntaxError"),
    ("raise RuntimeError('plugin refuses to load')\n", "RuntimeError: plugin refuses to load"),
])
def test_a_plugin_that_fails_at_import_is_one_message(tmp_path, capsys, source, message):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(source)
    code = main(["--plugin", str(plugin), "--dataset", "digits", "--no-progress", "--results-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: plugin") and message in err and f"{plugin}:1" in err
    assert "Traceback" not in err


def test_a_plugin_method_failing_in_fit_names_its_file_and_line(tmp_path, capsys):
    plugin = tmp_path / "fit_fails.py"
    plugin.write_text(textwrap.dedent('''
        from methods import register
        from methods.base import HashingMethod

        @register("FitFails")
        class FitFails(HashingMethod):
            def _fit(self, X, y):
                values = {}
                return values["missing"]
    '''))
    code = main(["--plugin", str(plugin), "--dataset", "digits", "--methods", "FitFails", "--if", "1",
                 "--bits", "16", "--no-progress", "--results-dir", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "FitFails on digits IF=1 16 bits seed 0 (features mode) failed: KeyError: 'missing'" in err
    assert f"(at {plugin}:9)" in err


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "-1"], "must be an integer >= 0"),
    (["--bits", "x"], "code lengths must be positive integers"),
    (["--if", "nan"], "imbalance factors must be >= 1"),
    (["--jobs", "0"], "must be a positive integer"),
    (["--threads", "two"], "must be a positive integer"),
    (["--split-seed", "1.5"], "must be an integer >= 0"),
    (["--set", "k=abc", "--methods", "LTHNet"], "k='abc' has the wrong type"),
    (["--methods", "all,-LSH,-PCAH", "--exclude", "*"], "leaves no method to run"),
])
def test_bad_values_are_refused_when_parsed(tmp_path, capsys, argv, message):
    code = main(["--dataset", "digits", "--no-progress", "--results-dir", str(tmp_path)] + argv)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not os.path.exists(os.path.join(tmp_path, "records"))


def test_exclude_leaves_methods_out(tmp_path, capsys):
    from benchmark.specs import expand_method_specs

    everything = [s.key for s in expand_method_specs(["all"])]
    without = [s.key for s in expand_method_specs(["all,-FastHash"], ["LTHNet(k=0)", "DS*"])]
    assert "FastHash" not in without and "DSDH" not in without and "LTHNet(k=0)" not in without
    assert "LTHNet(k=3)" in without
    assert without == [key for key in everything if key not in ("FastHash", "DSDH", "LTHNet(k=0)")]
    assert "--exclude" in build_parser().format_help()


def _message_strings(tree):
    """The string pieces of every ``raise ...(message)`` in a module's syntax tree."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            inside_fstrings = {id(v) for part in ast.walk(node.exc) if isinstance(part, ast.JoinedStr)
                               for v in part.values}
            for part in ast.walk(node.exc):
                if id(part) in inside_fstrings:
                    continue
                if isinstance(part, ast.JoinedStr):  # an f-string: its text with {} for the values
                    yield "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in part.values)
                elif isinstance(part, ast.Constant) and isinstance(part.value, str):
                    yield part.value


def test_every_flag_an_error_message_suggests_exists():
    """Error messages that recommend a flag must name one the CLI has. Flags inside backticks
    belong to other commands (`dask scheduler --port 8786`) and are not ours to check."""
    import ast
    import re

    known = {option for action in build_parser()._actions for option in action.option_strings}
    missing = {}
    for package in ("benchmark", "datasets", "methods", "common"):
        for path in glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True):
            for text in _message_strings(ast.parse(open(path).read())):
                text = re.sub(r"`[^`]*`", "", text)
                for flag in set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)) - known:
                    missing.setdefault(flag, set()).add(os.path.relpath(path, ROOT))
    assert not missing, f"messages suggest flags the CLI does not have: {missing}"


def test_killing_the_parent_ends_its_workers(tmp_path):
    """--jobs N workers end with the parent (no orphans left training)."""
    script = textwrap.dedent(f'''
        import os, sys, time
        sys.path.insert(0, {ROOT!r})
        from benchmark.cli import main
        main(["--dataset", "digits", "--methods", "FastHash", "KNNH", "--if", "1", "50", "100",
              "--bits", "16", "32", "--jobs", "2", "--no-progress", "--results-dir", {str(tmp_path / "run")!r}])
    ''')
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    children = []
    deadline = time.time() + 60
    while time.time() < deadline and len(children) < 2:
        time.sleep(0.5)
        children = _children_of(parent.pid)
    assert children, "no worker processes started"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    # the workers poll the parent's pid; on a loaded machine (or while numba compiles its kernels in
    # a fresh environment, holding the GIL) that takes a while: 60 s, against the 96 s orphans
    deadline = time.time() + 60
    while time.time() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in children)


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_records_name_threads_and_the_versions_actually_imported(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "9.9.9-as-imported")
    results = tmp_path / "run"
    assert _run(["--dataset", "digits", "--methods", "LSH", "--if", "1", "--bits", "16", "--jobs", "1",
                 "--threads", "1"], results) == 0
    (record,) = ResultStore(str(results)).records()
    assert record["versions"]["torch"] == "9.9.9-as-imported"  # not the installed package's metadata
    assert record["versions"]["longtail-hashing-benchmark"]
    assert record["threads"]["requested"] == 1
    # threads do not change a cell's identity: the same cell with 2 threads is already stored
    assert _run(["--dataset", "digits", "--methods", "LSH", "--if", "1", "--bits", "16", "--jobs", "1",
                 "--threads", "2"], results) == 0
    assert len(ResultStore(str(results)).cells()) == 1


def test_export_splits_and_run_them_back(tmp_path, capsys):
    """--export-splits writes HashNet-style lists; --dataset lists reads them back: the same rows,
    labels and training split, so the run computes the same cell (same data fingerprint)."""
    exported = tmp_path / "lists"
    assert main(["--dataset", "digits", "--if", "100", "--export-splits", str(exported)]) == 0
    folder = exported / "digits_IF100_split0"
    assert {p.name for p in folder.iterdir()} >= {"train.txt", "test.txt", "database.txt", "split.json"}
    first = (folder / "train.txt").read_text().splitlines()[0].split()
    assert first[0].startswith("digits/") and len(first[1:]) == 10 and first[1:].count("1") == 1
    results = tmp_path / "run"
    assert _run(["--dataset", "digits", "--methods", "ITQ", "--if", "100", "--bits", "16"], results) == 0
    capsys.readouterr()
    assert _run(["--dataset", "lists", "--data-root", str(folder), "--methods", "ITQ", "--bits", "16"], results) == 0
    out = capsys.readouterr().out
    assert "IF=100 16 bits" in out
    records = list(ResultStore(str(results)).records())
    assert len({r["cell"]["data_fingerprint"] for r in records}) == 1  # the same data, twice


def test_a_cell_lost_with_a_dead_dask_worker_is_in_the_summary(tmp_path, monkeypatch, capsys):
    import contextlib
    import types

    from benchmark.runner import CellOutcome

    @contextlib.contextmanager
    def dask_submit(address):
        def submit(fn, tasks):
            (task,) = tasks[0]
            return [CellOutcome(task.cell, "failed", f"{task.cell.describe()} failed: its Dask worker died while "
                                                     "running it (KilledWorker: ...); a re-run computes the missing cells")]
        yield submit

    fake = types.ModuleType("benchmark.distributed")
    fake.dask_submit = dask_submit
    monkeypatch.setitem(sys.modules, "benchmark.distributed", fake)
    code = _run(["--dataset", "digits", "--methods", "LSH", "--if", "1", "--bits", "16", "--scheduler", "local:2"],
                tmp_path / "run")
    assert code == 1
    captured = capsys.readouterr()
    assert "1 failed (1 with a worker that died: a re-run computes them)" in captured.out
    assert "its Dask worker died" in captured.err
