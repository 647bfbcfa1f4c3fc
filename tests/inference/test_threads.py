"""Numba's thread count follows PyTorch's, in every thread that runs the sparse kernels, and starting
Numba's pool leaves PyTorch's count as it was."""

import subprocess
import sys
import threading

import numba
import torch

from rsn2.inference import kernels


def _numba_threads_after_prepare(torch_threads: int) -> int:
    previous = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        kernels.prepare_threads()
        assert torch.get_num_threads() == torch_threads
        return numba.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def test_numba_follows_torch_thread_count_changes():
    most = numba.config.NUMBA_NUM_THREADS
    assert _numba_threads_after_prepare(1) == 1
    assert _numba_threads_after_prepare(most) == most
    assert _numba_threads_after_prepare(1) == 1  # back again: the cached value is not trusted blindly


def test_each_thread_sets_its_own_count():
    seen = []
    torch_threads = torch.get_num_threads()
    kernels.prepare_threads()

    def worker():
        torch.set_num_threads(torch_threads)
        kernels.prepare_threads()
        seen.append(numba.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))]


def test_starting_numbas_pool_keeps_torchs_thread_count():
    """In a fresh process (the pool starts once per process): PyTorch set to one thread stays at one."""
    code = (
        "import torch, numba\n"
        "from rsn2.inference import kernels\n"
        "torch.set_num_threads(1)\n"
        "assert torch.get_num_threads() == 1\n"
        "kernels.prepare_threads()\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1"]
