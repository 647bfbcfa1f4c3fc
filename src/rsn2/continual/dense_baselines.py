"""Fine-tuning and EWC: one dense trunk trained by every task in turn, each task with its own head.

The network is a :class:`~rsn2.network.MultitaskNetwork` whose trunk is one subnetwork owning every
position (it runs the plain dense kernels), so these baselines share rsn2's layers, initialisation and
forward pass. Nothing is frozen: the loop below trains the trunk and the current task's head directly
(no :class:`~rsn2.training.IsolationGuard`), which is exactly what lets them forget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsn2.continual.config import TrainingSettings, stage_seed
from rsn2.continual.streams import ContinualTask
from rsn2.devices import module_device
from rsn2.network import MultitaskNetwork
from rsn2.training import evaluate, validation_split
from rsn2.training.precision import autocast, resolve_precision

Row = list[float | None]


class EWCPenalty:
    """``lambda/2 * sum_k sum_i F_k[i] (theta[i] - theta_k[i])^2`` over the tasks ``k`` consolidated so far."""

    def __init__(self, params: Sequence[nn.Parameter], strength: float) -> None:
        self.params = list(params)
        self.strength = strength
        self.anchors: list[tuple[list[Tensor], list[Tensor]]] = []  # (Fisher diagonal, theta_k) per task

    def consolidate(self, network: MultitaskNetwork, task: str, x: Tensor, y: Tensor) -> None:
        """Add task ``task``'s anchor: the empirical Fisher diagonal, the mean over the samples ``(x, y)``
        of the squared gradient of each sample's log-likelihood, and the current parameters."""
        fisher = [torch.zeros_like(p) for p in self.params]
        was_training = network.training
        network.eval()
        for i in range(len(x)):
            network.zero_grad(set_to_none=True)
            log_p = F.log_softmax(network(x[i : i + 1], task), dim=1)[0, y[i]]
            grads = torch.autograd.grad(log_p, self.params, allow_unused=True)
            for f, g in zip(fisher, grads, strict=True):
                if g is not None:
                    f.add_(g.detach() ** 2)
        network.train(was_training)
        self.anchors.append(([f / len(x) for f in fisher], [p.detach().clone() for p in self.params]))

    def __call__(self) -> Tensor:
        total = torch.zeros(())
        for fisher, theta in self.anchors:
            for p, f, t in zip(self.params, fisher, theta, strict=True):
                total = total + (f * (p - t) ** 2).sum()
        return 0.5 * self.strength * total


def trunk_parameters(network: MultitaskNetwork) -> list[nn.Parameter]:
    """The shared trunk's (or converted body's) parameters: kernels, the shared subnetwork's biases
    and per-subnetwork copies (normalization)."""
    return [p for name, p in network.named_parameters() if name.startswith(("trunk.", "body."))]


def head_parameters(network: MultitaskNetwork, task: str) -> list[nn.Parameter]:
    """Task ``task``'s own parameters (its head, and its adapter if any)."""
    prefixes = (f"heads.{task}.", f"adapters.{task}.")
    return [p for name, p in network.named_parameters() if name.startswith(prefixes)]


def train_sequential_dense(
    network: MultitaskNetwork,
    tasks: Sequence[ContinualTask],
    settings: TrainingSettings,
    seed: int,
    *,
    ewc_lambda: float = 0.0,
    fisher_samples: int = 500,
    evaluate_task: Callable[[MultitaskNetwork, ContinualTask], float],
) -> tuple[list[Row], list[float], str]:
    """Train the tasks in order on the shared trunk; returns R (rows of ``evaluate_task`` after each
    stage, ``None`` for tasks not trained yet), each stage's training seconds and the precision the
    stages trained in.

    Each stage trains ``settings.epochs`` epochs with the configured optimizer over the trunk and the
    task's head, in the precision :func:`~rsn2.training.train_stage` would choose, and keeps the epoch
    with the lowest validation loss (the split and rule :func:`~rsn2.training.train_stage` uses).
    ``ewc_lambda > 0`` adds the EWC penalty of every earlier task (its Fisher diagonal from
    ``fisher_samples`` training samples, taken after its stage).
    """
    trunk = trunk_parameters(network)
    penalty = EWCPenalty(trunk, ewc_lambda) if ewc_lambda > 0 else None
    rows: list[Row] = []
    seconds: list[float] = []
    device = module_device(network)
    precision = resolve_precision(settings.train_config(seed).precision, device, network)  # train_stage's rule
    for i, task in enumerate(tasks):
        config = settings.train_config(stage_seed(seed, i))
        train, (x_val, y_val) = validation_split(task.train, config.val_fraction, config.seed)
        params = trunk + head_parameters(network, task.name)
        optimizer = config.make_optimizer(params)
        gen = torch.Generator().manual_seed(config.seed + 1)
        best_loss, best = float("inf"), [p.detach().clone() for p in params]
        started = time.perf_counter()
        network.train()
        for _ in range(settings.epochs):
            for idx in torch.randperm(len(train.x), generator=gen).split(settings.batch_size):
                optimizer.zero_grad(set_to_none=True)
                with autocast(precision, device):
                    out = network(train.x[idx], task.name)
                loss = F.cross_entropy(out.float(), train.y[idx])
                if penalty is not None and penalty.anchors:
                    loss = loss + penalty()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            val_loss = evaluate(network, task.name, x_val, y_val)["loss"]
            network.train()
            if val_loss < best_loss:
                best_loss, best = val_loss, [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, b in zip(params, best, strict=True):
                p.copy_(b)
        if penalty is not None:
            n = min(fisher_samples, len(train.x))
            penalty.consolidate(network, task.name, train.x[:n], train.y[:n])
        seconds.append(time.perf_counter() - started)
        network.eval()
        rows.append([evaluate_task(network, t) if j <= i else None for j, t in enumerate(tasks)])
    return rows, seconds, precision
