from pathlib import Path

import pytest

from benchmarks.selection_screen import VARIANTS, main

EXP1 = Path(__file__).resolve().parents[2] / "experiments" / "exp1.yaml"


def test_screen_refuses_unknown_variants(capsys):
    with pytest.raises(SystemExit):
        main([str(EXP1), "--data-dir", "x", "--variants", "default,psychic"])
    assert "unknown variant(s) ['psychic']" in capsys.readouterr().err


def test_every_variant_names_only_known_options():
    import dataclasses

    from rsn2.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, options in VARIANTS.items():
        assert set(options) <= fields | {"method", "rescale", "allocation", "reinit"}, name


@pytest.mark.real_data
@pytest.mark.slow
def test_screen_trains_each_variant_beside_the_control(shared_data, tmp_path):
    out, js = tmp_path / "screen.md", tmp_path / "screen.json"
    args = [str(EXP1), "--data-dir", str(shared_data), "--variants", "paper,row_balanced"]
    args += ["--train-samples", "600", "--epochs", "1", "--out", str(out), "--json", str(js)]
    assert main(args) == 0
    text = out.read_text()
    assert text.startswith(f"Command: `python -m benchmarks.selection_screen {' '.join(args)}`")
    assert "| dense control |" in text and "| paper |" in text and "| row_balanced |" in text
    import json

    results = json.loads(js.read_text())
    assert set(results["variants"]) == {"paper", "row_balanced"}
    for r in results["variants"].values():
        assert set(r["metric"]) == {"f0", "f1", "f2", "f3", "f4"}
        assert all(0.0 <= v <= 1.0 for v in r["metric"].values())
