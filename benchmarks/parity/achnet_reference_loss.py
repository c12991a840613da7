"""Parity fixture for ACHNet: runs KUXN98/ACHNet's losses, class centres and network on seeded inputs
and writes tests/methods/data/parity_achnet.json, which tests/methods/test_achnet.py checks ours against.

    git clone https://github.com/KUXN98/ACHNet /tmp/ACHNet
    python benchmarks/parity/achnet_reference_loss.py --reference-dir /tmp/ACHNet

Three checks, each on the CPU:
* loss (tools/loss.py ``CELoss``, ``CenConLoss``): a batch of 16 relaxed codes (32 bits), 10 class
  logits, 10 class centres and labels (stored as lists); the fixture holds CE, CCH and
  lambda CE + CCH for lambda = 0.2 (tools/model_train.py line 69 combines them so).
* centres (tools/utils.py ``generate_hash_center``, whose 100 classes are fixed): 250 codes of 8 bits
  with every one of the 100 classes present, fed in batches of 8 through a stand-in model that
  returns its input as the codes; the fixture holds the reference's (100, 8) centres.
* network (network/resnet.py ``Resnet34``, feature_dim 16, 32 bits, 10 classes; its ResNet34 trunk
  replaced by an identity, since the checked part starts at the pooled 512-d feature): parameters
  and a (4, 512) input drawn by a seeded recipe (in the parameter order of the reference's
  ``named_parameters``, which our head shares); the fixture holds the codes and logits.
The large inputs are given by their recipe and a checksum, the reference's outputs as lists.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from parity_common import as_list, import_reference, parse_arguments, write_fixture

REPOSITORY = "KUXN98/ACHNet"
LOSS_SEED, CENTRE_SEED, NETWORK_SEED = 0, 1, 2
BATCH, N_CLASSES, N_BITS = 16, 10, 32
CENTRE_ITEMS, CENTRE_CLASSES, CENTRE_BITS, CENTRE_BATCH = 250, 100, 8, 8
NETWORK_ITEMS, NETWORK_HIDDEN, NETWORK_IN = 4, 16, 512
PARAMETER_SCALE = 0.1


def loss_inputs():
    generator = torch.Generator().manual_seed(LOSS_SEED)
    codes = torch.tanh(2.0 * torch.randn(BATCH, N_BITS, generator=generator))
    logits = 3.0 * torch.randn(BATCH, N_CLASSES, generator=generator)
    centres = torch.tanh(torch.randn(N_CLASSES, N_BITS, generator=generator))
    labels = torch.randint(0, N_CLASSES, (BATCH,), generator=generator)
    return codes, logits, centres, labels


def centre_inputs():
    """(codes (250, 8), labels (250,)): every class of 100 present, in a seeded order."""
    generator = torch.Generator().manual_seed(CENTRE_SEED)
    extra = torch.randint(0, CENTRE_CLASSES, (CENTRE_ITEMS - CENTRE_CLASSES,), generator=generator)
    labels = torch.cat([torch.arange(CENTRE_CLASSES), extra])
    labels = labels[torch.randperm(CENTRE_ITEMS, generator=generator)]
    codes = torch.tanh(torch.randn(CENTRE_ITEMS, CENTRE_BITS, generator=generator))
    return codes, labels


def network_parameters(shapes):
    """Seeded parameters for the given shapes, in order, then the (4, 512) input."""
    generator = torch.Generator().manual_seed(NETWORK_SEED)
    parameters = [PARAMETER_SCALE * torch.randn(shape, generator=generator) for shape in shapes]
    inputs = torch.randn(NETWORK_ITEMS, NETWORK_IN, generator=generator)  # both signs: the ReLU matters
    return parameters, inputs


def checksum(tensor: torch.Tensor) -> list[float]:
    values = tensor.double()
    return [values.sum().item(), values.pow(2).sum().item()]


class _CodesAreTheInput(nn.Module):
    """Stand-in model for ``generate_hash_center``: (codes, assignments, direct) = (input, None, None)."""

    def forward(self, data):
        return data, None, None


def main() -> None:
    arguments = parse_arguments("ACHNet", REPOSITORY, __doc__.split("\n")[0])
    loss_module = import_reference(arguments.reference_dir, "tools/loss.py", "reference_achnet_loss")
    utils_module = import_reference(arguments.reference_dir, "tools/utils.py", "reference_achnet_utils")
    network_module = import_reference(arguments.reference_dir, "network/resnet.py", "reference_achnet_resnet")

    codes, logits, centres, labels = loss_inputs()
    onehot = F.one_hot(labels, N_CLASSES).float()
    ce = loss_module.CELoss()(logits, onehot).item()
    cch = loss_module.CenConLoss()(codes, centres, onehot).item()

    centre_codes, centre_labels = centre_inputs()
    loader = [(centre_codes[start:start + CENTRE_BATCH],
               F.one_hot(centre_labels[start:start + CENTRE_BATCH], CENTRE_CLASSES).float(),
               torch.arange(start, min(start + CENTRE_BATCH, CENTRE_ITEMS)))
              for start in range(0, CENTRE_ITEMS, CENTRE_BATCH)]
    reference_centres = utils_module.generate_hash_center(_CodesAreTheInput(), loader, torch.device("cpu"),
                                                          CENTRE_BITS)

    trunk = nn.Sequential(nn.Identity(), nn.Identity(), nn.Identity())  # children()[:-2] = one identity
    network = network_module.Resnet34(trunk, NETWORK_HIDDEN, N_BITS, N_CLASSES)
    names = [name for name, _ in network.named_parameters()]
    shapes = [list(parameter.shape) for _, parameter in network.named_parameters()]
    parameters, network_input = network_parameters(shapes)
    with torch.no_grad():
        for (_, parameter), value in zip(network.named_parameters(), parameters):
            parameter.copy_(value)
        network.eval()
        network_codes, network_logits, _ = network(network_input[:, :, None, None])

    write_fixture(arguments.out, "ACHNet", REPOSITORY, arguments.reference_dir,
                  "python benchmarks/parity/achnet_reference_loss.py --reference-dir <checkout>", {
                      "loss": {
                          "reference_objects": "tools/loss.py CELoss()(assignments, onehot), "
                                               "CenConLoss()(hashcode, center, onehot)",
                          "codes": as_list(codes), "logits": as_list(logits), "centres": as_list(centres),
                          "labels": as_list(labels),
                          "reference_ce": ce, "reference_cch": cch,
                          "contrastive_balance": 0.2, "reference_total": 0.2 * ce + cch,
                      },
                      "centres": {
                          "reference_object": "tools/utils.py generate_hash_center(model, loader, device, 8)",
                          "recipe": (f"torch.Generator().manual_seed({CENTRE_SEED}): extra = randint(0, 100, "
                                     f"({CENTRE_ITEMS - CENTRE_CLASSES},)); labels = cat(arange(100), extra)"
                                     f"[randperm({CENTRE_ITEMS})]; codes = tanh(randn({CENTRE_ITEMS}, "
                                     f"{CENTRE_BITS})); batches of {CENTRE_BATCH} in row order"),
                          "checksum_codes": checksum(centre_codes), "checksum_labels": checksum(centre_labels),
                          "reference_centres": as_list(reference_centres),
                      },
                      "network": {
                          "reference_object": f"network/resnet.py Resnet34(identity trunk, {NETWORK_HIDDEN}, "
                                              f"{N_BITS}, {N_CLASSES}), eval mode, input (4, 512, 1, 1)",
                          "recipe": (f"torch.Generator().manual_seed({NETWORK_SEED}): every parameter in "
                                     f"order {PARAMETER_SCALE} * randn(shape), then input randn("
                                     f"{NETWORK_ITEMS}, {NETWORK_IN})"),
                          "hidden_dim": NETWORK_HIDDEN, "n_bits": N_BITS, "n_classes": N_CLASSES,
                          "parameter_names": names, "parameter_shapes": shapes,
                          "checksum_input": checksum(network_input),
                          "reference_codes": as_list(network_codes), "reference_logits": as_list(network_logits),
                      },
                  })


if __name__ == "__main__":
    main()
