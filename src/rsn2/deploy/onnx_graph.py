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

from rsn2.inference.values import from_bfloat16_bits, to_bfloat16_bits

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


def pack_sparse_initializers(model: onnx.ModelProto, *, bfloat16: bool = False) -> int:
    """Replace every mostly-zero float32 initializer of ``model``'s main graph by its nonzeros, a
    bitmask and the operators that rebuild it (see the module docstring); returns how many.

    ``bfloat16``: the weights hold values rounded to bfloat16 (``rsn2 export --values bfloat16``):
    every float32 initializer of at least :data:`MIN_PACKED_ELEMENTS` values that bfloat16 holds
    exactly is stored as bfloat16 (2 bytes a value; packed or not) and cast back to float32 by the
    graph (:func:`_widening`), also folded once when the session is made. Initializers bfloat16
    does not hold exactly (constants of the preprocessing) stay float32."""
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
        halve = bfloat16 and np.array_equal(from_bfloat16_bits(to_bfloat16_bits(flat)), flat)
        if not 0 < nonzero.size <= MAX_PACKED_DENSITY * flat.size:
            if halve:
                kept.append(_bfloat16_tensor(flat.reshape(dense.shape), f"{init.name}__bf16"))
                decoders.append(_widening(f"{init.name}__bf16", init.name))
            else:
                kept.append(init)
            continue
        kept += _packed_tensors(init.name, flat, nonzero, dense.shape, halve)
        decoders += _decoder(init.name, halve)
        packed += 1
    if packed:  # the constants every decoder reads
        kept += [
            numpy_helper.from_array(np.arange(8, dtype=np.uint8).reshape(1, 8), _SHIFTS),
            numpy_helper.from_array(np.array(1, dtype=np.uint8), _ONE),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), _ZERO),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), _FLAT),
            numpy_helper.from_array(np.array(0, dtype=np.int64), _AXIS0),
            numpy_helper.from_array(np.array(1, dtype=np.int64), _ONE_I64),
            numpy_helper.from_array(np.array([1], dtype=np.int64), _AXES1),
        ]
    if decoders:
        del graph.initializer[:]
        graph.initializer.extend(kept)
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(decoders + nodes)
    return packed


def _bfloat16_tensor(values: np.ndarray, name: str) -> TensorProto:
    """A BFLOAT16 initializer holding float32 ``values`` (exactly representable) in 2 bytes each."""
    bits = to_bfloat16_bits(values)
    return helper.make_tensor(name, TensorProto.BFLOAT16, values.shape, bits.tobytes(), raw=True)


def _widening(source: str, name: str) -> onnx.NodeProto:
    """A Cast of the bfloat16 initializer ``source`` to the float32 tensor ``name`` the graph reads."""
    return helper.make_node("Cast", [source], [name], name=f"{name}__widen", to=TensorProto.FLOAT)


def _packed_tensors(
    name: str, flat: np.ndarray, nonzero: np.ndarray, shape: tuple[int, ...], bfloat16: bool = False
) -> list[TensorProto]:
    bits = np.zeros(flat.size, dtype=np.uint8)
    bits[nonzero] = 1
    values = flat[nonzero].astype(np.float32)
    return [
        _bfloat16_tensor(values, f"{name}__values_bf16")
        if bfloat16
        else numpy_helper.from_array(values, f"{name}__values"),
        numpy_helper.from_array(np.packbits(bits, bitorder="little"), f"{name}__bits"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), f"{name}__start"),
        numpy_helper.from_array(np.array([flat.size], dtype=np.int64), f"{name}__size"),
        numpy_helper.from_array(np.asarray(shape, dtype=np.int64), f"{name}__shape"),
    ]


def _decoder(name: str, bfloat16: bool = False) -> list[onnx.NodeProto]:
    """Nodes computing ``name`` (dense) from ``name__values`` (or ``name__values_bf16``, widened) and
    ``name__bits``."""
    p = f"{name}__"

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [p + out], name=p + out, **attrs)

    widen = [_widening(p + "values_bf16", p + "values")] if bfloat16 else []
    return [
        *widen,
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
