"""rsn2.multitask: a user's nn.Module made multitask; what it converts, what it refuses, and why."""

import copy

import pytest
import torch
from torch import nn

import rsn2
from rsn2.errors import SpecError, TaskError
from rsn2.layers import (
    MultitaskConv1d,
    MultitaskConv2d,
    MultitaskEmbedding,
    MultitaskLinear,
    MultitaskMultiheadAttention,
    PerSubnetwork,
)
from rsn2.network import CONVERSIONS, TaskSpec, linear
from rsn2.selection import select_subnetworks
from tests.user_models import MODELS, NormMLP, TinyEncoder, TinyResNet, inputs_for, tasks_for


def _selected(model: str, keep: float = 0.3):
    torch.manual_seed(0)
    net = rsn2.multitask(MODELS[model][0](), tasks_for(model, keep=keep))
    x, y = inputs_for(model)
    select_subnetworks(net, net.task_names, {t: (x, y) for t in net.task_names})
    return net, x


def test_every_supported_layer_is_swapped_and_the_original_is_untouched():
    user = NormMLP()
    before = {k: v.clone() for k, v in user.state_dict().items()}
    net = rsn2.multitask(user, tasks_for("norms"))
    body = net.body
    assert isinstance(body.conv, MultitaskConv1d) and isinstance(body.fc, MultitaskLinear)
    assert all(isinstance(m, PerSubnetwork) for m in (body.group, body.layer_norm, body.batch_norm))
    assert torch.equal(body.fc.weight, user.fc.weight) and body.fc.weight is not user.fc.weight
    assert isinstance(user.fc, nn.Linear)  # a copy was converted
    assert all(torch.equal(v, user.state_dict()[k]) for k, v in before.items())
    enc = rsn2.multitask(TinyEncoder(), tasks_for("encoder")).body
    assert isinstance(enc.embed, MultitaskEmbedding)
    assert isinstance(enc.encoder.self_attn, MultitaskMultiheadAttention)
    assert isinstance(rsn2.multitask(TinyResNet(), tasks_for("resnet")).body.block.conv1, MultitaskConv2d)


def test_inplace_converts_the_given_module():
    user = TinyResNet()
    net = rsn2.multitask(user, tasks_for("resnet"), inplace=True)
    assert net.body is user and isinstance(user.stem, MultitaskConv2d)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_forward_signature_is_untouched_and_the_task_is_state(model):
    net, x = _selected(model)
    net.eval()
    with net.task("a"):
        a = net(x)
        body_a = net.body(x)  # the user's own module runs as task a too
    b = net(x, task="b")
    assert a.shape == b.shape == (len(x), 3)
    assert not torch.equal(a, b)
    assert torch.equal(net(x, "a"), a)
    with net.task("b"):
        assert not torch.equal(net.body(x), body_a)
    with pytest.raises(TaskError, match="no active task"):
        net.body(x)


def test_converted_attention_matches_torch_on_a_task_that_owns_everything():
    """A task keeping every position computes exactly what the original module computed."""
    torch.manual_seed(0)
    user = TinyEncoder().eval()
    task = TaskSpec("all", "classification", (6,), head=[], keep_fraction=1.0, token_input=True)
    net = rsn2.multitask(user, [task]).eval()
    x, y = inputs_for("encoder")
    select_subnetworks(net, ["all"], {"all": (x, y)}, reinit=False, rescale=False)
    for proj in (net.body.encoder.self_attn.q_proj, net.body.encoder.self_attn.k_proj):
        nn.init.zeros_(proj.biases["all"])
    in_bias = user.encoder.self_attn.in_proj_bias.detach()
    with torch.no_grad():
        for i, proj in enumerate(
            (net.body.encoder.self_attn.q_proj, net.body.encoder.self_attn.k_proj, net.body.encoder.self_attn.v_proj)
        ):
            proj.biases["all"].copy_(in_bias[8 * i : 8 * (i + 1)])
        net.body.encoder.self_attn.out_proj.biases["all"].copy_(user.encoder.self_attn.out_proj.bias)
        for name in ("linear1", "linear2"):
            getattr(net.body.encoder, name).biases["all"].copy_(getattr(user.encoder, name).bias)
    with torch.no_grad():
        torch.testing.assert_close(net(x, "all"), user(x), rtol=1e-5, atol=1e-6)


