"""Edits of an exported ONNX graph: sparse weights stored as their nonzeros, class names as a label output.

A task's kernels are mostly zeros (the positions other tasks own). :func:`pack_sparse_initializers`
stores each such kernel as its nonzero values plus a bitmask of where they go (one bit a position),
and puts in front of the graph the standard operators that rebuild the dense kernel from them
(BitShift, BitwiseAnd, CumSum, Gather, Where: opset 18). Their inputs are all initializers, so
ONNX Runtime folds them into the dense kernel once, when the session is made: the file is small, the
session runs the dense graph. (ONNX's own ``sparse_initializer`` takes an int64 coordinate beside
each value: 12 bytes a nonzero instead of 4 and a bit per position.)
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_PACKED_ELEMENTS = 1024
"""Smallest initializer worth packing (smaller ones stay dense)."""

MAX_PACKED_DENSITY = 0.5
"""Initializers with more nonzeros than this share stay dense (packing would not save bytes)."""

_SHIFTS = "rsn2_bit_shifts"
_ONE = "rsn2_one_u8"
_ZERO = "rsn2_zero_f32"
_FLAT = "rsn2_flat_shape"
_AXIS0 = "rsn2_axis0"
_ONE_I64 = "rsn2_one_i64"
_AXES1 = "rsn2_axes1"


def pack_sparse_initializers(model: onnx.ModelProto) -> int:
    """Replace every mostly-zero float32 initializer of ``model``'s main graph by its nonzeros, a
    bitmask and the operators that rebuild it (see the module docstring); returns how many."""
    graph = model.graph
    decoders: list[onnx.NodeProto] = []
    kept: list[onnx.TensorProto] = []
    packed = 0
    for init in graph.initializer:
        dense = numpy_helper.to_array(init) if init.data_type == TensorProto.FLOAT else None
        if dense is None or dense.size < MIN_PACKED_ELEMENTS:
            kept.append(init)
            continue
        flat = dense.reshape(-1)
        nonzero = np.flatnonzero(flat)
        if not 0 < nonzero.size <= MAX_PACKED_DENSITY * flat.size:
            kept.append(init)
            continue
        kept += _packed_tensors(init.name, flat, nonzero, dense.shape)
        decoders += _decoder(init.name)
        packed += 1
    if packed:
        kept += [
            numpy_helper.from_array(np.arange(8, dtype=np.uint8).reshape(1, 8), _SHIFTS),
            numpy_helper.from_array(np.array(1, dtype=np.uint8), _ONE),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), _ZERO),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), _FLAT),
            numpy_helper.from_array(np.array(0, dtype=np.int64), _AXIS0),
            numpy_helper.from_array(np.array(1, dtype=np.int64), _ONE_I64),
            numpy_helper.from_array(np.array([1], dtype=np.int64), _AXES1),
        ]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(decoders + nodes)
    return packed


def _packed_tensors(name: str, flat: np.ndarray, nonzero: np.ndarray, shape: tuple[int, ...]) -> list[TensorProto]:
    bits = np.zeros(flat.size, dtype=np.uint8)
    bits[nonzero] = 1
    return [
        numpy_helper.from_array(flat[nonzero].astype(np.float32), f"{name}__values"),
        numpy_helper.from_array(np.packbits(bits, bitorder="little"), f"{name}__bits"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), f"{name}__start"),
        numpy_helper.from_array(np.array([flat.size], dtype=np.int64), f"{name}__size"),
        numpy_helper.from_array(np.asarray(shape, dtype=np.int64), f"{name}__shape"),
    ]


def _decoder(name: str) -> list[onnx.NodeProto]:
    """Nodes computing ``name`` (dense) from ``name__values`` and ``name__bits``."""
    p = f"{name}__"

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [p + out], name=p + out, **attrs)

    return [
        node("Unsqueeze", [p + "bits", _AXES1], "bytes"),  # (B, 1)
        node("BitShift", [p + "bytes", _SHIFTS], "shifted", direction="RIGHT"),  # (B, 8)
        node("BitwiseAnd", [p + "shifted", _ONE], "bit"),
        node("Reshape", [p + "bit", _FLAT], "bit_flat"),
        node("Slice", [p + "bit_flat", p + "start", p + "size"], "present_u8"),  # (size,)
        node("Cast", [p + "present_u8"], "present", to=TensorProto.BOOL),
        node("Cast", [p + "present_u8"], "present_i64", to=TensorProto.INT64),
        node("CumSum", [p + "present_i64", _AXIS0], "rank"),  # 1-based rank of each nonzero
        node("Sub", [p + "rank", _ONE_I64], "index"),  # -1 before the first nonzero: Where drops it
        node("Gather", [p + "values", p + "index"], "spread", axis=0),
        node("Where", [p + "present", p + "spread", _ZERO], "flat"),
        helper.make_node("Reshape", [p + "flat", p + "shape"], [name], name=p + "dense"),
    ]


def add_label_output(model: onnx.ModelProto, index_output: str, classes: list[str], label_output: str) -> None:
    """Replace graph output ``index_output`` (int64 class indices, ``(N,)``) by ``label_output``: the
    class names, a string tensor ``(N,)``."""
    graph = model.graph
    names = f"{label_output}__classes"
    graph.initializer.append(
        helper.make_tensor(names, TensorProto.STRING, [len(classes)], cast(Any, [c.encode() for c in classes]))
    )
    graph.node.append(helper.make_node("Gather", [names, index_output], [label_output], name=label_output, axis=0))
    outputs = [o for o in graph.output if o.name != index_output]
    batch = next(o for o in graph.output if o.name == index_output).type.tensor_type.shape.dim[0]
    label = helper.make_tensor_value_info(label_output, TensorProto.STRING, [batch.dim_param or None])
    del graph.output[:]
    graph.output.extend([*outputs, label])
