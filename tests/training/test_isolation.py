"""The isolation guarantee: later stages leave earlier tasks bit-identical, whatever the optimizer."""

import dataclasses
import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsn2.errors import FrozenSubnetworkError, TaskError, TrainingError
from rsn2.network import MultitaskNetwork, NetworkSpec, SharedSubnetwork, TaskSpec, linear, relu
from rsn2.selection import SelectionConfig, owner_maps, ownership_problems, select_subnetworks
from rsn2.training import IsolationGuard, TrainConfig, fit_stage, predict, train_stage, train_step
from rsn2.training.isolation import needs_restore, stage_parameters, trainable_masks
from tests.helpers import conv_spec, mlp_spec, random_data, snapshot

OPTIMIZERS = {
    "adam": functools.partial(torch.optim.Adam, lr=1e-2),
    "adamw": functools.partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.5),
    "sgd-momentum": functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.1),
    # no weight decay: the guard skips its write-back (zero gradients move nothing), see needs_restore
    "sgd-nesterov-no-decay": functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True),
    "adam-fused": functools.partial(torch.optim.Adam, lr=1e-2, fused=True),
    "adam-amsgrad": functools.partial(torch.optim.Adam, lr=1e-2, amsgrad=True),
    # the optimizers TrainConfig makes itself (fused where the device allows, rescale_lr param groups)
    "config-adam": {"optimizer": "adam", "lr": 1e-2},
    "config-adamw-fused-decay": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.5},
    "config-sgd-decay": {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.1},
}
FAST = TrainConfig(batch_size=16, max_epochs=2, patience=5, progress=False)


def _fit(net, data, config, name, **kw):
    """fit_stage with optimizer ``name``: a factory given to the stage, or TrainConfig settings."""
    choice = OPTIMIZERS[name]
    if isinstance(choice, dict):
        return fit_stage(net, data, dataclasses.replace(config, **choice), **kw)
    return fit_stage(net, data, config, optimizer_factory=choice, **kw)


def _frozen_entries(network: MultitaskNetwork, tasks: list[str]) -> dict[str, torch.Tensor]:
    """Copies of everything the given tasks read: their positions, biases and task modules."""
    out = {}
    for key, layer in network.multitask_layers():
        for sub in layer.subnetworks:
            if any(sub in network.subnetworks_of([t]) for t in tasks):
                out[f"{key}.{sub}.w"] = layer.weight.detach()[layer.mask(sub)].clone()
                out[f"{key}.{sub}.b"] = layer.biases[sub].detach().clone()
    return out


# every precision and memory format a stage can train in ("auto" resolves to one of these per device)
NUMERICS = {
    "fp32": {"precision": "fp32", "memory_format": "contiguous"},
    "bf16-channels-last": {"precision": "bf16", "memory_format": "channels_last"},
    "fp32-channels-last": {"precision": "fp32", "memory_format": "channels_last"},
}


