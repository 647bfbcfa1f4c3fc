"""Reading the YAML files users write (experiment files, training files) with one clear error each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rsn2.errors import ConfigError


def read_yaml_file(path: Path, what: str) -> Any:
    """The parsed YAML of ``path`` (``what`` names the kind of file in messages: "an experiment file").

    Raises :class:`~rsn2.errors.ConfigError` for a missing file, a folder, text that is not UTF-8,
    an unreadable file and invalid YAML, each saying which.
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; give the path of {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; give the path of {what} (a .yaml file)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
