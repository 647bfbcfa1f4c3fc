"""One model, the same answer everywhere: ``rsn2 predict``, ``rsn2 serve`` (a real socket),
``TaskModel.predict`` on raw input and the exported ONNX file in ONNX Runtime, on the same raw samples of
every task kind (CSV classification and regression, images, text)."""

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from rsn2 import TaskModel, load_model
from rsn2.cli.main import main
from rsn2.io import read_metadata
from rsn2.workflow import predict_file
from tests.deploy.server_process import call

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
TEXTS = ["A lovely film, really lovely!", "awful<br />and DULL", "nothing we know", "great great great film fine"]


def _csv_rows(path: Path, picks: list[int]) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [rows[1 + i] for i in picks]


def raw_samples(raw_model, task: str, folder: Path) -> dict:
    """Raw samples of ``task``: ``file`` (what predict reads), ``python`` (what TaskModel.predict takes),
    ``request`` (an OIP JSON body of raw inputs) and ``onnx`` (the ONNX input, made with the steps its
    metadata documents)."""
    src = raw_model.folder
    if task in ("species", "progression"):
        name, target = ("iris.csv", "species") if task == "species" else ("diabetes.csv", "progression")
        header, rows = _csv_rows(src / name, [0, 50, 100, 7] if task == "species" else [0, 1, 2, 3])
        features = [c for c in header if c != target]
        # the predict file lists the columns in another order, without the target: read by name
        file = folder / f"{task}.csv"
        shuffled = list(reversed(features))
        file.write_text(
            ",".join(shuffled) + "\n" + "\n".join(",".join(r[header.index(c)] for c in shuffled) for r in rows) + "\n"
        )
        x = np.array([[float(r[header.index(c)]) for c in features] for r in rows], dtype=np.float32)
        request = {"inputs": [{"name": "features", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]}
        return {"file": file, "python": x.astype(np.float64), "request": request, "onnx": x}
    if task == "digit":
        file = folder / "digits"
        images = []
        for label in ("0", "3", "7"):
            first = sorted((src / "digits" / label).iterdir())[0]
            (file / label).mkdir(parents=True)
            (file / label / first.name).write_bytes(first.read_bytes())  # as in training: a folder per class
            images.append(first.read_bytes())
        encoded = [base64.b64encode(b).decode() for b in images]
        request = {"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": encoded}]}
        return {"file": file, "python": images, "request": request, "onnx": None}
    file = folder / "review.jsonl"
    file.write_text("".join(json.dumps({"text": t, "other": 1}) + "\n" for t in TEXTS))
    request = {"inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}]}
    return {"file": file, "python": TEXTS, "request": request, "onnx": None}


def onnx_input(metadata: dict, samples: dict) -> np.ndarray:
    """The ONNX file's input for the raw samples, by the steps its ``rsn2.preprocessing`` metadata names
    (written here independently of rsn2's own preprocessing code)."""
    kind = metadata["kind"]
    if kind == "tabular":
        return samples["onnx"]
    if kind == "images":
        mode = "L" if metadata["channels"] == 1 else "RGB"
        pixels = []
        for blob in samples["python"]:
            with Image.open(io.BytesIO(blob)) as im:
                im = im.convert(mode).resize((metadata["width"], metadata["height"]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.float32)
            pixels.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        return np.stack(pixels)
    rule = metadata["token_rule"]
    ids = np.full((len(samples["python"]), rule["length"]), rule["pad_id"], dtype=np.int64)
    index = {w: rule["first_word_id"] + i for i, w in enumerate(rule["words"])}
    for row, text in enumerate(samples["python"]):
        text = text.lower() if rule["lowercase"] else text
        for old, new in rule["replace"].items():
            text = text.replace(old, new)
        words = re.findall(rule["pattern"], text)[: rule["length"]]
        ids[row, : len(words)] = [index.get(w, rule["oov_id"]) for w in words]
    return ids


def predicted(text: str) -> dict:
    """``rsn2 predict``'s CSV as answers: probabilities and label, or value."""
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    if header[1] == "class":
        return {
            "probabilities": np.array([[float(v) for v in r[2:]] for r in body]),
            "label": np.array([r[1] for r in body], dtype=object),
        }
    return {"value": np.array([[float(v) for v in r[1:]] for r in body])}


def served_answers(body: dict) -> dict:
    return {
        o["name"]: np.array(o["data"], dtype=object if o["datatype"] == "BYTES" else np.float64).reshape(o["shape"])
        for o in body["outputs"]
    }


def assert_same(got: dict, want: dict, where: str) -> None:
    assert set(got) == set(want), where
    for name, value in want.items():
        if name == "label":
            assert [str(v) for v in got[name]] == [str(v) for v in value], where
        else:
            np.testing.assert_allclose(np.asarray(got[name], dtype=np.float64), value, **TOLERANCE, err_msg=where)


@pytest.mark.parametrize("task", ["species", "progression", "digit", "review"])
def test_predict_serve_task_model_and_onnx_give_the_same_answers(raw_model, served, task, tmp_path):
    samples = raw_samples(raw_model, task, tmp_path)
    reference = TaskModel.load(raw_model.path, task).predict(samples["python"])

    assert_same(predicted(predict_file(raw_model.path, task, samples["file"])), reference, "rsn2 predict")

    status, body = call(f"{served}/v2/models/{task}/infer", samples["request"])
    assert status == 200, body
    assert_same(served_answers(body), reference, "rsn2 serve")

    out = tmp_path / f"{task}.onnx"
    assert main(["export", str(raw_model.path), "--task", task, "--out", str(out)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    metadata = json.loads(props["rsn2.preprocessing"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    runs = session.run(None, {inp.name: onnx_input(metadata, samples)})
    assert_same(dict(zip([o.name for o in session.get_outputs()], runs, strict=True)), reference, "ONNX Runtime")


def test_answers_are_in_the_training_targets_units_and_class_names(raw_model, tmp_path):
    """Regression values come back in the targets' units (the network learned them min-max scaled by
    the training range the file stores), and classification answers name the classes with
    probabilities that sum to one."""
    x = raw_samples(raw_model, "progression", tmp_path)["python"]
    answers = TaskModel.load(raw_model.path, "progression").predict(x)
    stored = read_metadata(raw_model.path)["user"]["inputs"]["progression"]
    (low, high), (f_low, f_high) = stored["target_range"], (np.array(stored["low"]), np.array(stored["high"]))
    with torch.no_grad():
        scaled = load_model(raw_model.path)(
            torch.tensor((x - f_low) / (f_high - f_low), dtype=torch.float32), "progression"
        )
    np.testing.assert_allclose(answers["value"], scaled.numpy() * (high - low) + low, rtol=1e-5)
    assert high - low > 100  # diabetes progression: not the [0, 1] the network computes in
    species = TaskModel.load(raw_model.path, "species").predict([[5.1, 3.5, 1.4, 0.2]])
    assert set(species["label"]) <= {"setosa", "versicolor", "virginica"}
    np.testing.assert_allclose(species["probabilities"].sum(axis=1), 1.0, rtol=1e-6)


def test_rows_by_column_name_answer_as_rows_in_column_order(raw_model, served):
    model = TaskModel.load(raw_model.path, "species")
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    row = [6.3, 3.3, 6.0, 2.5]
    by_name = model.predict([dict(zip(columns, row, strict=True))])
    assert_same(by_name, model.predict([row]), "TaskModel by column name")
    request = {
        "inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [v]} for c, v in zip(columns, row, strict=True)
        ]
    }
    status, body = call(f"{served}/v2/models/species/infer", request)
    assert status == 200, body
    assert_same(served_answers(body), by_name, "serve by column name")
    request["inputs"].pop()
    status, body = call(f"{served}/v2/models/species/infer", request)
    assert status == 400 and "missing column(s) ['petal_width']" in body["error"]


def test_pixels_answer_as_the_encoded_image(raw_model, served):
    blob = sorted((raw_model.folder / "digits" / "5").iterdir())[0].read_bytes()
    model = TaskModel.load(raw_model.path, "digit")
    with Image.open(io.BytesIO(blob)) as im:
        pixels = np.asarray(im.convert("L").resize((8, 8), Image.Resampling.BILINEAR), dtype=np.uint8)[None, None]
    assert_same(model.predict(pixels), model.predict([blob]), "pixels vs encoded")
    request = {
        "inputs": [{"name": "pixels", "shape": [1, 1, 8, 8], "datatype": "UINT8", "data": pixels.ravel().tolist()}]
    }
    status, body = call(f"{served}/v2/models/digit/infer", request)
    assert status == 200, body
    assert_same(served_answers(body), model.predict([blob]), "serve pixels")


def test_the_metadata_says_what_each_task_takes(served):
    status, meta = call(f"{served}/v2/models/species")
    assert status == 200
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["parameters"]["preprocessing"]["columns"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    status, meta = call(f"{served}/v2/models/digit")
    assert [i["name"] for i in meta["inputs"]] == ["image", "pixels"]
    assert meta["inputs"][1]["shape"] == [-1, 1, 8, 8]
    status, meta = call(f"{served}/v2/models/review")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    status, meta = call(f"{served}/v2/models/progression")
    assert meta["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1, 1]}]
    assert (
        meta["parameters"]["preprocessing"]["target_range"][0] < meta["parameters"]["preprocessing"]["target_range"][1]
    )


@pytest.mark.parametrize(
    "task,body,message",
    [
        (
            "species",
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1] * 4}]},
            "takes 'features'",
        ),
        (
            "species",
            {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
            r"\[n, 4\]",
        ),
        (
            "digit",
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}]},
            "base64",
        ),
        (
            "digit",
            {
                "inputs": [
                    {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(b"abc").decode()]}
                ]
            },
            r"image 0 is not a readable image \(",
        ),
        (
            "digit",
            {"inputs": [{"name": "pixels", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [300] * 64}]},
            "0-255",
        ),
        (
            "review",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            "takes datatype 'BYTES'",
        ),
    ],
)
def test_raw_inputs_of_the_wrong_form_get_a_400_that_says_what_the_task_takes(served, task, body, message):
    status, answer = call(f"{served}/v2/models/{task}/infer", body)
    assert status == 400 and re.search(message, answer["error"]), answer
    assert "BytesIO" not in answer["error"]


def test_numpy_arrays_of_strings_and_bytes_are_taken_as_lists(raw_model):
    review = TaskModel.load(raw_model.path, "review")
    assert_same(review.predict(np.array(TEXTS)), review.predict(TEXTS), "str array")
    assert_same(review.predict(np.array(TEXTS, dtype=object)), review.predict(TEXTS), "object array")
    digit = TaskModel.load(raw_model.path, "digit")
    blob = sorted((raw_model.folder / "digits" / "6").iterdir())[0].read_bytes()
    assert_same(digit.predict(np.array([blob], dtype=object)), digit.predict([blob]), "bytes array")
