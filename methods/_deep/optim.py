"""The deep trainer's optimisers: ``torch.optim.RMSprop`` with its update fused into one pass over
memory on CPU (``FusedRMSprop``), and the choice of optimiser for a fit (``make_optimizer``).

Why: at the paper's batch size 8 a training step is bound by memory traffic, not arithmetic, and
PyTorch's foreach RMSprop makes six passes over every parameter (weight decay into a new gradient,
square_avg *= alpha, += (1 - alpha) g^2, sqrt into a new tensor, += eps, param -= lr g / avg): ~64
bytes moved per float32 parameter against the 20 of one pass (read param, grad, square_avg; write
param, square_avg). ``FusedRMSprop`` is that one pass (a numba kernel over each parameter, in
float32 like PyTorch's), for float32 CPU parameters without momentum or centring; everything else
falls back to PyTorch's own implementation.

The update is PyTorch's RMSprop (``torch.optim.RMSprop``, eps added outside the square root, weight
decay added to the gradient):

    g = grad + weight_decay * param
    square_avg = alpha * square_avg + (1 - alpha) * g^2
    param = param - lr * g / (sqrt(square_avg) + eps)

It differs from PyTorch's only by float32 rounding (PyTorch's vector kernels use fused
multiply-adds in places; tests/methods/test_deep_optim.py bounds the difference). State (``step``,
``square_avg``) has PyTorch's layout, so ``state_dict`` and learning-rate schedulers work unchanged.
"""
from __future__ import annotations

import numpy as np
import torch

from common.threads import set_numba_threads

#: tensors with fewer elements are updated by the serial kernel (no thread start-up); so is every
#: tensor of a single-threaded fit (numba's parallel loop on one thread costs ~4x the serial one)
PARALLEL_MIN_ELEMENTS = 1 << 16

_KERNELS: dict = {}


def _kernels():
    """(serial, parallel) numba kernels, or None when numba is missing or fails (compiled, or loaded
    from numba's disk cache, on first use)."""
    if "kernels" not in _KERNELS:
        try:
            from ._optim_kernel import rmsprop_parallel, rmsprop_serial

            # launching numba's pool must not change torch's thread count (common/threads.py)
            set_numba_threads(torch.get_num_threads())
            one = np.ones(1, dtype=np.float32)
            for kernel in (rmsprop_serial, rmsprop_parallel):  # compile on the types used in step()
                kernel(one.copy(), one.copy(), one.copy(), *(np.float32(0.0),) * 4)
            _KERNELS["kernels"] = (rmsprop_serial, rmsprop_parallel)
        except Exception:  # numba missing or broken on this platform: PyTorch's RMSprop instead
            _KERNELS["kernels"] = None
    return _KERNELS["kernels"]


def fused_rmsprop_supported(parameters) -> bool:
    """Whether every parameter is a float32 CPU tensor (the fused kernel's domain)."""
    parameters = list(parameters)
    if not all(p.device.type == "cpu" and p.dtype == torch.float32 for p in parameters):
        return False
    return _kernels() is not None


class FusedRMSprop(torch.optim.RMSprop):
    """``torch.optim.RMSprop`` (no momentum, not centred) with a one-pass numba update for float32
    CPU parameters; see the module docstring."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=0,
                         centered=False, foreach=False)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        serial, parallel = _kernels()
        threads = torch.get_num_threads()  # the fit's n_threads, like torch's own kernels
        if threads > 1:
            set_numba_threads(threads)
        for group in self.param_groups:
            lr, alpha = np.float32(group["lr"]), np.float32(group["alpha"])
            eps, weight_decay = np.float32(group["eps"]), np.float32(group["weight_decay"])
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("FusedRMSprop does not support sparse gradients.")
                state = self.state[param]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0)
                    state["square_avg"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
                state["step"] += 1
                grad = param.grad if param.grad.is_contiguous() else param.grad.contiguous()
                if not param.is_contiguous():  # pragma: no cover - module parameters are contiguous
                    raise RuntimeError("FusedRMSprop needs contiguous parameters.")
                kernel = parallel if threads > 1 and param.numel() >= PARALLEL_MIN_ELEMENTS else serial
                kernel(param.view(-1).numpy(), grad.view(-1).numpy(), state["square_avg"].view(-1).numpy(),
                       lr, alpha, eps, weight_decay)
        return loss


def make_optimizer(settings: dict, parameters) -> torch.optim.Optimizer:
    """The optimiser of a fit: ``settings["optimizer"]`` with its learning rate and weight decay.
    RMSprop on CPU float32 parameters is ``FusedRMSprop``; elsewhere PyTorch's foreach (GPU default)
    or fused (Adam, SGD on CPU) implementations."""
    parameters = list(parameters)
    name, lr, weight_decay = settings["optimizer"], settings["learning_rate"], settings["weight_decay"]
    on_cpu = all(p.device.type == "cpu" for p in parameters)
    if name == "rmsprop":
        if fused_rmsprop_supported(parameters):
            return FusedRMSprop(parameters, lr=lr, weight_decay=weight_decay)
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay, foreach=True)
    fused = {"fused": True} if on_cpu else {"foreach": True}
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, **fused)
    return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay, momentum=0.9, **fused)
