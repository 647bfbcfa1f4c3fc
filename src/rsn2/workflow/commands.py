"""``rsn2 train``, ``rsn2 add-task`` and ``rsn2 predict`` on your own tasks."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsn2.data.text import Vocabulary
from rsn2.errors import ConfigError, DataError, ModelFileError, TaskError
from rsn2.inference import TaskModel
from rsn2.inference.auto_task import answers_without_task
from rsn2.io import load_model, read_metadata, save_model
from rsn2.network.convert import multitask
from rsn2.network.dense_control import dense_control
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import LayerSpec, NetworkSpec, TaskSpec
from rsn2.network.task_inference import DEFAULT_THRESHOLD, check_threshold
from rsn2.network.task_kinds import task_kind
from rsn2.preprocessing import (
    INPUTS_KEY,
    ImageInput,
    Preprocessing,
    TabularInput,
    TaskInput,
    TextInput,
    preprocessing_of,
)
from rsn2.preprocessing.inputs import input_to_dict
from rsn2.training import TaskData, evaluate, fit_stage
from rsn2.workflow.build import image_input_for, module_of, task_spec, trunk_features
from rsn2.workflow.config import DataSource, TaskEntry, TrainFile
from rsn2.workflow.inputs import (
    numeric_columns,
    read_csv_rows,
    read_images,
    read_jsonl,
    read_prediction_input,
)


@dataclass
class PreparedTask:
    """A task's data ready for training: its input description, train and test tensors, class names."""

    entry: TaskEntry
    input: TaskInput
    train: TaskData
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str] | None
    target_range: tuple[float, float] | None = None

    def stored(self) -> dict[str, Any]:
        """What the model file keeps of this task's input (and, for regression, the target range)."""
        return {**input_to_dict(self.input), "target_range": list(self.target_range) if self.target_range else None}

    @property
    def outputs(self) -> int:
        return (
            len(self.classes) if self.classes is not None else int(self.train.y.reshape(len(self.train.y), -1).shape[1])
        )


def train_file(cfg: TrainFile, out: str | os.PathLike[str], controls: bool = False) -> dict[str, Any]:
    """Train every stage of ``cfg``, write the model to ``out``; returns each task's test metric."""
    assert cfg.network is not None
    body: nn.Module | None = None
    module_network = cfg.network if cfg.network.form == "module" else None
    if module_network is not None:
        torch.manual_seed(cfg.seed)
        body, shape, width = module_of(module_network, Path(cfg.path).parent)
        trunk: tuple[LayerSpec, ...] = ()
    else:
        named = cfg.network.trunk()
        trunk, shape = named.layers, named.input_shape
        width = trunk_features(trunk, shape)
    prepared = {t.name: prepare_task(t, shape, cfg.seed) for t in cfg.tasks}
    specs = tuple(_spec_of(p, shape, width) for p in prepared.values())
    torch.manual_seed(cfg.seed)
    if body is None:
        network = MultitaskNetwork(NetworkSpec(trunk, specs))
    else:
        network = multitask(body, specs, inplace=True)
        network.conversion = dict(network.conversion or {}) | {"input_shape": list(shape)}
    _train_stages(network, cfg, prepared)
    rows = {t: _row(network, p) for t, p in prepared.items()}
    if controls:
        for t, p in prepared.items():
            torch.manual_seed(cfg.seed)  # a control starts from a fresh instance of the same module
            fresh = module_of(module_network, Path(cfg.path).parent)[0] if module_network is not None else None
            control = dense_control(network.spec, t, body=fresh)
            fit_stage(control, {t: p.train}, cfg.train_config())
            rows[t]["control"] = evaluate(control, t, p.x_test, p.y_test)["metric"]
    inputs = {t: p.stored() for t, p in prepared.items()}
    size = save_model(network, out, user={INPUTS_KEY: inputs})
    return {"model": str(out), "bytes": size, "tasks": rows}


