"""The vector width Numba compiles the kernels for: 512 bits on AVX-512 CPUs, Intel's included."""

from __future__ import annotations

import platform

import llvmlite.binding as llvm
import pytest

from rsn2.vector_width import PREFER_FULL_WIDTH, full_width_features
from tests.helpers import run_python

HOST = llvm.get_host_cpu_features()
HAS_AVX512 = platform.machine() in ("x86_64", "AMD64") and bool(HOST.get("avx512f", False))


def test_full_width_features_turn_the_256_bit_preference_off_only_with_avx512():
    assert full_width_features({"avx512f": True, "avx2": True}, "+avx2,+avx512f") == "+avx2,+avx512f,-prefer-256-bit"
    assert full_width_features({"avx512f": False, "avx2": True}, "+avx2,-avx512f") is None
    assert full_width_features({}, "") is None


def test_configuring_the_process_first_sets_numbas_features_from_the_host():
    out = run_python(
        """
        import rsn2
        rsn2.configure_process()
        import rsn2.inference, numba
        from rsn2.vector_width import vector_width_setting
        print(numba.config.CPU_FEATURES)
        print(vector_width_setting())
        """,
        NUMBA_CPU_FEATURES=None,
    )
    features, setting = out.splitlines()
    if HAS_AVX512:
        assert features == f"{HOST.flatten()},{PREFER_FULL_WIDTH}"
        assert setting == "512-bit vectors preferred (rsn2)"
    else:
        assert features == "None" and setting == "LLVM's default vector width for this CPU"


def test_a_users_features_and_an_earlier_numba_import_are_left_alone():
    script = """
        import numba
        from rsn2.vector_width import request_full_width_vectors, vector_width_setting
        print(request_full_width_vectors(), numba.config.CPU_FEATURES, vector_width_setting())
        """
    assert run_python(script, NUMBA_CPU_FEATURES=None) == "False None LLVM's default vector width for this CPU"
    configured = "from rsn2.process import configure_process; configure_process(); import rsn2.inference, numba; "
    out = run_python(configured + "print(numba.config.CPU_FEATURES)", NUMBA_CPU_FEATURES="+sse2")
    assert out == "+sse2"
    script = configured + "print(numba.config.CPU_NAME, repr(numba.config.CPU_FEATURES))"
    out = run_python(script, NUMBA_CPU_FEATURES=None, NUMBA_CPU_NAME="generic")  # a portable cache stays portable
    assert out == "generic ''"


@pytest.mark.skipif(not HAS_AVX512, reason="needs an x86 CPU with AVX-512F")
def test_tiles_compiled_for_sapphire_rapids_use_512_bit_registers(tmp_path):
    """LLVM's tuning for Sapphire Rapids alone keeps the tiles in 256-bit registers; the features
    rsn2 asks for give them the 512-bit registers they were written for."""
    script = """
        import re
        import numpy as np
        from rsn2.inference import tiles
        f32, u8 = np.float32, np.uint8
        tiles.step_rows(0, 1, np.zeros(1, u8), np.ones(1, f32), np.ones((2, 130), f32), np.zeros(130, f32), 130)
        asm = "".join(tiles.step_rows.inspect_asm().values())
        print(len(re.findall(r"vfmadd\\w*ps[^\\n]*zmm", asm)))
        """
    spr = {"NUMBA_CPU_NAME": "sapphirerapids", "NUMBA_SLP_VECTORIZE": None}
    requested = full_width_features(HOST, HOST.flatten())
    assert requested is not None
    full = run_python(script, NUMBA_CACHE_DIR=str(tmp_path / "full"), NUMBA_CPU_FEATURES=requested, **spr)
    llvm_default = run_python(script, NUMBA_CACHE_DIR=str(tmp_path / "llvm"), NUMBA_CPU_FEATURES=HOST.flatten(), **spr)
    assert int(llvm_default) == 0
    assert int(full) >= 64 // 16  # one 512-bit multiply-add per 16 values of a wide tile
