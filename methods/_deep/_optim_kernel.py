"""The compiled one-pass RMSprop update of ``FusedRMSprop`` (methods/_deep/optim.py), numba kernels
over flat float32 arrays: serial for small tensors, parallel (prange) for large ones. NumPy's error
model (no zero-division check) keeps the loops vectorised."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always", error_model="numpy")
def _update_one(param, grad, square_avg, i, lr, alpha, one_minus_alpha, eps, weight_decay):
    g = grad[i] + weight_decay * param[i]
    v = alpha * square_avg[i] + one_minus_alpha * (g * g)
    square_avg[i] = v
    param[i] = param[i] - lr * (g / (np.sqrt(v) + eps))


@numba.njit(cache=True, error_model="numpy")
def rmsprop_serial(param, grad, square_avg, lr, alpha, eps, weight_decay):
    one_minus_alpha = np.float32(1.0) - alpha
    for i in range(param.shape[0]):
        _update_one(param, grad, square_avg, i, lr, alpha, one_minus_alpha, eps, weight_decay)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def rmsprop_parallel(param, grad, square_avg, lr, alpha, eps, weight_decay):
    one_minus_alpha = np.float32(1.0) - alpha
    for i in numba.prange(param.shape[0]):
        _update_one(param, grad, square_avg, i, lr, alpha, one_minus_alpha, eps, weight_decay)

