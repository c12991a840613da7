"""Parity fixture for DHN: runs swuxyj/DeepHash-pytorch's ``DHNLoss`` (DHN.py) on seeded batches and
writes tests/methods/data/parity_dhn.json, which tests/methods/test_dhn.py checks our loss against.

    git clone https://github.com/swuxyj/DeepHash-pytorch /tmp/DeepHash-pytorch
    python benchmarks/parity/dhn_reference_loss.py --reference-dir /tmp/DeepHash-pytorch

Inputs (stored in the fixture): 40 training items of 10 classes, 32 bits; three consecutive calls of
ONE loss object (its memory banks persist) on batches of 16 rows -- rows 0-15 and 16-31 of a seeded
permutation, then rows 0-15 again with new outputs -- so the bank semantics are checked too. Each
call once with the reference's alpha 0.1 and, on a second loss object, with alpha 0 (likelihood
only). Runs on the CPU (the config's device).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from parity_common import as_list, import_reference, parse_arguments, write_fixture

REPOSITORY = "swuxyj/DeepHash-pytorch"
N_TRAIN, BATCH, N_CLASSES, N_BITS, SEED = 40, 16, 10, 32, 0
OUTPUT_SCALE = 1.5  # outputs ~ N(0, 1.5^2): |u| - 1 of both signs, Theta up to ~20


def make_inputs():
    generator = torch.Generator().manual_seed(SEED)
    labels = torch.randint(0, N_CLASSES, (N_TRAIN,), generator=generator)
    order = torch.randperm(N_TRAIN, generator=generator)
    batches = [order[:BATCH], order[BATCH:2 * BATCH], order[:BATCH]]
    outputs = [OUTPUT_SCALE * torch.randn(BATCH, N_BITS, generator=generator) for _ in batches]
    return labels, batches, outputs


def main() -> None:
    arguments = parse_arguments("DHN", REPOSITORY, __doc__.split("\n")[0])
    reference = import_reference(arguments.reference_dir, "DHN.py", "reference_dhn")
    labels, batches, outputs = make_inputs()
    values = {}
    for alpha in (0.1, 0.0):
        config = {"num_train": N_TRAIN, "n_class": N_CLASSES, "device": torch.device("cpu"), "alpha": alpha}
        criterion = reference.DHNLoss(config, N_BITS)
        values[str(alpha)] = [
            criterion(u, F.one_hot(labels[index], N_CLASSES).float(), index, config).item()
            for index, u in zip(batches, outputs)
        ]
    write_fixture(arguments.out, "DHN", REPOSITORY, arguments.reference_dir,
                  "python benchmarks/parity/dhn_reference_loss.py --reference-dir <checkout>", {
                      "reference_object": "DHN.py DHNLoss(config, bit).forward(u, y_onehot, ind, config)",
                      "inputs": {
                          "recipe": (f"torch.Generator().manual_seed({SEED}): labels randint(0, {N_CLASSES}, "
                                     f"({N_TRAIN},)), order randperm({N_TRAIN}), then per call outputs "
                                     f"{OUTPUT_SCALE} * randn({BATCH}, {N_BITS}); float32"),
                          "n_train": N_TRAIN, "n_classes": N_CLASSES, "n_bits": N_BITS,
                          "train_labels": as_list(labels),
                          "batch_indices": [as_list(index) for index in batches],
                          "batch_outputs": [as_list(u) for u in outputs],
                      },
                      "reference_losses_by_alpha": values,
                  })


if __name__ == "__main__":
    main()
