"""One task of a model as a standalone ONNX file, checked against rsn2 before it is kept."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rsn2.devices import module_device
from rsn2.errors import ExportError
from rsn2.inference import TaskModel
from rsn2.network.model import MultitaskNetwork

TOLERANCE = 1e-5
"""Largest allowed difference (absolute, and relative to the output's scale) between ONNX Runtime and rsn2."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and checked: the file, its size, the batch sizes compared and
    the largest absolute difference between ONNX Runtime's outputs and the network's."""

    path: Path
    bytes: int
    batches: tuple[int, ...]
    max_abs_diff: float


def sample_inputs(network: MultitaskNetwork, task: str, batch: int, seed: int = 0) -> Tensor:
    """A seeded batch of valid inputs for ``task``: uniform floats in [0, 1), or token ids below the
    embedding's vocabulary size. Shape ``(batch, *input_shape)``."""
    spec = network.task(task)
    gen = torch.Generator().manual_seed(seed)
    if spec.takes_tokens:
        vocabulary = int(spec.adapter[0].params["num_embeddings"])
        return torch.randint(0, vocabulary, (batch, *spec.input_shape), generator=gen)
    return torch.rand((batch, *spec.input_shape), generator=gen)


def export_onnx(network: MultitaskNetwork, task: str, path: str | os.PathLike[str], opset: int = 18) -> ExportReport:
    """Write ``task`` as an ONNX model to ``path``: its own weights only, input ``"input"`` and output
    ``"output"`` with a dynamic batch axis.

    The model is exported from :class:`~rsn2.inference.TaskModel` with dense kernels (zeros where the
    task owns nothing) through ``torch.onnx.export`` (the ``torch.export`` based exporter), then run in
    ONNX Runtime on seeded batches of 1 and 7 samples. Only when every output equals the network's
    own within :data:`TOLERANCE` is the file moved to ``path`` (atomically); otherwise nothing is
    written and :class:`~rsn2.errors.ExportError` says by how much they differ.
    """
    import onnxruntime as ort

    target = Path(path)
    if target.is_dir() or not target.parent.is_dir():
        raise ExportError(f"cannot write {target}: give a file path in an existing folder")
    model = TaskModel.from_network(network, task, sparse=False).cpu()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        batch = torch.export.Dim("batch", min=1)
        with warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (sample_inputs(network, task, 2),),
                str(tmp),
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        worst, batches = 0.0, (1, 7)
        for n in batches:
            x = sample_inputs(network, task, n, seed=n)
            got = session.run(["output"], {"input": x.numpy()})[0]
            with torch.no_grad():
                want = network.eval()(x.to(module_device(network)), task).float().cpu().numpy()
            if got.shape != want.shape:
                raise ExportError(f"the exported {task!r} gives outputs of shape {got.shape}, rsn2 {want.shape}")
            diff = float(np.abs(got - want).max(initial=0.0))
            worst = max(worst, diff)
            if diff > TOLERANCE * max(1.0, float(np.abs(want).max(initial=0.0))):
                raise ExportError(
                    f"the exported {task!r} differs from rsn2 by {diff:.3g} on a batch of {n} "
                    f"(allowed {TOLERANCE:g}); nothing was written"
                )
        os.replace(tmp, target)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"exporting task {task!r} to ONNX failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(target, target.stat().st_size, batches, worst)


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
