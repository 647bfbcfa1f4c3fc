"""Checks of the mappings read from files (YAML experiment, training and benchmark files; JSON specs):
one set, used everywhere, each raising the error type its caller documents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rsn2.errors import ConfigError, RSN2Error


def require_mapping(value: Any, where: str, error: type[RSN2Error] = ConfigError) -> Mapping[str, Any]:
    """``value`` if it is a mapping; else ``error`` naming ``where`` (a key path) and the type found."""
    if not isinstance(value, Mapping):
        raise error(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def check_keys(
    data: Mapping[str, Any], allowed: Mapping[str, bool], where: str, error: type[RSN2Error] = ConfigError
) -> None:
    """Refuse keys of ``data`` not in ``allowed`` and missing required ones (``allowed[key]`` True),
    with ``error`` naming ``where``, the keys at fault and the keys allowed."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(k for k, required in allowed.items() if required and k not in data)
    if missing:
        raise error(f"{where}: missing key(s) {missing}")


def require_choice(value: Any, allowed: tuple[str, ...], where: str, error: type[RSN2Error] = ConfigError) -> str:
    """``value`` if it is one of ``allowed``; else ``error`` listing them."""
    if value not in allowed:
        raise error(f"{where} must be one of {list(allowed)}, got {value!r}")
    return str(value)