def add_task_file(
    model: str | os.PathLike[str], cfg: TrainFile, out: str | os.PathLike[str], *, body: nn.Module | None = None
) -> dict[str, Any]:
    """Select and train ``cfg``'s tasks in ``model``'s free capacity; write the result to ``out``.
    ``body``: a fresh instance of the user's module, for a model made from one.

    ``model`` is never modified. Before ``out`` is written, every earlier task's outputs on seeded
    inputs are checked bit-identical to the old model's (the result's ``unchanged`` lists them).
    """
    model, out = Path(model), Path(out)
    if out.resolve() == model.resolve():
        raise ModelFileError(f"--out must be a new file, not the input model {model} (it is never modified)")
    network = load_model(model, body=body)
    old_inputs = dict(read_metadata(model).get("user", {}).get(INPUTS_KEY, {}))
    clash = [t.name for t in cfg.tasks if t.name in network.task_names]
    if clash:
        raise TaskError(f"task(s) {clash} are already in {model}; its tasks: {network.task_names}")
    trunk_shape = _trunk_input_shape(network)
    width = _trunk_width(network)
    prepared = {t.name: prepare_task(t, trunk_shape, cfg.seed) for t in cfg.tasks}
    probes = {t: _probe(network, t) for t in network.task_names if network.is_selected(t)}
    before = {t: _outputs(network, t, x) for t, x in probes.items()}
    network.add_tasks([_spec_of(p, trunk_shape, width) for p in prepared.values()])
    torch.manual_seed(cfg.seed)
    _train_stages(network, cfg, prepared)
    changed = [t for t, x in probes.items() if not torch.equal(_outputs(network, t, x), before[t])]
    if changed:
        raise TaskError(f"earlier task(s) {changed} changed while adding {list(prepared)}; nothing was written")
    inputs = {**old_inputs, **{t: p.stored() for t, p in prepared.items()}}
    size = save_model(network, out, user={INPUTS_KEY: inputs})
    rows = {t: _row(network, p) for t, p in prepared.items()}
    return {"model": str(out), "bytes": size, "tasks": rows, "unchanged": list(probes)}


