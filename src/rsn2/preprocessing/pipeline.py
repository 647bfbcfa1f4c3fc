"""A task's whole preprocessing: raw input -> network input, network output -> answer.

The same :class:`Preprocessing` runs in ``rsn2 predict``, ``rsn2 serve``, :meth:`rsn2.TaskModel.predict`
and (as graph operators) in the exported ONNX file, so a raw sample gets the same answer on every path.
Answers are named as every path names them: ``probabilities`` (``(N, classes)`` float32) and
``label`` (``(N,)`` class names) for classification, ``value`` (``(N, outputs)`` float32, in the
training target's units) for regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsn2.errors import ModelFileError, SpecError
from rsn2.network.spec import TaskSpec
from rsn2.preprocessing.inputs import (
    ImageInput,
    IOField,
    TabularInput,
    TaskInput,
    TensorInput,
    TextInput,
    input_from_dict,
    input_to_dict,
)

INPUTS_KEY = "inputs"
"""Key of the model file's user metadata holding each task's stored input description."""


@dataclass(frozen=True)
class Preprocessing:
    """What turns raw samples into ``task``'s input and its outputs into answers.

    ``input``: the raw input's kind and fitted statistics; ``classes``: the class names (label order;
    the class indices as strings when the task stores none); ``target_range``: the training targets'
    ``(low, high)`` for a regression task trained on min-max scaled targets (None: values as the
    network gives them).
    """

    task: str
    kind: str
    input: TaskInput
    outputs: int
    classes: tuple[str, ...] | None = None
    target_range: tuple[float, float] | None = None

    @classmethod
    def of(cls, spec: TaskSpec, stored: Mapping[str, Any] | None) -> Preprocessing:
        """``spec``'s preprocessing from its stored description (None: the tensor as it is)."""
        if stored is None:
            inp: TaskInput = TensorInput(
                tuple(spec.input_shape),
                spec.input_dtype,
                spec.vocabulary_size if spec.takes_tokens else None,
            )
            target_range = None
        else:
            inp = input_from_dict(dict(stored))
            if tuple(inp.input_shape) != tuple(spec.input_shape):
                raise ModelFileError(
                    f"task {spec.name!r}: the stored input gives shape {list(inp.input_shape)}, the network takes "
                    f"{list(spec.input_shape)}"
                )
            raw_range = stored.get("target_range")
            target_range = (float(raw_range[0]), float(raw_range[1])) if raw_range else None
        outputs = spec.outputs
        if outputs is None:  # a head ending in a layer without out_features (an activation)
            raise SpecError(f"task {spec.name!r}: its head must end in a layer with out_features to be served")
        classes = None
        if spec.kind == "classification":
            classes = tuple(spec.classes) if spec.classes else tuple(str(i) for i in range(outputs))
        return cls(spec.name, spec.kind, inp, outputs, classes, target_range)

    def stored(self) -> dict[str, Any] | None:
        """The description a model file keeps (None for a tensor input: nothing to store)."""
        if isinstance(self.input, TensorInput):
            return None
        return {**input_to_dict(self.input), "target_range": list(self.target_range) if self.target_range else None}

    def raw_inputs(self) -> list[IOField]:
        """The named raw inputs the task takes (any one of them per request)."""
        return self.input.raw_fields()

    def raw_outputs(self) -> list[IOField]:
        """The named answers: ``probabilities`` and ``label``, or ``value``."""
        if self.classes is not None:
            return [IOField("probabilities", "FP32", (-1, len(self.classes))), IOField("label", "BYTES", (-1,))]
        return [IOField("value", "FP32", (-1, self.outputs))]

    def prepare(self, raw: Any) -> np.ndarray:
        """The network input ``(N, *input_shape)`` (float32, or int64 token ids) of raw samples."""
        return self.input.prepare(raw)

    def prepare_named(self, named: Mapping[str, Any]) -> np.ndarray:
        """The network input of named raw inputs (one of :meth:`raw_inputs`, or a tabular task's columns)."""
        return self.input.prepare_named(named)

    @property
    def target_scale(self) -> tuple[float, float]:
        """``(span, low)``: a regression output ``y`` is ``y * span + low`` in the target's units."""
        if self.target_range is None:
            return 1.0, 0.0
        low, high = self.target_range
        return (high - low if high > low else 1.0), low

    def finish(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """The answers for network outputs ``(N, outputs)``: see the module docstring."""
        out = np.asarray(outputs, dtype=np.float32).reshape(len(outputs), -1)
        if self.classes is None:
            span, low = self.target_scale
            return {"value": (out.astype(np.float64) * span + low).astype(np.float32)}
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        probabilities = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        labels = np.asarray(self.classes, dtype=object)[probabilities.argmax(axis=1)]
        return {"probabilities": probabilities, "label": labels}

    def describe(self) -> dict[str, Any]:
        """A JSON summary: raw inputs and outputs, and what is done to them (for ``rsn2 info`` and serving)."""
        inp = self.input
        steps: dict[str, Any] = {"input": inp.kind}
        if isinstance(inp, TabularInput):
            steps["columns"] = inp.columns
            steps["scaling"] = "min-max with the training data's per-feature ranges"
        elif isinstance(inp, ImageInput):
            steps["pixels"] = "converted to the channels, resized (bilinear) to the size, divided by 255"
            steps["channels"], steps["height"], steps["width"] = inp.input_shape
        elif isinstance(inp, TextInput):
            steps["tokens"] = f"the stored vocabulary's ids, {inp.length} a text (rsn2 info --json: token_rule)"
        if self.target_range is not None:
            steps["target_range"] = list(self.target_range)
        return {
            "inputs": [f.to_dict() for f in self.raw_inputs()],
            "outputs": [f.to_dict() for f in self.raw_outputs()],
            "preprocessing": steps,
        }


def preprocessing_of(spec: TaskSpec, metadata: Mapping[str, Any]) -> Preprocessing:
    """``spec``'s preprocessing as a model file's metadata (:func:`rsn2.io.read_metadata`) stores it."""
    stored = metadata.get("user", {}).get(INPUTS_KEY, {}).get(spec.name)
    return Preprocessing.of(spec, stored)
