import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rsn2.process import configure_process

configure_process()  # as the rsn2 command does, before any test module imports torch or Numba


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker takes its share of the cores for torch's threads (the workers
    already run side by side; more threads each would only contend)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


SHARED_DATA = Path(os.environ.get("RSN2_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
"""The real datasets the tests read: ``$RSN2_DATA`` (the variable every rsn2 command reads), else ../shared/data."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the repository (../shared/data); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir() or not any(p.is_dir() for p in SHARED_DATA.iterdir()):
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set RSN2_DATA or place ../shared/data)")
    return SHARED_DATA


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "own-tasks"


@dataclass(frozen=True)
class RawModel:
    """The model file and its folder of raw files: iris.csv (species), diabetes.csv (progression),
    digits/<class>/*.png (digit), reviews.jsonl (review)."""

    path: Path
    folder: Path


@pytest.fixture(scope="session")
def raw_model(tmp_path_factory) -> RawModel:
    """Four tasks trained briefly (the answers are compared across paths, not scored)."""
    from rsn2.workflow import load_train_file, train_file

    folder = tmp_path_factory.mktemp("raw")
    for name in ("iris.csv", "diabetes.csv", "reviews.jsonl"):
        shutil.copy(EXAMPLES / name, folder / name)
    shutil.copytree(EXAMPLES / "digits", folder / "digits")
    config = {
        "network": {
            "input_shape": [64],
            "layers": [{"kind": "linear", "in_features": 64, "out_features": 64}, {"kind": "relu"}],
        },
        "tasks": {
            "species": {
                "kind": "classification",
                "data": {"csv": "iris.csv", "target": "species"},
                "keep_fraction": 0.2,
            },
            "digit": {
                "kind": "classification",
                "data": {"images": "digits", "channels": 1, "size": [8, 8]},
                "keep_fraction": 0.2,
            },
            "progression": {
                "kind": "regression",
                "data": {"csv": "diabetes.csv", "target": "progression"},
                "keep_fraction": 0.2,
            },
            "review": {
                "kind": "classification",
                "data": {"jsonl": "reviews.jsonl", "text": "text", "label": "sentiment", "length": 8, "vocabulary": 50},
                "keep_fraction": 0.2,
            },
        },
        "training": {"batch_size": 32, "max_epochs": 3},
    }
    (folder / "train.yaml").write_text(yaml.safe_dump(config))
    model = folder / "raw.safetensors"
    train_file(load_train_file(folder / "train.yaml"), model)
    return RawModel(model, folder)
