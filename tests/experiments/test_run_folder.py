"""An output folder belongs to one run: another run's seeds and checkpoints are never reused (#15, item 4)."""

import json
from pathlib import Path

import pytest

from rsn2.cli.main import main
from rsn2.errors import ResultsFolderError
from rsn2.experiments import load_config
from rsn2.experiments.run_folder import IDENTITY_FILE, claim, run_identity
from rsn2.experiments.runner import run_experiment

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
TRAINING = {"batch_size": 512, "max_epochs": 100}


def _identity(name: str = "exp3", smoke: bool = False, precision: str = "fp32", **training):
    return run_identity(load_config(EXPERIMENTS / f"{name}.yaml"), smoke, {**TRAINING, **training}, precision)


def test_first_claim_writes_the_identity_and_the_same_run_may_resume(tmp_path):
    claim(tmp_path, _identity())
    assert json.loads((tmp_path / IDENTITY_FILE).read_text())["experiment"] == "exp3"
    claim(tmp_path, _identity())  # the same run again: allowed


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (_identity("exp5"), 'experiment: folder has "exp3", this run "exp5"'),
        (_identity(smoke=True), "smoke: folder has false, this run true"),
        (_identity(precision="bf16"), "precision"),
        (_identity(max_epochs=3), "training"),
    ],
)
def test_another_runs_folder_is_refused_naming_what_differs(tmp_path, other, named):
    claim(tmp_path, _identity())
    before = (tmp_path / IDENTITY_FILE).read_bytes()
    with pytest.raises(ResultsFolderError, match="holds the files of another run") as info:
        claim(tmp_path, other)
    assert named in str(info.value)
    assert (tmp_path / IDENTITY_FILE).read_bytes() == before


def test_the_selection_options_are_part_of_the_identity(tmp_path):
    exp3 = load_config(EXPERIMENTS / "exp3.yaml")
    carveout = load_config(EXPERIMENTS / "ablations" / "exp3-carveout.yaml")
    a, b = run_identity(exp3, False, TRAINING, "fp32"), run_identity(carveout, False, TRAINING, "fp32")
    assert a["experiment_digest"] == b["experiment_digest"] and a["selection"] != b["selection"]


def test_seeds_without_an_identity_are_not_reused(tmp_path):
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "seed0.json").write_text("{}")
    with pytest.raises(ResultsFolderError, match=r"holds seeds/ but no run\.json"):
        claim(tmp_path, _identity())
    assert not (tmp_path / IDENTITY_FILE).exists()


def test_run_refuses_before_reading_any_data(tmp_path):
    claim(tmp_path, _identity("exp3", smoke=True, **{"batch_size": 64, "max_epochs": 1}))
    with pytest.raises(ResultsFolderError, match="another run"):  # no data dir exists: refused first
        run_experiment(load_config(EXPERIMENTS / "exp5.yaml"), tmp_path, data_dir=tmp_path / "no-data")
    assert sorted(p.name for p in tmp_path.iterdir()) == [IDENTITY_FILE]


def test_cli_says_what_differs_without_a_traceback(tmp_path, capsys):
    claim(tmp_path, _identity())
    code = main(["run", str(EXPERIMENTS / "exp5.yaml"), "--out", str(tmp_path), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "holds the files of another run" in err and "Traceback" not in err