def predict_file(
    model: str | os.PathLike[str],
    task: str | None,
    path: str | os.PathLike[str],
    *,
    body: nn.Module | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> str:
    """CSV text of ``task``'s predictions for the samples in ``path`` (see :func:`read_prediction_input`),
    preprocessed as the model file stores it (:meth:`TaskModel.predict`): per sample its name, then the
    class and one probability per class, or the predicted value(s) in the training target's units.

    ``task=None``: the task is inferred per sample among the classification tasks that read ``path``
    (:func:`~rsn2.inference.auto_task.answers_without_task`): per sample its name, the task (or
    ``unknown`` where the confidence is below ``threshold``), the confidence, the class and its
    probability."""
    if task is None:
        check_threshold(threshold)
        return _predict_without_task(model, Path(path), body, threshold)
    task_model = TaskModel.load(model, task, body=body)
    raw, names = read_prediction_input(task_model.preprocessing.input, Path(path))
    answers = task_model.predict(raw)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if "label" in answers:
        classes = task_model.preprocessing.classes or ()
        writer.writerow(["sample", "class", *(f"p_{c}" for c in classes)])
        for name, label, p in zip(names, answers["label"], answers["probabilities"], strict=True):
            writer.writerow([name, label, *(f"{v:.6g}" for v in p)])
    else:
        values = answers["value"]
        writer.writerow(
            ["sample", *(["value"] if values.shape[1] == 1 else [f"value_{i}" for i in range(values.shape[1])])]
        )
        for name, v in zip(names, values, strict=True):
            writer.writerow([name, *(f"{x:.6g}" for x in v)])
    return buffer.getvalue()


def _predict_without_task(model: str | os.PathLike[str], path: Path, body: nn.Module | None, threshold: float) -> str:
    """:func:`predict_file` with the task inferred: every classification task that reads ``path`` runs."""
    network = load_model(model, body=body)
    metadata = read_metadata(model)
    outputs: dict[str, np.ndarray] = {}
    chosen: dict[str, Preprocessing] = {}
    refused: dict[str, str] = {}
    names: list[str] | None = None
    for task in network.task_names:
        spec = network.task_spec(task)
        if spec.kind != "classification":
            refused[task] = f"a {spec.kind} task"
            continue
        pre = preprocessing_of(spec, metadata)
        try:
            raw, sample_names = read_prediction_input(pre.input, path)
            x = torch.from_numpy(pre.prepare(raw))
        except DataError as exc:
            refused[task] = str(exc)
            continue
        if names is not None and sample_names != names:
            refused[task] = "reads other samples from this input"
            continue
        names = sample_names
        outputs[task] = TaskModel.from_network(network, task, preprocessing=pre)(x).float().numpy()
        chosen[task] = pre
    if names is None:
        why = "; ".join(f"{t}: {reason}" for t, reason in refused.items())
        raise DataError(f"no classification task of {model} takes {path}, so no task can be inferred ({why})")
    answers = answers_without_task(outputs, chosen, threshold)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sample", "task", "confidence", "class", "probability"])
    for i, name in enumerate(names):
        writer.writerow(
            [
                name,
                answers["task"][i],
                f"{answers['confidence'][i]:.4f}",
                answers["label"][i],
                f"{answers['probability'][i]:.6g}",
            ]
        )
    return buffer.getvalue()


def prepare_task(entry: TaskEntry, trunk_shape: tuple[int, ...], seed: int) -> PreparedTask:
    """Read a task's files, split off its test set if it has none, fit its input on the training part."""
    where = f"task {entry.name!r}"
    src = entry.data
    if src.format == "images":
        image = image_input_for(trunk_shape, src.options)
        x, y_ids, classes = read_images(src.path, image.channels, (image.width, image.height))
        labels: np.ndarray = np.asarray(classes, dtype=object)[y_ids]
        if entry.test is not None:
            xt, yt_ids, test_classes = read_images(entry.test.path, image.channels, (image.width, image.height))
            test_labels = np.asarray(test_classes, dtype=object)[yt_ids]
        else:
            (x, labels), (xt, test_labels) = _split([x, labels], entry.test_fraction, seed)
        x_train, x_test = image.transform(x), image.transform(xt)
        inp: TaskInput = image
    elif src.format == "jsonl":
        texts, labels = _read_text(src)
        if entry.test is not None:
            test_texts, test_labels = _read_text(entry.test)
        else:
            (texts_arr, labels), (test_arr, test_labels) = _split(
                [np.asarray(texts, dtype=object), labels], entry.test_fraction, seed
            )
            texts, test_texts = list(texts_arr), list(test_arr)
        vocabulary = Vocabulary.build(texts, int(src.options.get("vocabulary", 10_000)))
        inp = TextInput(str(src.options["text"]), list(vocabulary.words), int(src.options.get("length", 64)))
        x_train, x_test = inp.transform(texts), inp.transform(list(test_texts))
    else:
        x, labels, columns = _read_table(src)
        if entry.test is not None:
            xt, test_labels, _ = _read_table(entry.test, columns)
        else:
            (x, labels), (xt, test_labels) = _split([x, labels], entry.test_fraction, seed)
        inp = TabularInput.fit(x, columns)
        x_train, x_test = inp.transform(x), inp.transform(xt)
    if len(x_train) < 2 or len(x_test) < 1:
        raise DataError(f"{where}: needs at least 2 training and 1 test samples, got {len(x_train)} and {len(x_test)}")
    classes_out: list[str] | None = None
    y_train = y_test = torch.empty(0)
    if entry.kind == "classification":
        classes_out = sorted({str(v) for v in labels})
        index = {c: i for i, c in enumerate(classes_out)}
        unknown = sorted({str(v) for v in test_labels} - set(index))
        if unknown:
            raise DataError(f"{where}: test labels {unknown[:5]} never occur in the training data {classes_out[:10]}")
        if len(classes_out) < 2:
            raise DataError(f"{where}: a classification task needs at least 2 classes, got {classes_out}")
        y_train = torch.tensor([index[str(v)] for v in labels], dtype=task_kind("classification").target_dtype)
        y_test = torch.tensor([index[str(v)] for v in test_labels], dtype=torch.long)
    target_range = None
    if entry.kind == "regression":  # targets min-max scaled by the training range; predict scales back
        y_train = _values(labels, f"{where}: {_target_of(src)} (training part)")
        y_test = _values(test_labels, f"{where}: {_target_of(entry.test or src)} (test part)")
        low, high = float(y_train.min()), float(y_train.max())
        span = high - low if high > low else 1.0
        y_train, y_test = (y_train - low) / span, (y_test - low) / span
        target_range = (low, high)
    train = TaskData(torch.from_numpy(np.ascontiguousarray(x_train)), y_train, batch_size=entry.batch_size)
    x_test_t = torch.from_numpy(np.ascontiguousarray(x_test))
    return PreparedTask(entry, inp, train, x_test_t, y_test, classes_out, target_range)


def _spec_of(p: PreparedTask, trunk_shape: tuple[int, ...], width: int) -> TaskSpec:
    e = p.entry
    return task_spec(
        e.name, e.kind, p.input, p.outputs, p.classes, trunk_shape, width, e.keep_fraction, e.adapter, e.head
    )


def _train_stages(network: MultitaskNetwork, cfg: TrainFile, prepared: dict[str, PreparedTask]) -> None:
    for stage in cfg.stages:
        fit_stage(network, {t: prepared[t].train for t in stage}, cfg.train_config(), selection=cfg.selection_config())


def _row(network: MultitaskNetwork, p: PreparedTask) -> dict[str, Any]:
    name = p.entry.name
    result = evaluate(network, name, p.x_test, p.y_test)
    return {
        "kind": p.entry.kind,
        "metric": task_kind(p.entry.kind).metric,
        "multitask": result["metric"],
        "test_samples": len(p.x_test),
    }


def _read_table(src: DataSource, columns: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    if src.format == "csv":
        rows = read_csv_rows(src.path)
        target = str(src.options["target"])
        present = list(rows[0])
        if target not in present:
            raise DataError(f"{src.path}: no target column {target!r}; the columns are {present}")
        features = columns or [str(c) for c in src.options.get("features", [c for c in present if c != target])]
        if target in features:
            raise ConfigError(f"{src.path}: the target column {target!r} is also a feature")
        return numeric_columns(rows, features, src.path), np.asarray([r[target] for r in rows], dtype=object), features
    if src.format == "npz":
        try:
            arrays = np.load(src.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{src.path} is not a readable .npz file: {exc}") from None
        missing = [k for k in (src.options["x"], src.options["y"]) if k not in arrays.files]
        if missing:
            raise DataError(f"{src.path}: no array(s) {missing}; the arrays are {arrays.files}")
        x, y = arrays[src.options["x"]], arrays[src.options["y"]]
    else:
        x = _load_npy(src.path)
        y = _load_npy(src.path.parent / str(src.options["target"]))
    if len(x) != len(y):
        raise DataError(f"{src.path}: {len(x)} samples but {len(y)} targets")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DataError(f"{src.path}: the features must be finite numbers")
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1), y, None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npy file: {exc}") from None


def _read_text(src: DataSource) -> tuple[list[str], np.ndarray]:
    text, label = str(src.options["text"]), str(src.options["label"])
    records = read_jsonl(src.path, [text, label])
    return [str(r[text]) for r in records], np.asarray([r[label] for r in records], dtype=object)


def _target_of(src: DataSource) -> str:
    """Where a source's targets are: its file and the target column, array or field."""
    key = {"csv": "target", "npz": "y", "npy": "target", "jsonl": "label"}.get(src.format)
    what = {"csv": "column", "npz": "array", "npy": "file", "jsonl": "field"}.get(src.format, "labels")
    return f"{src.path}, target {what} {src.options[key]!r}" if key else f"{src.path}, the class folders"


def _values(labels: np.ndarray, where: str) -> torch.Tensor:
    """Regression targets as float32; ``where`` names the file and column in an error."""
    values = np.empty(len(labels), dtype=np.float64)
    flat = np.asarray(labels, dtype=object).reshape(len(labels), -1)
    if flat.shape[1] != 1:
        try:
            return torch.from_numpy(np.asarray(labels, dtype=np.float64).astype(np.float32))
        except (TypeError, ValueError):
            raise DataError(f"{where}: regression targets must be numbers") from None
    for i, v in enumerate(flat[:, 0]):
        try:
            values[i] = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{where}: regression targets must be numbers; sample {i + 1} holds {v!r}") from None
    if not np.isfinite(values).all():
        raise DataError(f"{where}: regression targets hold NaN or infinite values")
    return torch.from_numpy(values.astype(np.float32))


def _split(arrays: list[np.ndarray], fraction: float, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A seeded random split: ``fraction`` of the samples (at least one) held out for testing."""
    n = len(arrays[0])
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * fraction))
    test, train = order[:n_test], order[n_test:]
    return [a[train] for a in arrays], [a[test] for a in arrays]


def _probe(network: MultitaskNetwork, task: str) -> torch.Tensor:
    spec = network.task_spec(task)
    gen = torch.Generator().manual_seed(12345)
    if spec.takes_tokens:
        return torch.randint(0, int(spec.adapter[0].params["num_embeddings"]), (16, *spec.input_shape), generator=gen)
    return torch.rand((16, *spec.input_shape), generator=gen)


def _outputs(network: MultitaskNetwork, task: str, x: torch.Tensor) -> torch.Tensor:
    network.eval()
    with torch.no_grad():
        return network(x, task).clone()


def _trunk_input_shape(network: MultitaskNetwork) -> tuple[int, ...]:
    if network.body is not None:
        recorded = (network.conversion or {}).get("input_shape")
        if recorded:
            return tuple(int(d) for d in recorded)
        for t in network.spec.tasks:  # a task that enters the module directly
            if not t.adapter:
                return tuple(t.input_shape)
        raise ModelFileError("cannot tell the input shape of this model's module (no task enters it directly)")
    first = network.spec.trunk[0]
    if first.kind == "linear":
        return (int(first.params["in_features"]),)
    for t in network.spec.tasks:  # a conv trunk: the shape of a task that enters it directly
        if t.enter_at == 0 and not t.adapter:
            return tuple(t.input_shape)
    raise ModelFileError("cannot tell the input shape of this model's trunk (no task enters it directly)")


def _trunk_width(network: MultitaskNetwork) -> int:
    if network.body is not None:  # the module's output for a zero sample, as its first task reads it
        network.eval()
        with torch.no_grad(), network.task(network.task_names[0]):
            return int(network.body(torch.zeros((1, *_trunk_input_shape(network)))).shape[1])
    return trunk_features(tuple(network.spec.trunk), _trunk_input_shape(network))


__all__ = ["ImageInput", "add_task_file", "predict_file", "prepare_task", "train_file"]
