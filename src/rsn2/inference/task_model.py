"""One task of a multitask network as a standalone inference module: what predict, export and serve run."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rsn2.devices import module_device
from rsn2.errors import SpecError, TaskError
from rsn2.inference.fused_run import FusedRun
from rsn2.inference.policy import SparsePolicy
from rsn2.inference.subnetwork_kernel import SubnetworkKernel
from rsn2.inference.task_layers import task_layer
from rsn2.layers import MultitaskKernelLayer
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import TaskSpec
from rsn2.preprocessing import Preprocessing, preprocessing_of


class TaskModel(nn.Module):
    """Task ``task`` of a :class:`~rsn2.network.MultitaskNetwork`, holding only its own weights.

    Each multitask layer on the task's path becomes a :class:`SubnetworkKernel` (the task's share of
    the layer, packed for the sparse CPU kernels where ``policy`` says they win, else as a masked
    dense kernel); the task's other modules (adapter, head, activations) are copied. The module is a
    snapshot of the network when it is made: make it again after training.

    ``forward`` takes the network's input tensor; :meth:`predict` takes raw samples and applies the
    task's :class:`~rsn2.preprocessing.Preprocessing` (the one stored in the model file, for a model
    made by :meth:`load`) before and after, as ``rsn2 predict``, ``rsn2 serve`` and the ONNX export do.

    Shape:
        - Input: ``(N, *spec.input_shape)``, float (int64 token ids for tasks whose adapter starts
          with an embedding).
        - Output: ``(N, outputs)``: logits (classification) or predictions (regression), equal to
          ``network(x, task)`` within 1e-5 in fp32 (with bfloat16 values: the network with its
          multitask kernels rounded to bfloat16).

    Examples::

        >>> model = TaskModel.from_network(network, "mnist")          # doctest: +SKIP
        >>> model(torch.rand(8, 784)).shape                            # doctest: +SKIP
        torch.Size([8, 10])
        >>> half = TaskModel.from_network(network, "mnist", values="bfloat16")  # doctest: +SKIP
        >>> species = TaskModel.load("own.safetensors", "species")     # doctest: +SKIP
        >>> species.predict([[5.1, 3.5, 1.4, 0.2]])["label"]           # doctest: +SKIP
        array(['setosa'], dtype=object)
    """

    def __init__(
        self,
        spec: TaskSpec,
        steps: list[nn.Module],
        policy: SparsePolicy | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.preprocessing = preprocessing or Preprocessing.of(spec, None)
        self.steps = nn.Sequential(*FusedRun.grouped(steps, policy or SparsePolicy()))
        self.eval()

    @classmethod
    def from_network(
        cls,
        network: MultitaskNetwork,
        task: str,
        policy: SparsePolicy | None = None,
        *,
        sparse: bool = True,
        preprocessing: Preprocessing | None = None,
        values: str | None = None,
    ) -> TaskModel:
        """Copy task ``task``'s subnetworks and modules out of ``network``.

        ``policy``: when the packed sparse kernels run (default: ``SparsePolicy()``);
        ``values``: ``"float32"`` or ``"bfloat16"``, how the task's shares hold their values (default:
        the policy's, :attr:`~rsn2.inference.SparsePolicy.values`);
        ``sparse=False`` keeps only dense kernels (PyTorch operators throughout, as ONNX export needs);
        ``preprocessing``: what :meth:`predict` applies (default: the input tensor as it is).
        Raises :class:`~rsn2.errors.TaskError` for an unknown task or one not selected yet.
        """
        spec = network.task_spec(task)
        if not network.is_selected(task):
            raise TaskError(f"task {task!r} has no subnetwork yet: select and train it before making its model")
        policy = policy or SparsePolicy()
        if values is not None:
            policy = replace(policy, values=values)
        if not sparse:
            policy = replace(policy, enabled=False)
        return cls(spec, _steps(network, task, policy), policy, preprocessing).to(module_device(network))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        task: str,
        policy: SparsePolicy | None = None,
        *,
        sparse: bool = True,
        body: nn.Module | None = None,
        values: str | None = None,
    ) -> TaskModel:
        """Task ``task`` of the model file ``path``, with the preprocessing the file stores for it.
        ``body``: a fresh instance of the user's module, for a model made by :func:`rsn2.multitask`;
        ``values``: as for :meth:`from_network`."""
        from rsn2.io import load_model, read_metadata

        network = load_model(path, body=body)
        preprocessing = preprocessing_of(network.task_spec(task), read_metadata(path))
        return cls.from_network(network, task, policy, sparse=sparse, preprocessing=preprocessing, values=values)

    def predict(self, raw: Any) -> dict[str, np.ndarray]:
        """Answers for raw samples (see :meth:`Preprocessing.prepare`: feature rows, rows by column name,
        encoded images or pixels, strings): ``{"probabilities", "label"}`` or ``{"value"}``, one row
        per sample (:meth:`Preprocessing.finish`)."""
        x = torch.from_numpy(self.preprocessing.prepare(raw)).to(module_device(self))
        return self.preprocessing.finish(self(x).float().cpu().numpy())

    @property
    def nbytes(self) -> int:
        """Bytes of weights this module holds (packed and dense kernels, biases, task modules, what its
        fused runs packed beside them)."""
        total = sum(m.nbytes for m in self.modules() if isinstance(m, SubnetworkKernel | FusedRun))
        return total + sum(p.numel() * p.element_size() for p in self.parameters())  # kernels hold buffers only

    def kernels(self) -> list[SubnetworkKernel]:
        """The task's share of each multitask layer on its path, in order."""
        return [m for m in self.modules() if isinstance(m, SubnetworkKernel)]

    def forward(self, x: Tensor) -> Tensor:
        expected = self.spec.input_shape
        if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise TaskError(
                f"task {self.spec.name!r} takes input of shape (N, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )
        if self.spec.takes_tokens and x.dtype != torch.long:
            raise TaskError(f"task {self.spec.name!r} takes int64 token ids, got {x.dtype}")
        if not self.spec.takes_tokens and not x.dtype.is_floating_point:
            raise TaskError(f"task {self.spec.name!r} takes floating-point input, got {x.dtype}")
        with torch.no_grad():
            out: Tensor = self.steps(x)
        return out


def task_models(
    network: MultitaskNetwork,
    policy: SparsePolicy | None = None,
    *,
    dense_budget: float | None = 1.0,
    preprocessing: dict[str, Preprocessing] | None = None,
) -> dict[str, TaskModel]:
    """Every selected task of ``network`` as a :class:`TaskModel`, sharing one byte budget for dense copies.

    Each model is made by :meth:`TaskModel.from_network`, where the policy keeps a masked dense
    kernel for the layers the dense operators run faster (denser shares, and convolutions when the
    policy's ``conv_max_batch`` caps the batches they run sparse at). Together those copies may take
    at most ``dense_budget`` times the bytes of one dense model (the kernels on the longest task's
    path). The smallest copies are kept first; every
    other share holds only its packed form and runs the sparse kernels at every batch size (slower
    there, by the policy's own measurements, in exchange for the memory). ``None``: no budget.
    ``preprocessing``: each task's (default: the input tensor as it is).
    Shares the packed form cannot hold (denser than half their layer, off the CPU) keep their dense
    kernel whatever the budget.

    Raises:
        SpecError: ``dense_budget`` is negative.
    """
    if dense_budget is not None and dense_budget < 0:
        raise SpecError(
            f"dense_budget must be >= 0 (a multiple of one dense model's bytes) or None, got {dense_budget}"
        )
    policy = policy or SparsePolicy()
    tasks = [t for t in network.task_names if network.is_selected(t)]
    steps = {t: _steps(network, t, policy) for t in tasks}
    if dense_budget is not None:
        one_dense = max((_dense_model_bytes(network, t) for t in tasks), default=0)
        copies = [
            (step.dense_bytes, task, i)
            for task, task_steps in steps.items()
            for i, step in enumerate(task_steps)
            if isinstance(step, SubnetworkKernel) and step.dense_bytes and step.can_pack
        ]
        spent, budget = 0, dense_budget * one_dense
        for nbytes, task, i in sorted(copies):
            if spent + nbytes <= budget:
                spent += nbytes
                continue
            path_step = network.path(task)[i]
            assert isinstance(path_step.module, MultitaskKernelLayer) and path_step.subnetwork is not None
            steps[task][i] = SubnetworkKernel.from_layer(
                path_step.module, path_step.subnetwork, policy, dense_copy=False
            )
    device = module_device(network)
    given = preprocessing or {}
    return {
        t: TaskModel(network.task_spec(t), task_steps, policy, given.get(t)).to(device)
        for t, task_steps in steps.items()
    }


def _steps(network: MultitaskNetwork, task: str, policy: SparsePolicy) -> list[nn.Module]:
    """One module per step of ``task``'s run: its share of each multitask layer, copies of the rest,
    and (for a converted network) one copy of the body holding only the task's weights. Step ``i``
    is path step ``i`` wherever it is a :class:`SubnetworkKernel`."""
    steps: list[nn.Module] = []
    body_done = False
    for step in network.path(task):
        if step.key.startswith("body."):
            if not body_done:
                steps.append(_body_for(network, task, policy))
                body_done = True
            steps.append(nn.Identity())  # a no-op that keeps step i at path step i
        elif step.subnetwork is not None:
            assert isinstance(step.module, MultitaskKernelLayer)
            steps.append(SubnetworkKernel.from_layer(step.module, step.subnetwork, policy))
        else:
            steps.append(copy.deepcopy(step.module))
    if network.body is not None and not body_done:
        steps.insert(len(network.task_spec(task).adapter), _body_for(network, task, policy))
    return steps


def _body_for(network: MultitaskNetwork, task: str, policy: SparsePolicy) -> nn.Module:
    """A copy of ``network.body`` in which every multitask layer is task ``task``'s share of it as a
    plain module (see :func:`task_layer`); the multitask layers' kernels are never copied whole."""
    assert network.body is not None
    route = network.route(task)
    memo: dict[int, Any] = {}  # deepcopy puts these in place of the originals (and skips their insides)
    for module in network.body.modules():
        replacement = task_layer(module, route, policy)
        if replacement is not None:
            memo[id(module)] = replacement
    body = copy.deepcopy(network.body, memo)
    return body.eval()


def _dense_model_bytes(network: MultitaskNetwork, task: str) -> int:
    """Bytes of float32 kernels on ``task``'s path: what a dense model of the task holds in them."""
    layers = [s.module for s in network.path(task) if isinstance(s.module, MultitaskKernelLayer)]
    return sum(4 * layer.owner.numel() for layer in layers)