@pytest.mark.parametrize("numerics", list(NUMERICS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("spec_fn", [mlp_spec, conv_spec], ids=["mlp", "conv"])
def test_later_stage_leaves_earlier_tasks_bit_identical(name, spec_fn, numerics):
    config = dataclasses.replace(FAST, **NUMERICS[numerics])
    torch.manual_seed(0)
    net = MultitaskNetwork(spec_fn())
    first, second = net.task_names[0], net.task_names[1]
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    # stage 1 also uses the optimizer under test, so momentum/Adam state exists for shared kernels
    _fit(net, {first: data[first]}, config, name)
    out_before = predict(net, first, data[first].x)
    entries_before = _frozen_entries(net, [first])
    weights_before = {k: layer.weight.detach().clone() for k, layer in net.multitask_layers()}
    owners = owner_maps(net)

    _fit(net, {second: data[second]}, config, name)
    assert ownership_problems(net, owners) == []

    assert torch.equal(predict(net, first, data[first].x), out_before)
    entries_after = _frozen_entries(net, [first])
    assert all(torch.equal(entries_before[k], entries_after[k]) for k in entries_before)
    learned = False
    for key, layer in net.multitask_layers():
        free = layer.free_mask  # still-free positions were never touched
        assert torch.equal(layer.weight.detach()[free], weights_before[key][free])
        if second in layer.subnetworks:
            learned |= not torch.equal(
                layer.weight.detach()[layer.mask(second)], weights_before[key][layer.mask(second)]
            )
    assert learned, "the later task's own weights should have changed (rescaled at selection, then trained)"
    assert net.frozen == {first, second}


def test_guard_protects_even_when_optimizer_holds_every_parameter():
    torch.manual_seed(1)
    net = MultitaskNetwork(mlp_spec(n_tasks=2))
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, {"t0": data["t0"]}, FAST)
    before = snapshot(net)
    select_subnetworks(net, ["t1"], {"t1": (data["t1"].x[:16], data["t1"].y[:16])})
    selected = snapshot(net)
    everything = list(net.parameters())  # includes t0's biases and head and whole kernels
    train_stage(
        net,
        {"t1": data["t1"]},
        FAST,
        optimizer_factory=lambda _: torch.optim.AdamW(everything, lr=0.05, weight_decay=1.0),
    )
    after = snapshot(net)
    for key, layer in net.multitask_layers():
        not_t1 = ~layer.mask("t1") if "t1" in layer.subnetworks else torch.ones_like(layer.owner, dtype=torch.bool)
        assert torch.equal(after[f"{key}.weight"][not_t1], selected[f"{key}.weight"][not_t1])
        if "t0" in layer.subnetworks:
            assert torch.equal(after[f"{key}.biases.t0"], before[f"{key}.biases.t0"])
    moved = any(not torch.equal(after[k], selected[k]) for k in after if "t1" in k)
    assert moved, "the trained task's own parameters should change"


def test_shared_subnetwork_trained_together_then_frozen():
    torch.manual_seed(2)
    trunk = (linear(6, 12), relu(), linear(12, 12), relu())
    tasks = (
        TaskSpec("a", "classification", (6,), head=[linear(12, 3)], keep_fraction=0.25),
        TaskSpec("b", "classification", (6,), head=[linear(12, 2)], keep_fraction=0.25),
        TaskSpec("c", "regression", (6,), head=[linear(12, 1)], keep_fraction=0.25),
    )
    net = MultitaskNetwork(NetworkSpec(trunk, tasks, (SharedSubnetwork("ab", ("a", "b"), (0,), 0.25),)))
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    shared_before = net.trunk[0].weight.detach().clone()
    fit_stage(net, {"a": data["a"], "b": data["b"]}, FAST)
    layer = net.trunk[0]
    assert not torch.equal(layer.weight.detach()[layer.mask("ab")], shared_before[layer.mask("ab")])
    assert net.frozen == {"ab", "a", "b"}
    outs = {t: predict(net, t, data[t].x) for t in ("a", "b")}
    fit_stage(net, {"c": data["c"]}, FAST)
    assert all(torch.equal(outs[t], predict(net, t, data[t].x)) for t in outs)
    with pytest.raises(FrozenSubnetworkError, match="frozen"):
        train_stage(net, {"a": data["a"]}, FAST)


def test_train_stage_requires_selection():
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    with pytest.raises(TaskError, match="select_subnetworks first"):
        train_stage(net, {"t0": random_data(net, "t0")}, FAST)


@st.composite
def random_networks(draw):
    width = draw(st.integers(4, 12))
    depth = draw(st.integers(1, 3))
    n_tasks = draw(st.integers(2, 4))
    keeps = draw(st.lists(st.floats(0.05, 1.0 / n_tasks), min_size=n_tasks, max_size=n_tasks))
    in_f = draw(st.integers(2, 6))
    trunk = [linear(in_f, width), relu()]
    for _ in range(depth - 1):
        trunk += [linear(width, width), relu()]
    tasks = tuple(
        TaskSpec(
            f"t{i}",
            draw(st.sampled_from(["classification", "regression"])),
            (in_f,),
            head=[linear(width, draw(st.integers(1, 4)) + 1)],
            keep_fraction=k,
        )
        for i, k in enumerate(keeps)
    )
    return NetworkSpec(trunk, tasks)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_isolation_and_disjointness(data):
    """Random shapes, task counts, keep fractions, stage splits and optimizers: every stage keeps
    every earlier task's parameters and outputs bit-identical, every subnetwork owns what selection
    asked, and no position changes owner."""
    spec = data.draw(random_networks())
    torch.manual_seed(data.draw(st.integers(0, 1000)))
    net = MultitaskNetwork(spec)
    names = net.task_names
    cut = data.draw(st.integers(1, len(names) - 1))
    stages = [names[:cut], names[cut:]]
    task_data = {t: random_data(net, t, n=24, seed=i) for i, t in enumerate(names)}
    opt = data.draw(st.sampled_from(list(OPTIMIZERS)))
    method = data.draw(st.sampled_from(["gradient", "magnitude", "random"]))
    done: list[str] = []
    for stage in stages:
        outs = {t: predict(net, t, task_data[t].x) for t in done}
        frozen = _frozen_entries(net, done)
        owners = owner_maps(net)
        selection = SelectionConfig(method=method)
        _fit(net, {t: task_data[t] for t in stage}, FAST, opt, selection=selection)
        assert ownership_problems(net, owners) == []
        assert all(torch.equal(outs[t], predict(net, t, task_data[t].x)) for t in done)
        after = _frozen_entries(net, done)
        assert frozen.keys() == after.keys() and all(torch.equal(frozen[k], after[k]) for k in frozen)
        done += stage


def test_needs_restore_only_when_zero_gradients_could_move_entries():
    p = torch.nn.Parameter(torch.zeros(3))
    assert not needs_restore(torch.optim.Adam([p]), [p])
    assert not needs_restore(torch.optim.SGD([p], lr=0.1, momentum=0.9), [p])
    assert needs_restore(torch.optim.Adam([p], weight_decay=1e-4), [p])
    assert needs_restore(torch.optim.AdamW([p]), [p])  # decoupled decay by default
    assert needs_restore(torch.optim.RMSprop([p]), [p])  # not known to be safe
    opt = torch.optim.Adam([p])
    p.grad = torch.ones(3)
    opt.step()  # carried state: moments are non-zero everywhere
    assert needs_restore(opt, [p])


def test_guard_with_carried_adam_state_still_isolates():
    torch.manual_seed(2)
    net = MultitaskNetwork(mlp_spec(n_tasks=2))
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, {"t0": data["t0"]}, FAST)
    select_subnetworks(net, ["t1"], {"t1": (data["t1"].x[:16], data["t1"].y[:16])})
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for p in net.parameters():  # momentum in every entry, as if carried over from earlier training
        p.grad = torch.ones_like(p)
    opt.step()
    masks = trainable_masks(net, net.subnetworks_of(["t1"]), ["t1"])
    before = _frozen_entries(net, ["t0"])
    with IsolationGuard(masks, opt) as guard:
        assert guard.restore
        for _ in range(3):
            train_step(net, {"t1": (data["t1"].x[:16], data["t1"].y[:16])}, opt)
    after = _frozen_entries(net, ["t0"])
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_non_finite_loss_stops_before_any_step():
    torch.manual_seed(3)
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    data = random_data(net, "t0")
    select_subnetworks(net, ["t0"], {"t0": (data.x[:16], data.y[:16])})
    masks = trainable_masks(net, net.subnetworks_of(["t0"]), ["t0"])
    opt = torch.optim.Adam(stage_parameters(masks), lr=0.1)
    before = {k: v.clone() for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    x = data.x[:8].clone()
    x[0, 0] = float("nan")
    with IsolationGuard(masks, opt), pytest.raises(TrainingError, match="loss is nan"):
        train_step(net, {"t0": (x, data.y[:8])}, opt)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


TRANSFER_OPTIMIZERS = ("adamw", "sgd-momentum", "config-adam", "config-adamw-fused-decay")
"""Decoupled and coupled weight decay, momentum, and the optimizers TrainConfig builds: what a read
set must survive (reads come from the frozen snapshot, so the rest of the matrix adds nothing)."""


def _transfer_cases() -> list:
    """Those optimizers on both networks in both transfer modes; AdamW with weight decay on the MLP
    (the case an unguarded read would break first) in the fast suite, the rest with the slow tests."""
    cases = []
    for transfer in ("select", "all"):
        for spec_id, spec_fn in (("mlp", mlp_spec), ("conv", conv_spec)):
            for name in TRANSFER_OPTIMIZERS:
                fast = spec_id == "mlp" and name == "adamw"
                marks = () if fast else (pytest.mark.slow,)
                cases.append(pytest.param(transfer, spec_fn, name, marks=marks, id=f"{transfer}-{spec_id}-{name}"))
    return cases


@pytest.mark.parametrize(("transfer", "spec_fn", "name"), _transfer_cases())
def test_forward_transfer_reads_earlier_tasks_and_leaves_them_bit_identical(transfer, spec_fn, name):
    """A later task that reads an earlier task's frozen positions (WSN's and PackNet's transfer)
    trains only its own new positions: the earlier task stays bit-identical, whatever the optimizer,
    and a third task reading both leaves both as they were."""
    torch.manual_seed(0)
    net = MultitaskNetwork(spec_fn())
    first, second = net.task_names[0], net.task_names[1]
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    selection = SelectionConfig(transfer=transfer)
    _fit(net, {first: data[first]}, FAST, name)
    out_before = predict(net, first, data[first].x)
    entries_before = _frozen_entries(net, [first])
    owners = owner_maps(net)
    _fit(net, {second: data[second]}, FAST, name, selection=selection)
    assert ownership_problems(net, owners) == []
    assert net.read_fraction(second) > 0.0
    assert torch.equal(predict(net, first, data[first].x), out_before)
    entries_after = _frozen_entries(net, [first])
    assert all(torch.equal(entries_before[k], entries_after[k]) for k in entries_before)
    reading = [
        (key, layer)
        for key, layer in net.multitask_layers()
        if second in layer.subnetworks and layer.reads(second) is not None
    ]
    assert reading and all(not (layer.reads(second) & layer.mask(second)).any() for _, layer in reading)

    third = dataclasses.replace(net.task_spec(second), name="third")
    net.add_tasks([third])
    both = {t: predict(net, t, data[t].x) for t in (first, second)}
    _fit(net, {"third": data[second]}, FAST, name, selection=selection)
    assert ownership_problems(net) == []
    assert all(torch.equal(predict(net, t, data[t].x), both[t]) for t in (first, second))
    assert any(  # the third task reads the second's positions too
        bool((layer.reads("third") & layer.mask(second)).any())
        for _, layer in net.multitask_layers()
        if second in layer.subnetworks and "third" in layer.subnetworks and layer.reads("third") is not None
    )


def test_transfer_select_counts_read_and_owned_positions_toward_the_keep_fraction():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec())
    first, second = net.task_names[0], net.task_names[1]
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, {first: data[first]}, FAST)
    report = select_subnetworks(
        net, [second], {second: (data[second].x[:32], data[second].y[:32])}, SelectionConfig(transfer="select")
    )
    for (key, sub), owned in report.kept.items():
        layer = dict(net.multitask_layers())[key]
        read = report.read.get((key, sub), 0)
        keep = net.task_spec(sub).keep_fraction if key.startswith("trunk") else 1.0
        assert owned + read == max(1, int(keep * layer.total_positions + 1e-9))
    assert any(report.read.values())
    torch.manual_seed(0)
    other = MultitaskNetwork(mlp_spec())
    fit_stage(other, {first: data[first]}, FAST)
    all_report = select_subnetworks(
        other, [second], {second: (data[second].x[:32], data[second].y[:32])}, SelectionConfig(transfer="all")
    )
    for (key, _), read in all_report.read.items():
        layer = dict(other.multitask_layers())[key]
        assert read == layer.owned_count(first)  # PackNet's rule: every earlier position is read
