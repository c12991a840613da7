"""What the parity scripts share: the command line, importing a module from the user's checkout of a
reference repository, and writing a fixture tests/methods/data/parity_<method>.json atomically.

The scripts run the REFERENCE code (from ``--reference-dir``, never copied here) on seeded inputs and
record its values; tests/methods/test_<method>.py recomputes ours on the same inputs (1e-6).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys

import torch

PROJECT_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE_DIR = os.path.join(PROJECT_ROOT, "tests", "methods", "data")
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)


def parse_arguments(method: str, repository: str, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--reference-dir", required=True,
                        help=f"a checkout of https://github.com/{repository} (the reference code is run from it)")
    parser.add_argument("--out", default=os.path.join(FIXTURE_DIR, f"parity_{method.lower()}.json"),
                        help="the fixture to write (default: %(default)s)")
    arguments = parser.parse_args()
    if not os.path.isdir(arguments.reference_dir):
        parser.error(f"--reference-dir {arguments.reference_dir!r} is not a directory; pass a checkout of "
                     f"https://github.com/{repository}.")
    arguments.reference_dir = os.path.abspath(arguments.reference_dir)
    return arguments


def _put_reference_first(reference_dir: str) -> None:
    from datasets._torchvision import import_torchvision

    import_torchvision()  # the reference modules import torchvision (CPU torch + CUDA torchvision wheels)
    if reference_dir not in sys.path:
        sys.path.insert(0, reference_dir)


def import_reference(reference_dir: str, relative_path: str, module_name: str):
    """Import the file ``relative_path`` of the reference checkout as ``module_name`` (the checkout goes
    first on sys.path so that its own imports resolve; torchvision through the project's shim)."""
    _put_reference_first(reference_dir)
    path = os.path.join(reference_dir, relative_path)
    if not os.path.isfile(path):
        raise SystemExit(f"{path} does not exist: --reference-dir must be the root of the reference checkout.")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_reference_package(reference_dir: str, dotted_name: str):
    """Import ``dotted_name`` (e.g. "models.alexnet") from the reference checkout, as its own code does."""
    _put_reference_first(reference_dir)
    return importlib.import_module(dotted_name)


def reference_commit(reference_dir: str) -> str:
    """The checkout's git commit, or "unknown" (not a git checkout)."""
    try:
        return subprocess.run(["git", "-C", reference_dir, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def as_list(tensor: torch.Tensor) -> list:
    """A tensor as nested lists (float32 values are exact as JSON doubles)."""
    return tensor.detach().cpu().tolist()


def write_fixture(path: str, method: str, repository: str, reference_dir: str, command: str, content: dict) -> None:
    from common.io import atomic_write

    fixture = {
        "method": method,
        "reference": {"repository": repository, "commit": reference_commit(reference_dir)},
        "command": command,
        "torch_version": torch.__version__,
        **content,
    }
    atomic_write(path, json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {path}")
