"""Thread counts of the compiled kernels, kept apart from PyTorch's.

numba's default threading layer on Linux is OpenMP (libgomp, the same library PyTorch's CPU build
uses for its intra-op threads). When numba launches its thread pool -- on the first parallel kernel
call or the first ``numba.set_num_threads`` -- PyTorch can afterwards read numba's pool size (all
cores) as its own thread count, from the same OpenMP setting (seen with torch 2.13 and numba 0.68
whenever torch's count had been read before the launch, as the trainer does; test:
tests/methods/test_cpu_runtime.py). A cell that asked for one torch thread then runs every torch
operation on all cores (and leaves an OpenMP worker spinning at its barrier between them): with one
cell per core, twice as many busy threads as cores. On the 2-core machine a digits IF 1 LTHNet cell
took 140 s beside another one and 32 s with this fix.

``set_numba_threads`` is the one way the project sets numba's thread count: it launches numba's
pool, sets the count, and puts PyTorch's thread count back to what it was.
"""
from __future__ import annotations

import sys


def set_numba_threads(n_threads: int) -> None:
    """numba's parallel kernels use ``n_threads`` threads (at most numba's pool size); PyTorch's
    intra-op thread count (when torch is imported) is left as it was."""
    import numba

    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    if torch is not None and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
