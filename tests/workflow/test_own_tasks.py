"""Training files for your own tasks: every format, the errors a new user meets, add-task's promises."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rsn2.cli.main import main
from rsn2.errors import CapacityError, ConfigError, DataError
from rsn2.io import read_metadata
from rsn2.workflow import add_task_file, load_train_file, predict_file, train_file

FAST = {"batch_size": 16, "max_epochs": 3, "patience": 2}


def _write(folder: Path, name: str, content: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(content))
    return path


@pytest.fixture
def files(tmp_path):
    """A CSV regression task, an .npz classification task, a JSON Lines text task and .npy arrays."""
    rng = np.random.default_rng(0)
    x = rng.random((60, 3))
    lines = ["a,b,c,target"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{10 + 5 * r[0]:.4f}" for r in x]
    (tmp_path / "values.csv").write_text("\n".join(lines) + "\n")
    np.savez(tmp_path / "points.npz", features=rng.random((60, 5)), labels=rng.integers(0, 3, 60))
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    with (tmp_path / "reviews.jsonl").open("w") as f:
        for i in range(60):
            good = i % 2 == 0
            f.write(
                json.dumps(
                    {"text": f"{words[i % 3] if good else words[3 + i % 3]} film", "label": "pos" if good else "neg"}
                )
                + "\n"
            )
    np.save(tmp_path / "x.npy", rng.random((40, 4)))
    np.save(tmp_path / "y.npy", rng.integers(0, 2, 40))
    return tmp_path


def _config(**tasks):
    return {
        "network": {
            "input_shape": [8],
            "layers": [{"kind": "linear", "in_features": 8, "out_features": 32}, {"kind": "relu"}],
        },
        "tasks": tasks,
        "training": FAST,
    }


def test_every_format_trains_and_predicts(files, tmp_path):
    cfg = _config(
        value={"kind": "regression", "data": {"csv": "values.csv", "target": "target"}, "keep_fraction": 0.2},
        point={
            "kind": "classification",
            "data": {"npz": "points.npz", "x": "features", "y": "labels"},
            "keep_fraction": 0.2,
        },
        review={
            "kind": "classification",
            "data": {"jsonl": "reviews.jsonl", "text": "text", "label": "label", "length": 4},
            "keep_fraction": 0.2,
        },
        arrays={"kind": "classification", "data": {"npy": "x.npy", "target": "y.npy"}, "keep_fraction": 0.2},
    )
    model = tmp_path / "m.safetensors"
    done = train_file(load_train_file(_write(files, "t.yaml", cfg)), model)
    assert set(done["tasks"]) == {"value", "point", "review", "arrays"}
    stored = read_metadata(model)["user"]["inputs"]
    assert stored["value"]["columns"] == ["a", "b", "c"] and stored["value"]["target_range"][0] >= 10
    assert stored["review"]["kind"] == "text" and "good" in stored["review"]["words"]
    assert read_metadata(model)["spec"]["tasks"][1]["classes"] == ["0", "1", "2"]

    values = predict_file(model, "value", files / "values.csv").splitlines()
    assert values[0] == "sample,value" and len(values) == 61
    assert all(9 < float(r.split(",")[1]) < 16 for r in values[1:])  # back in the target's units
    reviews = predict_file(model, "review", files / "reviews.jsonl").splitlines()
    assert reviews[0] == "sample,class,p_neg,p_pos" and len(reviews) == 61
    assert len(predict_file(model, "arrays", files / "x.npy").splitlines()) == 41


@pytest.mark.parametrize(
    "change,error,message",
    [
        (
            lambda c: c["tasks"]["v"]["data"].update(target="price"),
            DataError,
            r"no target column 'price'; the columns are \['a', 'b', 'c', 'target'\]",
        ),
        (lambda c: c["tasks"]["v"]["data"].update(features=["a", "z"]), DataError, r"no column\(s\) \['z'\]"),
        (lambda c: c["tasks"]["v"].update(kind="ranking"), ConfigError, r"tasks.v.kind: must be one of"),
        (lambda c: c["tasks"]["v"].update(colour="red"), ConfigError, r"tasks.v: unknown key\(s\) \['colour'\]"),
        (lambda c: c["tasks"]["v"]["data"].update(csv="missing.csv"), ConfigError, "missing.csv does not exist"),
        (
            lambda c: c["tasks"]["v"].update(keep_fraction=1.5),
            ConfigError,
            r"keep_fraction must be a number in \(0, 1\]",
        ),
        (lambda c: c.update(stages=[["v", "w"]]), ConfigError, r"stages: unknown task\(s\) \['w'\]"),
        (lambda c: c.update(network={"kind": "resnet"}), ConfigError, "network.kind must be one of"),
        (lambda c: c.update(network="fc-a"), ConfigError, r"write network: \{kind: fc-a\}"),
        (lambda c: c.update(network={"layers": [], "input_shape": [4]}), ConfigError, "non-empty list of layers"),
        (lambda c: c.update(training={"optimizer": "lbfgs"}), ConfigError, "training: optimizer must be one of"),
        (lambda c: c["tasks"]["v"]["data"].update(images="."), ConfigError, "exactly one file format key"),
    ],
)
def test_mistakes_name_the_file_the_key_and_what_is_allowed(files, tmp_path, change, error, message):
    cfg = _config(v={"kind": "regression", "data": {"csv": "values.csv", "target": "target"}})
    change(cfg)
    with pytest.raises(error, match=message):
        train_file(load_train_file(_write(files, "bad.yaml", cfg)), tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_add_task_refuses_too_little_capacity_before_training_and_writes_nothing(files, tmp_path):
    cfg = _config(v={"kind": "regression", "data": {"csv": "values.csv", "target": "target"}, "keep_fraction": 0.6})
    model = tmp_path / "m.safetensors"
    train_file(load_train_file(_write(files, "t.yaml", cfg)), model)
    more = {
        "tasks": {
            "p": {
                "kind": "classification",
                "data": {"npz": "points.npz", "x": "features", "y": "labels"},
                "keep_fraction": 0.6,
            }
        },
        "training": FAST,
    }
    with pytest.raises(CapacityError, match=r"layer 'trunk.0' .* positions asked .* only \d+ are free"):
        add_task_file(
            model, load_train_file(_write(files, "more.yaml", more), network_allowed=False), tmp_path / "n.safetensors"
        )
    assert not (tmp_path / "n.safetensors").exists()
    with pytest.raises(ConfigError, match="add-task uses the model's network"):
        load_train_file(_write(files, "net.yaml", {**more, "network": "fc-a"}), network_allowed=False)


def test_cli_errors_are_one_line_and_exit_1(files, tmp_path, capsys):
    cfg = _config(v={"kind": "regression", "data": {"csv": "values.csv", "target": "nope"}})
    assert main(["train", str(_write(files, "t.yaml", cfg)), "--out", str(tmp_path / "m.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rsn2 train: error: ") and "no target column 'nope'" in err and "Traceback" not in err
    cfg = _config(v={"kind": "regression", "data": {"csv": "values.csv", "target": "target"}})
    model = tmp_path / "m.safetensors"
    assert main(["train", str(_write(files, "t.yaml", cfg)), "--out", str(model)]) == 0
    assert main(["predict", str(model), str(files / "points.npz"), "--task", "v"]) == 1
    assert "reads .csv or .npy input" in capsys.readouterr().err
    assert (
        main(["add-task", str(model), str(_write(files, "a.yaml", {"tasks": cfg["tasks"]})), "--out", str(model)]) == 1
    )
    assert "must be a new file" in capsys.readouterr().err


def test_a_given_adapter_and_head_replace_the_inferred_ones_and_data_dir_moves_the_paths(files, tmp_path):
    adapter = [{"kind": "linear", "in_features": 3, "out_features": 8}, {"kind": "relu"}]
    head = [
        {"kind": "linear", "in_features": 32, "out_features": 16},
        {"kind": "relu"},
        {"kind": "linear", "in_features": 16, "out_features": 1},
    ]
    cfg = _config(
        v={"kind": "regression", "data": {"csv": "values.csv", "target": "target"}, "adapter": adapter, "head": head}
    )
    elsewhere = tmp_path / "configs"
    elsewhere.mkdir()
    model = tmp_path / "m.safetensors"
    train_file(load_train_file(_write(elsewhere, "t.yaml", cfg), data_dir=files), model)
    task = read_metadata(model)["spec"]["tasks"][0]
    assert [layer["kind"] for layer in task["head"]] == ["linear", "relu", "linear"]
    assert task["adapter"][0]["out_features"] == 8
    with pytest.raises(ConfigError, match=r"values\.csv does not exist"):
        load_train_file(elsewhere / "t.yaml")  # without --data-dir, paths are relative to the file
    cfg["tasks"]["v"]["head"] = [{"kind": "linear", "in_features": 32, "out_features": 2}]
    cfg["tasks"]["v"]["kind"] = "classification"
    cfg["tasks"]["v"]["data"] = {"npz": "points.npz", "x": "features", "y": "labels"}
    del cfg["tasks"]["v"]["adapter"]
    with pytest.raises(ConfigError, match="3 class names for 2 outputs"):
        train_file(load_train_file(_write(files, "h.yaml", cfg)), model)
