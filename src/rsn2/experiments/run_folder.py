"""Which run an output folder belongs to: ``DIR/run.json``, checked before anything in DIR is reused.

``rsn2 run CONFIG --out DIR`` resumes from the seeds and checkpoints it finds in DIR. Those must be
this run's: the same experiment (everything in the file that shapes training and evaluation), the
same smoke flag, training settings, selection options and training precision. The first run writes
the identity; a later run with another identity is refused before it loads data or touches a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from rsn2.errors import ResultsFolderError
from rsn2.experiments.config import ExperimentConfig
from rsn2.io import atomic_write_bytes

IDENTITY_FILE = "run.json"


def run_identity(config: ExperimentConfig, smoke: bool, training: dict[str, Any], precision: str) -> dict[str, Any]:
    """What makes two runs' seeds interchangeable. ``training``: the settings a checkpoint records."""
    shape = {
        "architecture": config.architecture,
        **({"options": dict(config.network_options)} if config.network_options else {}),
        **({"module": config.module, "input_shape": list(config.input_shape)} if config.module is not None else {}),
        "tasks": [dataclasses.asdict(t) for t in config.tasks],
        "stages": [list(s) for s in config.stages],
        "shared": [dataclasses.asdict(s) for s in config.shared],
        "ensembles": {k: list(v) for k, v in config.ensembles.items()},
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()
    return {
        "experiment": config.name,
        "experiment_digest": digest,
        "smoke": smoke,
        "training": {k: v for k, v in sorted(training.items())},
        "selection": dict(sorted(config.selection_config().to_dict().items())),
        "precision": precision,
    }


def claim(out: Path, identity: dict[str, Any]) -> None:
    """Make ``out`` this run's folder: write its identity, or check the one there.

    Raises:
        ResultsFolderError: ``out`` holds another run's identity, or seeds or checkpoints without one
            (made before identities were recorded); names what differs. Nothing is changed.
    """
    path = out / IDENTITY_FILE
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsFolderError(f"{path} is unreadable ({exc}); remove it or choose another --out") from None
        differ = [k for k in identity if found.get(k) != identity[k]] if isinstance(found, dict) else ["all"]
        if differ:
            detail = "; ".join(f"{k}: folder has {_short(found, k)}, this run {_short(identity, k)}" for k in differ)
            raise ResultsFolderError(
                f"{out} holds the files of another run ({detail}). Its seeds and checkpoints cannot be reused: "
                "choose another --out, or remove the folder to start over"
            )
        return
    earlier = [p for p in (out / "seeds", out / "checkpoints") if p.is_dir() and any(p.iterdir())]
    if earlier:
        raise ResultsFolderError(
            f"{out} holds {', '.join(p.name + '/' for p in earlier)} but no {IDENTITY_FILE} saying which run made "
            "them, so they cannot be checked for reuse: choose another --out, or remove the folder to start over"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(identity, indent=1) + "\n").encode())


def _short(identity: Any, key: str) -> str:
    value = identity.get(key) if isinstance(identity, dict) else None
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
