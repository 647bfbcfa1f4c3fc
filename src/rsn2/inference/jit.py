"""``njit`` for rsn2's kernels: Numba's, with an on-disk cache keyed on the source of every kernel module.

Numba keys a cached function on its own source file only. A kernel in :mod:`~rsn2.inference.kernels`
inlines the tiles of :mod:`~rsn2.inference.tiles`, the row sums of :mod:`~rsn2.inference.row_sums`
(both generated from templates) and :func:`~rsn2.inference.values.value_at`: after an edit to one of
those, Numba would load the kernel compiled from the old code. Here every cached function's key also
holds a digest of :data:`KERNEL_SOURCES` (the files the compiled code is made from), so an edit to any
of them compiles every kernel afresh, and the files of the old code are overwritten.

Numba's own rules still decide where the cache lives (``NUMBA_CACHE_DIR``, the package's
``__pycache__``, or the user-wide cache) and what else keys it (signature, CPU, Numba version).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
from numba.core.caching import (
    CompileResultCacheImpl,
    FunctionCache,
    InTreeCacheLocator,
    UserProvidedCacheLocator,
    UserWideCacheLocator,
)

_HERE = Path(__file__).resolve().parent
KERNEL_SOURCES: tuple[Path, ...] = tuple(
    _HERE / f"{name}.py" for name in ("jit", "op_table", "values", "tiles", "row_sums", "kernels", "fused_run")
)
"""Every module whose code or constants Numba compiles into rsn2's kernels (and this one)."""


def source_digest(paths: tuple[Path, ...]) -> str:
    """SHA-256 over the bytes of ``paths``, in order (a file's name counts, so renaming one counts too)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def _kernel_digest(paths: tuple[Path, ...]) -> str:
    return source_digest(paths)


class _KeyedOnKernelSources:
    """A Numba cache locator mixin: the source stamp of the function's file plus the kernel digest."""

    def get_source_stamp(self) -> Any:
        return (super().get_source_stamp(), _kernel_digest(KERNEL_SOURCES))  # type: ignore[misc]


class _UserProvided(_KeyedOnKernelSources, UserProvidedCacheLocator):  # type: ignore[misc]
    pass


class _InTree(_KeyedOnKernelSources, InTreeCacheLocator):  # type: ignore[misc]
    pass


class _UserWide(_KeyedOnKernelSources, UserWideCacheLocator):  # type: ignore[misc]
    pass


class _KernelCacheImpl(CompileResultCacheImpl):  # type: ignore[misc]
    _locator_classes = [_UserProvided, _InTree, _UserWide]  # noqa: RUF012  (Numba's order, no IPython, zip)


class KernelCache(FunctionCache):  # type: ignore[misc]
    """Numba's function cache, its index keyed on the kernel digest too."""

    _impl_class = _KernelCacheImpl


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)``; with ``cache=True`` the compiled code is cached on disk under a key
    that holds the digest of :data:`KERNEL_SOURCES`."""
    cache = options.pop("cache", False)

    def decorate(func: Callable[..., Any]) -> Any:
        dispatcher = numba.njit(**options)(func)
        if cache:
            dispatcher._cache = KernelCache(func)  # what Dispatcher.enable_caching sets, with our key
        return dispatcher

    return decorate
