"""The process-wide CPU settings of a fit: numba's thread-pool launch must not change torch's thread
count (common/threads.py), and training steps reuse freed memory (common/allocator.py). Each check
runs in a fresh interpreter, where neither has happened yet."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fresh(code: str) -> str:
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                               text=True, timeout=300, env={**os.environ, "NUMBA_NUM_THREADS": "2"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip()


def test_plain_numba_launch_does_raise_torchs_thread_count():
    """The hazard itself (numba's OpenMP layer on this platform): if this stops failing, numba or
    torch changed, and set_numba_threads is a harmless no-op."""
    out = _fresh("""
        import torch, numba
        torch.set_num_threads(1)
        assert torch.get_num_threads() == 1  # read before the launch, as the trainer does
        numba.set_num_threads(2)
        print(numba.threading_layer(), torch.get_num_threads())
    """)
    layer, torch_threads = out.split()
    if layer != "omp":
        pytest.skip(f"numba's threading layer here is {layer}, not OpenMP")
    assert torch_threads == "2"


def test_set_numba_threads_keeps_torchs_count():
    out = _fresh("""
        import torch, numba
        from common.threads import set_numba_threads
        torch.set_num_threads(1)
        set_numba_threads(2)
        print(torch.get_num_threads(), numba.get_num_threads())
        set_numba_threads(64)
        print(torch.get_num_threads(), numba.get_num_threads())
    """)
    assert out.splitlines() == ["1 2", "1 2"]


def test_a_single_threaded_deep_fit_stays_single_threaded():
    """The optimiser's kernel warm-up, the DPP prototypes and a whole LTHNet fit (both numba's
    parallel kernels inside) leave a one-thread fit on one torch thread."""
    out = _fresh("""
        import numpy as np, torch
        from methods.lthnet import LTHNet
        from methods._deep.optim import make_optimizer
        from methods._dpp import class_prototypes
        torch.set_num_threads(1)
        make_optimizer({"optimizer": "rmsprop", "learning_rate": 1e-3, "weight_decay": 0.0},
                       [torch.nn.Parameter(torch.zeros(4))])
        print(torch.get_num_threads())
        features = torch.rand(60, 8)
        labels = torch.arange(60) % 3
        centroids = torch.stack([features[labels == c].mean(0) for c in range(3)])
        class_prototypes(features, labels, centroids, 2)
        print(torch.get_num_threads())
        rng = np.random.default_rng(0)
        x = rng.normal(size=(90, 16)).astype(np.float32); y = np.arange(90) % 3
        LTHNet(n_bits=8, k=2, hidden_dim=32, n_epochs=2, batch_size=16, n_threads=1).fit(x, y)
        print(torch.get_num_threads())
    """)
    assert out.splitlines() == ["1", "1", "1"]


def test_training_steps_reuse_freed_memory():
    """common/allocator.py: once the trainer has set glibc's thresholds, a step of a 2000-wide head
    page-faults (nearly) nothing in; with glibc's defaults the same step faults in its gradients
    (hundreds of minor faults). Counted, not timed."""
    out = _fresh("""
        import platform, resource, sys, torch
        if platform.libc_ver()[0] != "glibc":
            print("skip"); sys.exit()
        sys.path.insert(0, "benchmarks")
        from bench_deep import _trainer, _batch_stream
        from methods.lthnet import LTHNet
        from common.allocator import keep_freed_memory
        torch.set_num_threads(1)
        features = torch.rand(512, 256).numpy(); labels = (torch.arange(512) % 10).numpy()
        def faults_per_step(method):
            trainer = _trainer(method, features, labels)
            stream, loss_sum = _batch_stream(trainer), torch.zeros((), dtype=torch.float64)
            for _ in range(10):
                trainer._train_step(*next(stream), loss_sum)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(40):
                trainer._train_step(*next(stream), loss_sum)
            return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40
        print(keep_freed_memory(), faults_per_step(LTHNet(n_bits=32, k=3, batch_size=32, n_threads=1)))
    """)
    if out == "skip":
        pytest.skip("not glibc")
    was_set, faults = out.split()
    assert was_set == "True"
    assert float(faults) < 20
