"""torch.compile of a converted network: one graph per task, past Dynamo's recompile limit, no
graph break; equal to the eager forward; a compiled training step keeps frozen tasks bit-identical."""

import pytest
import torch
import torch._dynamo as dynamo
import torch.nn.functional as F

import rsn2
from rsn2.selection import select_subnetworks
from tests.user_models import MODELS, inputs_for, tasks_for


@pytest.mark.slow
def test_every_task_compiles_to_one_graph_past_the_recompile_limit():
    torch.manual_seed(0)
    names = tuple(f"t{i}" for i in range(dynamo.config.recompile_limit + 2))
    net = rsn2.multitask(MODELS["norms"][0](), tasks_for("norms", names, keep=0.09))
    x, y = inputs_for("norms")
    select_subnetworks(net, list(names), {t: (x, y) for t in names})
    net.freeze(["t0"])
    net.eval()
    dynamo.reset()
    dynamo.utils.counters.clear()
    compiled = {t: net.compile_task(t) for t in names}
    with torch.no_grad():
        for t in names:
            for _ in range(2):
                torch.testing.assert_close(compiled[t](x), net(x, t), rtol=1e-5, atol=1e-6)
    assert dict(dynamo.utils.counters["graph_break"]) == {}
    assert dynamo.utils.counters["stats"]["unique_graphs"] == len(names)  # one per task, none recompiled

    net.train()
    with torch.no_grad():
        frozen_before = net.eval()(x, "t0").clone()
    net.train()
    step = compiled["t1"]
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(step(x), y).backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x, "t0"), frozen_before)
        torch.testing.assert_close(compiled["t1"](x), net(x, "t1"), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiling_the_whole_network_still_answers_right():
    """torch.compile(net) (not compile_task) breaks the graph where the active task is read, and
    runs those parts eagerly: slower, but every task's answer is right."""
    torch.manual_seed(0)
    net = rsn2.multitask(MODELS["norms"][0](), tasks_for("norms"))
    x, y = inputs_for("norms")
    select_subnetworks(net, net.task_names, {t: (x, y) for t in net.task_names})
    net.eval()
    dynamo.reset()
    compiled = torch.compile(net)
    with torch.no_grad():
        for t in net.task_names:
            torch.testing.assert_close(compiled(x, task=t), net(x, t), rtol=1e-5, atol=1e-6)
