"""Helpers of the parity tests: read a fixture tests/methods/data/parity_<method>.json (written by
benchmarks/parity/<method>_reference_loss.py from the reference code) and checksum regenerated inputs."""
from __future__ import annotations

import json
import os

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")


def load_parity(method: str) -> dict:
    """The parity fixture of ``method`` (e.g. "dhn")."""
    with open(os.path.join(DATA_DIR, f"parity_{method}.json")) as handle:
        return json.load(handle)


def checksum(tensor) -> list[float]:
    """[sum, sum of squares] in float64: tells regenerated inputs from the fixture's recipe apart."""
    values = tensor.double()
    return [values.sum().item(), values.pow(2).sum().item()]
