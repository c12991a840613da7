"""Parity fixture for OrthoHash: runs kamwoh/orthohash's ``CosSim`` + ``OrthoHashLoss`` and its
``get_codebook`` on seeded inputs and writes tests/methods/data/parity_orthohash.json.

    git clone https://github.com/kamwoh/orthohash /tmp/orthohash
    python benchmarks/parity/orthohash_reference_loss.py --reference-dir /tmp/orthohash

Checks (CPU), compared by tests/methods/test_orthohash.py to 1e-6:
* loss: code logits v (16, 32), a +-1 codebook (10, 32) and labels (stored as lists); logits from
  models/alexnet.py ``CosSim(32, 10, codebook, learn_cent=False)``, loss from
  functions/loss/orthohash.py ``OrthoHashLoss(**case)(logits, v, onehot_labels)`` for the cases
  below (the main.py defaults s 8, m 0.2, "cos", no quantisation, and the variants).
* codebook: scripts/train_hashing.py ``get_codebook(n_classes, n_bits, maxtries)`` (the "O" codebook) after
  ``torch.manual_seed(seed)``, as the reference seeds before drawing it; ours draws from a
  ``torch.Generator`` seeded the same. (The default "B" codebook is drawn inline in the reference's
  ``main``, not by a function this script could call; it is checked by properties in the test.)
"""
from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F

from parity_common import as_list, import_reference_package, parse_arguments, write_fixture

REPOSITORY = "kamwoh/orthohash"
SEED, BATCH, N_CLASSES, N_BITS = 0, 16, 10, 32
LOSS_CASES = [
    {"s": 8.0, "m": 0.2, "m_type": "cos", "quan": 0.0, "quan_type": "cs"},
    {"s": 8.0, "m": 0.2, "m_type": "arc", "quan": 0.0, "quan_type": "cs"},
    {"s": 8.0, "m": 0.3, "m_type": "cos", "quan": 0.1, "quan_type": "cs"},
    {"s": 4.0, "m": 0.2, "m_type": "cos", "quan": 0.5, "quan_type": "l1"},
    {"s": 8.0, "m": 0.5, "m_type": "arc", "quan": 0.2, "quan_type": "l2"},
]
#: (seed, n_classes, n_bits, maxtries): the reference's maxtries 10,000, and 100 so that the distance
#: threshold is lowered many times in a second
CODEBOOK_CASES = [(3, 4, 32, 10_000), (0, 10, 32, 100), (7, 20, 12, 100)]


def loss_inputs():
    generator = torch.Generator().manual_seed(SEED)
    code_logits = torch.randn(BATCH, N_BITS, generator=generator)
    codebook = torch.randn(N_CLASSES, N_BITS, generator=generator).sign()
    labels = torch.randint(0, N_CLASSES, (BATCH,), generator=generator)
    return code_logits, codebook, labels


def main() -> None:
    arguments = parse_arguments("OrthoHash", REPOSITORY, __doc__.split("\n")[0])
    networks = import_reference_package(arguments.reference_dir, "models.alexnet")
    losses = import_reference_package(arguments.reference_dir, "functions.loss.orthohash")
    training = import_reference_package(arguments.reference_dir, "scripts.train_hashing")

    code_logits, codebook, labels = loss_inputs()
    logits = networks.CosSim(N_BITS, N_CLASSES, codebook, learn_cent=False)(code_logits)
    onehot = F.one_hot(labels, N_CLASSES).float()
    cases = [{**case, "reference_loss": losses.OrthoHashLoss(**case)(logits, code_logits, onehot).item()}
             for case in LOSS_CASES]

    codebooks = []
    for seed, n_classes, n_bits, max_tries in CODEBOOK_CASES:
        torch.manual_seed(seed)
        with contextlib.redirect_stdout(io.StringIO()):  # get_codebook prints its progress
            reference_codebook = training.get_codebook(n_classes, n_bits, maxtries=max_tries)
        codebooks.append({"seed": seed, "n_classes": n_classes, "n_bits": n_bits, "max_tries": max_tries,
                          "reference_codebook": as_list(reference_codebook.to(torch.int64))})

    write_fixture(arguments.out, "OrthoHash", REPOSITORY, arguments.reference_dir,
                  "python benchmarks/parity/orthohash_reference_loss.py --reference-dir <checkout>", {
                      "loss": {
                          "reference_objects": "models/alexnet.py CosSim(nbit, nclass, codebook, learn_cent=False); "
                                               "functions/loss/orthohash.py OrthoHashLoss(**case)(logits, v, onehot)",
                          "code_logits": as_list(code_logits), "codebook": as_list(codebook),
                          "labels": as_list(labels), "cases": cases,
                      },
                      "codebooks": {
                          "reference_object": "scripts/train_hashing.py get_codebook(nclass, nbit, maxtries) after "
                                              "torch.manual_seed(seed)",
                          "cases": codebooks,
                      },
                  })


if __name__ == "__main__":
    main()
