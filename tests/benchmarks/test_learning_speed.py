"""The learning-speed comparison runs end to end on the real Fashion-MNIST and writes its table."""

import pytest

from benchmarks.learning_speed import VARIANTS, main

pytestmark = pytest.mark.real_data


@pytest.mark.slow
def test_learning_speed_writes_one_row_per_variant(shared_data, tmp_path):
    out = tmp_path / "speed.md"
    args = ["--data-dir", str(shared_data), "--samples", "300", "--epochs", "2", "--seeds", "1", "--out", str(out)]
    assert main(args) == 0
    text = out.read_text()
    assert text.startswith(f"Command: `python -m benchmarks.learning_speed {' '.join(args)}`")
    rows = [line for line in text.splitlines() if line.startswith("| 0 |")]
    assert [row.split(" | ")[1] for row in rows] == list(VARIANTS)
    for row in rows:
        losses = row.split(" | ")[2].split(", ")
        accuracy = float(row.split(" | ")[3].rstrip("%"))
        assert len(losses) == 2 and 0 < accuracy <= 100
