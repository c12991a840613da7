"""The C allocator's settings for training loops on the CPU.

A training step allocates its activations and gradients afresh (autograd's outputs) and frees them
at its end. glibc's malloc serves blocks above its mmap threshold (128 KiB, rising to the largest
block freed so far) from fresh ``mmap`` pages and returns the top of the heap to the kernel beyond
its trim threshold, so every step of a 2000-wide head page-faults its megabytes of gradients in
again: thousands of minor page faults a step at glibc's initial thresholds, 1.5x LTHNet's step time
(``python benchmarks/bench_deep.py speed --allocator glibc-initial``; numbers in
benchmarks/results/deep_trainer_speed.md).

``keep_freed_memory`` raises both thresholds for the process, so freed blocks up to 32 MiB stay in
the heap and are reused by the next step; it changes which addresses hold a tensor, never a value.
Elsewhere than glibc (macOS, musl, Windows) it does nothing. (glibc raises its mmap threshold by
itself after the process first frees a large block, so how much this saves depends on what the
process did before; ``bench_deep.py speed --allocator glibc-initial`` pins the initial thresholds
to measure the worst case side by side.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap (glibc's largest mmap threshold on 64-bit: 32 MiB)
MMAP_THRESHOLD = 32 << 20
#: free memory kept at the top of the heap before it is returned to the kernel
TRIM_THRESHOLD = 512 << 20

#: glibc's initial thresholds (a fresh process's, before its first large free raises them)
GLIBC_INITIAL_THRESHOLD = 128 << 10

_STATE: dict = {}


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """glibc's mallopt(M_MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD) for this process (fixed
    values: glibc stops adjusting them); True when both were set, False elsewhere than glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    except (OSError, AttributeError):  # no mallopt: the allocator's defaults stay
        return False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True when they are set."""
    if "set" not in _STATE:
        _STATE["set"] = set_malloc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)
    return _STATE["set"]
