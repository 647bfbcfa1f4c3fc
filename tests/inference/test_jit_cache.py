"""The kernels' on-disk cache is keyed on every kernel module's source (rsn2.inference.jit): after an
edit to a helper that a cached function inlines from another file, the function is compiled afresh,
where Numba's own cache would load the code of the old helper."""

import pytest

from rsn2.inference import jit
from tests.helpers import run_python

HELPER = "from numba import njit\n\n\n@njit(inline='always')\ndef helper():\n    return {value}\n"
CALLER = (
    "from {module} import njit\nfrom helper import helper\n\n\n@njit(cache=True)\ndef call():\n    return helper()\n"
)
RUN = """
    import sys
    from pathlib import Path
    sys.path.insert(0, {folder!r})
    from rsn2.inference import jit
    jit.KERNEL_SOURCES = (Path({folder!r}) / "helper.py", Path({folder!r}) / "caller.py")
    import caller
    print(caller.call(), sum(caller.call.stats.cache_hits.values()))
"""


def _answers(folder, module):
    """What ``call()`` returns and how many cache hits, before an edit, again, and after the helper changes."""
    folder.mkdir()
    (folder / "caller.py").write_text(CALLER.format(module=module))
    out = []
    for value in (1, 1, 2):
        (folder / "helper.py").write_text(HELPER.format(value=value))
        out.append(run_python(RUN.format(folder=str(folder)), NUMBA_CACHE_DIR=None))
    return out


@pytest.mark.slow
def test_an_edit_to_an_inlined_helper_in_another_file_recompiles_the_cached_caller(tmp_path):
    assert _answers(tmp_path / "numba", "numba") == ["1 0", "1 1", "1 1"]  # Numba alone: the stale helper
    assert _answers(tmp_path / "rsn2", "rsn2.inference.jit") == ["1 0", "1 1", "2 0"]


def test_the_digest_covers_every_module_that_compiles_into_the_kernels(tmp_path):
    package = jit.KERNEL_SOURCES[0].parent
    numba_modules = {p for p in package.glob("*.py") if "numba" in p.read_text()}
    assert numba_modules <= set(jit.KERNEL_SOURCES), "a module importing numba is missing from KERNEL_SOURCES"
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    before = jit.source_digest((a, b))
    b.write_text("y = 3\n")
    assert jit.source_digest((a, b)) != before and jit.source_digest((a, b)) == jit.source_digest((a, b))