UNSUPPORTED = {
    "PReLU (a parameter)": (nn.Sequential(nn.Linear(4, 4), nn.PReLU()), "1"),
    "InstanceNorm2d with affine": (nn.Sequential(nn.Conv2d(3, 3, 1), nn.InstanceNorm2d(3, affine=True)), "1"),
    "GRU": (nn.Sequential(nn.GRU(4, 4)), "0"),
    "Bilinear": (nn.Sequential(nn.Bilinear(4, 4, 4)), "0"),
    "ConvTranspose2d": (nn.Sequential(nn.ConvTranspose2d(3, 3, 3)), "0"),
    "Conv3d": (nn.Sequential(nn.Conv3d(3, 3, 1)), "0"),
    "a Linear subclass": (nn.Sequential(type("MyLinear", (nn.Linear,), {})(4, 4)), "0"),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_an_unsupported_module_with_parameters_is_refused_by_name_before_anything_changes(kind):
    model, name = UNSUPPORTED[kind]
    before = [type(m) for m in model.modules()]
    task = TaskSpec("a", "classification", (4,), head=[linear(4, 2)])
    with pytest.raises(
        SpecError, match=rf"{name} \(.*\) holds .* supported are nn\.Linear.*shared_frozen=\['{name}'\]"
    ):
        rsn2.multitask(model, [task], inplace=True)
    assert [type(m) for m in model.modules()] == before


def test_the_refusal_lists_every_problem_and_marking_a_module_resolves_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 4), nn.PReLU())
    task = TaskSpec("a", "classification", (4,), head=[linear(4, 2)])
    with pytest.raises(SpecError) as info:
        rsn2.multitask(model, [task])
    assert "'1'" in str(info.value) and "'3'" in str(info.value)
    net = rsn2.multitask(model, [task], shared_frozen=["1"], dense_per_task=["3"])
    assert isinstance(net.body[3], PerSubnetwork) and not net.body[1].weight.requires_grad
    with pytest.raises(SpecError, match="no module named"):
        rsn2.multitask(model, [task], shared_frozen=["7"])


def test_unsupported_settings_of_a_supported_kind_are_refused():
    task = TaskSpec("a", "classification", (3, 4, 4), head=[linear(6 * 16, 2)])
    for conv in (nn.Conv2d(3, 6, 1, groups=3), nn.Conv2d(3, 6, 1, padding_mode="reflect")):
        with pytest.raises(SpecError, match="is not supported"):
            rsn2.multitask(nn.Sequential(conv, nn.Flatten()), [task])


