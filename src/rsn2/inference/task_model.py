"""One task of a multitask network as a standalone inference module: what predict, export and serve run."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from rsn2.devices import module_device
from rsn2.errors import TaskError
from rsn2.inference.policy import SparsePolicy, get_policy
from rsn2.inference.subnetwork_kernel import SubnetworkKernel
from rsn2.layers import MultitaskKernelLayer
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import TaskSpec


class TaskModel(nn.Module):
    """Task ``task`` of a :class:`~rsn2.network.MultitaskNetwork`, holding only its own weights.

    Each multitask layer on the task's path becomes a :class:`SubnetworkKernel` (the task's share of
    the layer, packed for the sparse CPU kernels where ``policy`` says they win, else as a masked
    dense kernel); the task's other modules (adapter, head, activations) are copied. The module is a
    snapshot of the network when it is made: make it again after training.

    Shape:
        - Input: ``(N, *spec.input_shape)``, float (int64 token ids for tasks whose adapter starts
          with an embedding).
        - Output: ``(N, outputs)``: logits (classification) or predictions (regression), equal to
          ``network(x, task)`` within 1e-5 in fp32.

    Examples::

        >>> model = TaskModel.from_network(network, "mnist")          # doctest: +SKIP
        >>> model(torch.rand(8, 784)).shape                            # doctest: +SKIP
        torch.Size([8, 10])
    """

    def __init__(self, spec: TaskSpec, steps: list[nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        self.steps = nn.Sequential(*steps)
        self.eval()

    @classmethod
    def from_network(
        cls, network: MultitaskNetwork, task: str, policy: SparsePolicy | None = None, *, sparse: bool = True
    ) -> TaskModel:
        """Copy task ``task``'s subnetworks and modules out of ``network``.

        ``policy``: when the packed sparse kernels run (default: :func:`rsn2.inference.get_policy`);
        ``sparse=False`` keeps only dense kernels (PyTorch operators throughout, as ONNX export needs).
        Raises :class:`~rsn2.errors.TaskError` for an unknown task or one not selected yet.
        """
        spec = network.task(task)
        if not network.is_selected(task):
            raise TaskError(f"task {task!r} has no subnetwork yet: select and train it before making its model")
        policy = policy or get_policy()
        if not sparse:
            policy = SparsePolicy(enabled=False)
        steps: list[nn.Module] = []
        for step in network.path(task):
            if step.subnetwork is not None:
                assert isinstance(step.module, MultitaskKernelLayer)
                steps.append(SubnetworkKernel.from_layer(step.module, step.subnetwork, policy))
            else:
                steps.append(copy.deepcopy(step.module))
        return cls(spec, steps).to(module_device(network))

    @property
    def nbytes(self) -> int:
        """Bytes of weights this module holds (packed and dense kernels, biases, task modules)."""
        total = sum(s.nbytes for s in self.steps if isinstance(s, SubnetworkKernel))
        own = [p for s in self.steps if not isinstance(s, SubnetworkKernel) for p in s.parameters()]
        return total + sum(p.numel() * p.element_size() for p in own)

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
