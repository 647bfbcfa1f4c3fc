"""One task of a model as a standalone ONNX file, its preprocessing included, checked against rsn2
before it is kept."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from rsn2.deploy.onnx_graph import add_label_output, pack_sparse_initializers
from rsn2.devices import module_device
from rsn2.errors import ExportError
from rsn2.inference import TaskModel
from rsn2.inference.values import check_value_dtype
from rsn2.io import atomic_target
from rsn2.network.model import MultitaskNetwork
from rsn2.preprocessing import Preprocessing
from rsn2.preprocessing.inputs import ImageInput, TabularInput, TextInput
from rsn2.version import __version__

TOLERANCE = 1e-5
"""Largest allowed difference (absolute, and relative to the output's scale) between ONNX Runtime and rsn2."""

ONNX_INPUT_NAMES = {"tabular": "features", "images": "pixels", "text": "token_ids", "tensor": "input"}
"""The exported file's input, by the task's input kind: raw features ``(N, F)`` float, pixels
``(N, C, H, W)`` float in 0-255 at the training size, token ids ``(N, length)`` int64 (the text's
tokens by the rule in the metadata), or the network's input tensor for tasks with no stored
preprocessing."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and checked: the file, its size, the batch sizes compared and
    the largest absolute difference between ONNX Runtime's outputs and rsn2's answers."""

    path: Path
    bytes: int
    batches: tuple[int, ...]
    max_abs_diff: float


def sample_inputs(network: MultitaskNetwork, task: str, batch: int, seed: int = 0) -> Tensor:
    """A seeded batch of valid inputs for ``task``: uniform floats in [0, 1), or token ids below the
    embedding's vocabulary size. Shape ``(batch, *input_shape)``."""
    spec = network.task_spec(task)
    gen = torch.Generator().manual_seed(seed)
    if spec.takes_tokens:
        return torch.randint(0, spec.vocabulary_size or 1, (batch, *spec.input_shape), generator=gen)
    return torch.rand((batch, *spec.input_shape), generator=gen)


def onnx_sample(preprocessing: Preprocessing, network: MultitaskNetwork, batch: int, seed: int = 0) -> np.ndarray:
    """A seeded batch of the exported file's input (see :data:`ONNX_INPUT_NAMES`): features within
    their training ranges, whole pixel values 0-255, token ids, or :func:`sample_inputs`."""
    inp = preprocessing.input
    rng = np.random.default_rng(seed)
    if isinstance(inp, TabularInput):
        low, high = np.asarray(inp.low), np.asarray(inp.high)
        return (low + rng.random((batch, len(low))) * (high - low)).astype(np.float32)
    if isinstance(inp, ImageInput):
        return rng.integers(0, 256, (batch, *inp.input_shape)).astype(np.float32)
    if isinstance(inp, TextInput):
        return rng.integers(0, inp.num_embeddings, (batch, inp.length)).astype(np.int64)
    return sample_inputs(network, preprocessing.task, batch, seed).numpy()


class ExportedTask(nn.Module):
    """What the ONNX file computes: the task's preprocessing, its network, then its answers.

    Input: see :data:`ONNX_INPUT_NAMES`. Output: ``(probabilities (N, K), label index (N,))`` for
    classification, ``value (N, outputs)`` in the training target's units for regression.
    """

    feature_low: Tensor
    feature_span: Tensor

    def __init__(self, model: TaskModel, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model, self.kind = model, preprocessing.input.kind
        inp = preprocessing.input
        low = np.asarray(inp.low, dtype=np.float32) if isinstance(inp, TabularInput) else np.zeros(1, np.float32)
        span = inp.span.astype(np.float32) if isinstance(inp, TabularInput) else np.ones(1, np.float32)
        self.register_buffer("feature_low", torch.from_numpy(low))
        self.register_buffer("feature_span", torch.from_numpy(span))
        self.classify = preprocessing.classes is not None
        self.target_span, self.target_low = preprocessing.target_scale

    def forward(self, x: Tensor) -> Any:
        if self.kind == "tabular":
            x = (x - self.feature_low) / self.feature_span
        elif self.kind == "images":
            x = x / 255.0
        out = self.model.steps(x)
        if self.classify:
            probabilities = torch.softmax(out, dim=1)
            return probabilities, torch.argmax(probabilities, dim=1)
        return out * self.target_span + self.target_low


def export_onnx(
    network: MultitaskNetwork,
    task: str,
    path: str | os.PathLike[str],
    opset: int = 18,
    preprocessing: Preprocessing | None = None,
    *,
    packed: bool = True,
    values: str = "float32",
) -> ExportReport:
    """Write ``task`` as an ONNX model to ``path``: its preprocessing, its own weights and its answers.

    Input and outputs are named as ``rsn2 serve`` names them (:data:`ONNX_INPUT_NAMES`; outputs
    ``probabilities`` and ``label`` (class names, strings), or ``value``), with a dynamic batch axis.
    ``preprocessing``: the task's (:func:`rsn2.preprocessing.preprocessing_of` reads a model file's;
    default: the network's input tensor as it is). The file's metadata (``metadata_props``) holds
    ``rsn2.task``, ``rsn2.kind``, ``rsn2.classes`` and ``rsn2.preprocessing``: the JSON that says what the graph
    does to its input and, for text, the token rule to apply before it (a tokenizer is no ONNX
    operator). Weights are stored as their nonzeros (:func:`pack_sparse_initializers`; ``packed=False``
    keeps them dense, zeros included, as a baseline). ``values="bfloat16"``: the task's kernels rounded
    to bfloat16 (as ``TaskModel.from_network(..., values="bfloat16")`` and ``rsn2 serve --values
    bfloat16`` hold them) and stored in 2 bytes a value (with ``packed``), widened to float32 in the
    graph; the answers are then compared with that rounded task model rather than the network.

    The model is exported from :class:`~rsn2.inference.TaskModel` with dense kernels through
    ``torch.onnx.export`` (the ``torch.export`` based exporter), then run in ONNX Runtime on seeded
    batches of 1 and 7 samples. Only when every answer equals rsn2's own (the network's training
    path, then :meth:`Preprocessing.finish`) within :data:`TOLERANCE` is the file moved to ``path``
    (atomically); otherwise nothing is written and :class:`~rsn2.errors.ExportError` says by how much
    they differ.
    """
    target = Path(path)
    if target.is_dir() or not target.parent.is_dir():
        raise ExportError(f"cannot write {target}: give a file path in an existing folder")
    check_value_dtype(values)
    pre = preprocessing or Preprocessing.of(network.task_spec(task), None)
    task_model = TaskModel.from_network(network, task, sparse=False, values=values).cpu()
    exported = ExportedTask(task_model, pre)
    reference: Callable[[Tensor], Tensor] = (
        task_model if values == "bfloat16" else (lambda x: network.eval()(x.to(module_device(network)), task))
    )
    input_name = ONNX_INPUT_NAMES[pre.input.kind]
    outputs = ["probabilities", "label_index"] if pre.classes is not None else ["value"]
    try:
        with atomic_target(target) as tmp:
            batch = torch.export.Dim("batch", min=1)
            with warnings.catch_warnings(), _quiet_exporter():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    exported,
                    (torch.from_numpy(onnx_sample(pre, network, 2)),),
                    str(tmp),
                    input_names=[input_name],
                    output_names=outputs,
                    dynamic_shapes=({0: batch},),
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
            proto = onnx.load(str(tmp))
            if pre.classes is not None:
                add_label_output(proto, "label_index", list(pre.classes), "label")
            if packed:
                pack_sparse_initializers(proto, bfloat16=values == "bfloat16")
            _describe(proto, pre, input_name)
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
            worst, batches = _compare(tmp, network, pre, input_name, reference)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"exporting task {task!r} to ONNX failed: {exc}") from exc
    return ExportReport(target, target.stat().st_size, batches, worst)


def _describe(proto: onnx.ModelProto, pre: Preprocessing, input_name: str) -> None:
    """The file's metadata: the task, its answers and what the graph does to its input."""
    inp = pre.input
    steps: dict[str, Any] = {"input": input_name, "kind": inp.kind}
    if isinstance(inp, TabularInput):
        steps.update(columns=inp.columns, applied="(x - low) / span per feature, in the graph", low=inp.low)
        steps["span"] = inp.span.tolist()
    elif isinstance(inp, ImageInput):
        steps.update(
            channels=inp.channels,
            height=inp.height,
            width=inp.width,
            before="decode, convert to the channels (L grey or RGB), resize (bilinear) to width x height, "
            "lay out as (C, H, W) in 0-255",
            applied="x / 255, in the graph",
        )
    elif isinstance(inp, TextInput):
        steps.update(before="apply token_rule to each text to get its token_ids", token_rule=inp.token_rule())
    if pre.target_range is not None:
        steps["target"] = "value = output * (high - low) + low, in the graph"
        steps["target_range"] = list(pre.target_range)
    props = {
        "rsn2.version": __version__,
        "rsn2.task": pre.task,
        "rsn2.kind": pre.kind,
        "rsn2.classes": json.dumps(list(pre.classes) if pre.classes is not None else None),
        "rsn2.preprocessing": json.dumps(steps),
    }
    onnx.helper.set_model_props(proto, props)
    proto.producer_name, proto.producer_version = "rsn2", __version__


def _compare(
    path: Path,
    network: MultitaskNetwork,
    pre: Preprocessing,
    input_name: str,
    reference: Callable[[Tensor], Tensor],
) -> tuple[float, tuple[int, ...]]:
    """Run ``path`` in ONNX Runtime against rsn2 (``reference``: the network input to the task's raw
    outputs) on seeded batches; the largest difference seen."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst, batches = 0.0, (1, 7)
    task = pre.task
    for n in batches:
        x = onnx_sample(pre, network, n, seed=n)
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {input_name: x}), strict=True))
        network_input = torch.from_numpy(_network_input(pre, x))
        with torch.no_grad():
            raw = reference(network_input).float().cpu().numpy()
        want = pre.finish(raw)
        for name, expected in want.items():
            if name == "label":
                continue
            value = got[name]
            if value.shape != expected.shape:
                raise ExportError(f"the exported {task!r} gives {name} of shape {value.shape}, rsn2 {expected.shape}")
            diff = float(np.abs(value - expected).max(initial=0.0))
            worst = max(worst, diff)
            if diff > TOLERANCE * max(1.0, float(np.abs(expected).max(initial=0.0))):
                raise ExportError(
                    f"the exported {task!r} differs from rsn2 by {diff:.3g} in {name} on a batch of {n} "
                    f"(allowed {TOLERANCE:g}); nothing was written"
                )
        if "label" in want:
            labels = got["label"].astype(str)
            top2 = np.sort(want["probabilities"], axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > 1e-4  # a near-tie may fall either way
            if (labels[clear] != want["label"][clear].astype(str)).any():
                raise ExportError(f"the exported {task!r} answers other labels than rsn2; nothing was written")
    return worst, batches


def _network_input(pre: Preprocessing, x: np.ndarray) -> np.ndarray:
    """rsn2's own preprocessing of the exported file's input ``x``."""
    if pre.input.kind == "images":
        return pre.prepare_named({"pixels": x})
    if pre.input.kind == "tabular":
        return pre.prepare_named({"features": x})
    return x


class _quiet_exporter:
    """Keep the exporter's progress lines and registration warnings off the user's terminal."""

    def __enter__(self) -> None:
        self._levels = {}
        for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
