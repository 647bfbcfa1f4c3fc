"""The README's Python example must run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README has lost its python examples"
    monkeypatch.chdir(tmp_path)
    own: dict = {}
    exec(compile(blocks[0], str(README), "exec"), own)  # bring your own model
    assert own["logits"].shape == (96, 10)
    import torch
    from torch import nn

    import rsn2

    fresh = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    back = rsn2.load_model(tmp_path / "mine.safetensors", body=fresh)
    assert torch.equal(back(own["images"], task="objects"), own["net"].eval()(own["images"], task="objects"))
    exec(compile(blocks[1], str(README), "exec"), {})
    assert (tmp_path / "two-tasks.safetensors").is_file()


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
