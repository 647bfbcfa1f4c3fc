"""The vector width Numba compiles rsn2's kernels for: 512 bits wherever the CPU has AVX-512.

The register tiles of :mod:`rsn2.inference.tiles` hold 64 accumulators, four AVX-512 registers.
LLVM's tuning for Intel's AVX-512 CPUs prefers 256-bit vectors (its ``prefer-256-bit`` tuning flag),
which would halve them (``docs/decisions/vector-width.md``).

Numba builds its target machine once, when it is imported, from ``NUMBA_CPU_FEATURES`` or else the
host's features. :func:`request_full_width_vectors`, called by :func:`rsn2.process.configure_process`
(what rsn2's entry points run before they import Numba), sets that variable to the host's features
with the flag turned off (``-prefer-256-bit``). Where LLVM already uses 512-bit vectors this changes
no instruction. It does nothing where the CPU has no AVX-512F, where the user set
``NUMBA_CPU_FEATURES`` or ``NUMBA_CPU_NAME`` (their target is kept, ``generic`` for a portable cache
included; setting ``NUMBA_CPU_FEATURES`` to the host's features, as
``llvmlite.binding.get_host_cpu_features().flatten()`` gives them, compiles with LLVM's own widths)
or where Numba was imported first (the kernels then compile with LLVM's widths). Child processes
inherit the variable, as they inherit the host.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

PREFER_FULL_WIDTH = "-prefer-256-bit"
"""The LLVM subtarget feature, turned off, that lets the vectorizers use 512-bit registers."""

FEATURES_VARIABLE = "NUMBA_CPU_FEATURES"
TARGET_VARIABLES = (FEATURES_VARIABLE, "NUMBA_CPU_NAME")
"""Numba's settings of the CPU it compiles for: where the user set either, rsn2 leaves the target alone."""


def full_width_features(host: Mapping[str, bool], flattened: str) -> str | None:
    """The feature string Numba should compile with: ``flattened`` (the host's features as LLVM
    spells them, ``+avx512f,-amx-int8,...``) with 512-bit vectors preferred, or None where ``host``
    (feature name -> present) has no AVX-512F and the width question does not arise."""
    if not host.get("avx512f", False):
        return None
    return f"{flattened},{PREFER_FULL_WIDTH}"


def request_full_width_vectors() -> bool:
    """Ask Numba, not yet imported, to compile for 512-bit vectors where the CPU has AVX-512.

    Returns whether the request was made (the module docstring lists when it is not).
    """
    if "numba" in sys.modules or any(os.environ.get(name) is not None for name in TARGET_VARIABLES):
        return False
    import llvmlite.binding as llvm

    try:
        host = llvm.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot read this CPU's features: leave Numba's own detection
        return False
    features = full_width_features(host, host.flatten())
    if features is None:
        return False
    os.environ[FEATURES_VARIABLE] = features
    return True


def vector_width_setting() -> str:
    """What Numba's target machine was built with, in words, for benchmark reports."""
    import numba

    features = numba.config.CPU_FEATURES  # type: ignore[attr-defined]  # set at import by Numba
    if features is None:
        return "LLVM's default vector width for this CPU"
    if features.endswith(PREFER_FULL_WIDTH):
        return "512-bit vectors preferred (rsn2)"
    return f"{FEATURES_VARIABLE} as set outside rsn2"