class _ReadsAChildsWeight(nn.Module):
    """A parent that reads its child's weight in its own forward (tying by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + x @ self.fc.weight


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(self.a(x))


def test_a_parameter_read_outside_its_module_or_tied_is_refused():
    task = TaskSpec("a", "classification", (4,), head=[linear(4, 2)])
    with pytest.raises(SpecError, match=r"parameter 'fc.weight' is read outside 'fc'"):
        rsn2.multitask(_ReadsAChildsWeight(), [task])
    with pytest.raises(SpecError, match="tied weights"):
        rsn2.multitask(_Tied(), [task])


def test_the_conversion_table_documents_what_is_supported():
    assert {nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding, nn.MultiheadAttention} <= set(CONVERSIONS)
    assert {nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm} <= set(CONVERSIONS)


def test_a_model_that_does_not_fit_the_task_input_is_refused_with_the_shape():
    with pytest.raises(SpecError, match=r"does not run on task 'a'.s input of shape \(5,\)"):
        rsn2.multitask(nn.Sequential(nn.Linear(4, 4)), [TaskSpec("a", "classification", (5,), head=[])])


def test_a_task_without_head_outputs_the_body_and_heads_are_per_task():
    net = rsn2.multitask(
        nn.Sequential(nn.Linear(4, 3)), [TaskSpec("a", "classification", (4,), head=[], keep_fraction=0.5)]
    )
    select_subnetworks(net, ["a"], {"a": (torch.randn(8, 4), torch.randint(0, 3, (8,)))})
    assert net(torch.randn(2, 4), "a").shape == (2, 3)
    with pytest.raises(SpecError, match="already a MultitaskNetwork"):
        rsn2.multitask(net, [TaskSpec("b", "classification", (4,), head=[])])


def test_the_active_task_is_per_thread_and_per_asyncio_task():
    """Threads (a server's workers) and coroutines running different tasks at once never mix them."""
    import asyncio
    import threading

    net, x = _selected("encoder")
    net.eval()
    with torch.no_grad():
        expected = {t: net(x, t) for t in net.task_names}
    barrier = threading.Barrier(8)
    results: dict[int, bool] = {}

    def worker(i: int) -> None:
        task = net.task_names[i % 2]
        with net.task(task):
            barrier.wait()  # every thread inside its own `with` at once
            with torch.no_grad():
                results[i] = all(torch.equal(net(x), expected[task]) for _ in range(5))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == dict.fromkeys(range(8), True)

    async def run(task: str) -> bool:
        with net.task(task):
            await asyncio.sleep(0)  # the other coroutine runs in between
            with torch.no_grad():
                return torch.equal(net(x), expected[task])

    async def both() -> list[bool]:
        return list(await asyncio.gather(run("a"), run("b"), run("a")))

    assert asyncio.run(both()) == [True, True, True]


def test_everything_built_on_the_network_runs_on_a_converted_one():
    """Magnitude and random selection, the signal report (ReLUs inside the user's module, a block's
    ReLU recorded each time it runs) and serving over the Open Inference Protocol."""
    from fastapi.testclient import TestClient

    from rsn2.deploy.server import ServeSettings, create_app
    from rsn2.selection import subnetwork_signal

    for method in ("magnitude", "random"):
        torch.manual_seed(0)
        net = rsn2.multitask(MODELS["resnet"][0](), tasks_for("resnet"))
        x, y = inputs_for("resnet")
        select_subnetworks(net, net.task_names, {t: (x, y) for t in net.task_names}, method=method)
        assert rsn2.ownership_problems(net) == []
    report = subnetwork_signal(net, "a", x)
    assert [layer.key for layer in report.layers] == ["body.block.relu", "body.block.relu#2"]
    net.eval()
    with TestClient(create_app(net, ServeSettings(max_batch=4, max_wait_ms=1, max_body_bytes=1 << 20))) as client:
        body = {
            "inputs": [{"name": "input", "shape": [2, 3, 8, 8], "datatype": "FP32", "data": x[:2].flatten().tolist()}]
        }
        answer = client.post("/v2/models/b/infer", json=body).json()
    probabilities = next(o for o in answer["outputs"] if o["name"] == "probabilities")
    expected = torch.softmax(net(x[:2], "b"), dim=1).flatten()
    torch.testing.assert_close(torch.tensor(probabilities["data"]), expected, rtol=1e-5, atol=1e-6)


def test_a_refused_conversion_in_place_changes_nothing():
    model = nn.Sequential(nn.Conv2d(3, 6, 1, groups=3), nn.PReLU(), nn.Flatten())
    task = TaskSpec("a", "classification", (3, 4, 4), head=[linear(96, 2)])
    before = [(type(m), [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    with pytest.raises(SpecError, match="groups=3 is not supported"):
        rsn2.multitask(model, [task], shared_frozen=["1"], inplace=True)
    assert [(type(m), [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()] == before


def test_tasks_share_one_subnetwork_in_the_modules_they_name_and_own_the_rest():
    torch.manual_seed(0)
    shared = [rsn2.SharedSubnetwork("both", ["a", "b"], ["body.block"], 0.4)]
    net = rsn2.multitask(TinyResNet(), tasks_for("resnet"), shared=shared)
    for task in ("a", "b"):
        reads = {s.key: s.subnetwork for s in net.path(task) if s.subnetwork is not None}
        assert {k: v for k, v in reads.items() if k.startswith("body.block.")} == {
            k: "both" for k in ("body.block.conv1", "body.block.bn1", "body.block.conv2", "body.block.bn2")
        }
        assert reads["body.stem"] == reads["body.bn"] == task
    x, y = inputs_for("resnet")
    select_subnetworks(net, net.task_names, {t: (x, y) for t in net.task_names})
    assert rsn2.ownership_problems(net) == []
    conv1 = net.body.block.conv1
    assert conv1.subnetworks == ["both"] and conv1.owned_count("both") == round(0.4 * conv1.total_positions)
    assert net.body.stem.subnetworks == ["a", "b"]


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (["body.nowhere"], r"'body.nowhere' is not a module that is or holds a converted layer"),
        (["body.pool"], r"'body.pool' is not a module"),
        ([0, 1], "names trunk layers"),
        (["block"], r"\['block'\] are not body module keys"),
        (["body", 3], "all trunk indices or all body module keys"),
    ],
)
def test_a_shared_group_naming_no_converted_module_is_refused_before_anything_changes(layers, message):
    model = TinyResNet()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(SpecError, match=message):
        rsn2.multitask(
            model, tasks_for("resnet"), shared=[rsn2.SharedSubnetwork("s", ["a", "b"], layers, 0.4)], inplace=True
        )
    assert isinstance(model.stem, nn.Conv2d)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_task_added_later_cannot_join_a_group_of_a_network_without_body_keys():
    net = rsn2.multitask(TinyResNet(), tasks_for("resnet"))
    later = tasks_for("resnet", names=("c", "d"))
    with pytest.raises(SpecError, match="names trunk layers"):
        net.add_tasks(later, [rsn2.SharedSubnetwork("s", ["c", "d"], [0], 0.2)])
    net.add_tasks(later, [rsn2.SharedSubnetwork("s", ["c", "d"], ["body"], 0.2)])
    assert {s.subnetwork for s in net.path("c") if s.key.startswith("body.")} == {"s"}
