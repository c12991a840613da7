"""Import torchvision even where a CPU-only torch meets a CUDA torchvision wheel.

Everything in the project imports torchvision through ``import_torchvision()``.

Convention: the plain ``import torchvision`` is tried first. Only when it fails with
"operator torchvision::nms does not exist" (torchvision's compiled ops did not load, so its fake
kernel registrations for ``nms``/``qnms`` have no operator to attach to) are the two operator
schemas defined with ``torch.library`` and the import retried. Nothing else is patched: models and
transforms work; calling ``torchvision.ops.nms`` itself would still fail (no kernel), and nothing in
this project calls it.
"""
from __future__ import annotations

import sys

_MISSING_NMS = "operator torchvision::nms does not exist"
# Schemas as torchvision's C++ extension declares them (torchvision/csrc/ops/nms.cpp, qnms).
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_schema_library = None  # keeps the torch.library.Library alive (its definitions die with it)


def _define_missing_schemas() -> None:
    global _schema_library
    import torch

    if _schema_library is None:
        _schema_library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _SCHEMAS.items():
        if not _operator_exists(name):
            _schema_library.define(schema)


def _operator_exists(name: str) -> bool:
    import torch

    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def import_torchvision():
    """Return the ``torchvision`` module (see the module docstring for the fallback)."""
    try:
        import torchvision

        return torchvision
    except RuntimeError as error:
        if _MISSING_NMS not in str(error):
            raise
    # The failed import left half-initialised modules behind; drop them before retrying.
    for module_name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module_name]
    _define_missing_schemas()
    import torchvision

    return torchvision
