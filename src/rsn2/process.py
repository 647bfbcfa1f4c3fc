"""The process-wide settings rsn2's entry points make; importing rsn2 makes none of them.

The ``rsn2`` command, ``python -m benchmarks`` and the test suite call :func:`configure_process`
before they import PyTorch or Numba. A program that uses rsn2 as a library may call it first too
(``import rsn2; rsn2.configure_process()`` before anything imports torch), or set the variables
itself.
"""

from __future__ import annotations

import os

from rsn2.vector_width import request_full_width_vectors


def configure_process() -> None:
    """Idle OpenMP threads sleep instead of spinning, and Numba compiles for full-width vectors.

    - ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is set (``ACTIVE`` spins again): PyTorch's
      OpenMP threads otherwise spin while they wait for work, which slows every process on a busy
      machine (``docs/performance.md``, "Threads"). The OpenMP runtime reads it when torch loads it.
    - ``NUMBA_CPU_FEATURES`` with 512-bit vectors preferred on AVX-512 CPUs
      (:func:`rsn2.vector_width.request_full_width_vectors`; nothing where the user set a Numba target
      or Numba is already imported).

    Each takes effect only before torch (respectively Numba) is imported; calling it again changes nothing.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    request_full_width_vectors()
