"""The package version (kept in sync with pyproject.toml; a module of its own so that any room can
import it without importing the package's public API)."""

__version__ = "0.2.0"
