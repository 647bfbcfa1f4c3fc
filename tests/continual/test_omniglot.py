"""Omniglot and the Omniglot Rotation stream (GPM's and WSN's): reading, checking by content, building
the tasks; synthetic zips here, the real dataset where ../shared/data is present."""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from rsn2.continual.config import parse_benchmark_config
from rsn2.continual.streams import build_stream, rotation_tasks
from rsn2.data import load_omniglot
from rsn2.data.catalog import OMNIGLOT_CONTENT_SHA256
from rsn2.data.datasets import OmniglotCharacters
from rsn2.errors import ConfigError, DataError

from .helpers_cl import tiny_config


def _png(value: int) -> bytes:
    image = Image.fromarray(np.full((105, 105), value, dtype=np.uint8)).convert("1")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _write_zips(folder, drawings=(2, 2)):
    """Two tiny Omniglot parts: background with alphabets B (2 characters) and A (1), evaluation with one."""
    folder.mkdir(parents=True, exist_ok=True)
    layout = {
        "images_background": ["B/character02", "A/character01", "B/character01"],
        "images_evaluation": ["C/character01"],
    }
    for (part, characters), n in zip(layout.items(), drawings, strict=True):
        with zipfile.ZipFile(folder / f"{part}.zip", "w") as z:
            for c, character in enumerate(characters):
                for d in range(n):
                    z.writestr(f"{part}/{character}/{c:04d}_{d:02d}.png", _png(255 * ((c + d) % 2)))
    return folder


def test_characters_are_read_background_first_in_sorted_order_and_checked_by_content(tmp_path):
    chars = load_omniglot(source=_write_zips(tmp_path / "o"), size=8)
    assert [n.split("/", 1)[1] for n in chars.names] == [
        "A/character01",
        "B/character01",
        "B/character02",
        "C/character01",
    ]
    assert chars.x.shape == (4, 2, 1, 8, 8) and chars.x.dtype == torch.float32
    assert set(torch.unique(chars.x).tolist()) <= {0.0, 1.0}
    data_dir = tmp_path / "data"
    _write_zips(data_dir / "omniglot")  # the right file names, other content: refused by content
    with pytest.raises(DataError, match="does not hold the official PNGs"):
        load_omniglot(data_dir)
    from rsn2.data.location import locate

    with pytest.raises(DataError, match="does not hold the known Omniglot"):  # what `rsn2 data verify` runs
        locate("omniglot", data_dir)


def test_characters_with_different_numbers_of_drawings_are_refused(tmp_path):
    with pytest.raises(DataError, match="different numbers of drawings"):
        load_omniglot(source=_write_zips(tmp_path / "o", drawings=(2, 3)))


def _characters(n: int = 24, side: int = 6) -> OmniglotCharacters:
    """``n`` synthetic characters whose every pixel encodes (character, drawing, row, column)."""
    x = torch.arange(n * 20 * side * side, dtype=torch.float32).view(n, 20, 1, side, side)
    return OmniglotCharacters(x, [f"images_background/X/character{i:02d}" for i in range(n)])


def test_rotation_tasks_are_built_as_wsn_builds_them():
    chars = _characters()
    tasks = rotation_tasks(chars, tasks=2, classes_per_task=12, seed=0)
    assert [t.name for t in tasks] == ["omniglot0", "omniglot1"] and tasks[1].classes == chars.names[12:]
    for i, task in enumerate(tasks):
        assert task.x_train.shape == (720, 1, 6, 6) and task.x_test.shape == (240, 1, 6, 6)
        assert torch.bincount(task.y_train).tolist() == [60] * 12 and torch.bincount(task.y_test).tolist() == [20] * 12
        for label in range(12):  # a character's 80 samples: its 20 drawings in 4 rotations, split 60/20
            source = chars.x[12 * i + label]
            expected = torch.cat([torch.rot90(source, k, dims=(-2, -1)) for k in range(4)])
            got = torch.cat([task.x_train[task.y_train == label], task.x_test[task.y_test == label]])
            assert sorted(map(tuple, got.flatten(1).tolist())) == sorted(map(tuple, expected.flatten(1).tolist()))
    again, other = rotation_tasks(chars, 2, 12, seed=0), rotation_tasks(chars, 2, 12, seed=1)
    assert torch.equal(again[0].x_train, tasks[0].x_train) and not torch.equal(other[0].x_train, tasks[0].x_train)
    with pytest.raises(ConfigError, match="need 36; Omniglot has 24"):
        rotation_tasks(chars, tasks=3, classes_per_task=12, seed=0)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        ({"kind": "rotation", "dataset": "mnist"}, "only Omniglot does"),
        ({"kind": "split", "dataset": "omniglot", "classes_per_task": 12}, "Omniglot runs as kind rotation"),
    ],
)
def test_omniglot_runs_only_as_a_rotation_stream(stream, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(stream=stream)


@pytest.mark.real_data
@pytest.mark.slow
def test_the_real_omniglot_rotation_stream(shared_data):
    chars = load_omniglot(shared_data)  # checked against OMNIGLOT_CONTENT_SHA256 inside
    assert chars.x.shape == (1623, 20, 1, 32, 32) and len(OMNIGLOT_CONTENT_SHA256) == 64
    assert sum(n.startswith("images_background/") for n in chars.names) == 964
    assert float(chars.x.mean()) > 0.8  # white background, dark strokes
    config = parse_benchmark_config(
        {
            **tiny_config().to_dict(),
            "stream": {"kind": "rotation", "dataset": "omniglot"},
            "network": {"module": "m:f", "input_shape": [1, 32, 32]},
        }
    )
    stream = build_stream("rotation", "omniglot", flatten=False, seed=0, data_dir=shared_data)
    assert config.stream.kind == "rotation" and len(stream) == 100
    assert all(t.x_train.shape == (720, 1, 32, 32) and t.x_test.shape == (240, 1, 32, 32) for t in stream)
    assert stream[99].classes[-1] == chars.names[1199]
