import pytest
import torch

from rsn2.errors import SpecError, TaskError
from rsn2.network import MultitaskNetwork, NetworkSpec, SharedSubnetwork, TaskSpec, embedding, flatten, linear, relu
from rsn2.network.architectures import conv_a_trunk, conv_b_trunk, dense_head, fc_a_trunk
from rsn2.network.dense_control import dense_control
from rsn2.network.spec import LayerSpec
from rsn2.selection import select_subnetworks
from tests.helpers import conv_spec, mlp_spec, random_data


def test_forward_many_matches_single_calls():
    net = MultitaskNetwork(conv_spec())
    select_subnetworks(net, net.task_names, method="random")
    batches = {t: random_data(net, t, n=5).x for t in net.task_names}
    outs = net.forward_many(batches)
    assert outs.keys() == batches.keys()
    for t, x in batches.items():
        assert torch.equal(outs[t], net(x, t))
    assert outs["img"].shape == (5, 5) and outs["rgb"].shape == (5, 1)


def test_ensemble_averages_member_softmax():
    spec = NetworkSpec(
        [linear(6, 16), relu()],
        [TaskSpec(f"f{i}", "classification", (6,), head=[linear(16, 4)], keep_fraction=0.2) for i in range(5)],
    )
    net = MultitaskNetwork(spec)
    select_subnetworks(net, net.task_names, method="random")
    x = torch.randn(7, 6)
    probs = net.ensemble(x, net.task_names)
    expected = torch.stack([torch.softmax(net(x, t), dim=-1) for t in net.task_names]).mean(0)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(-1), torch.ones(7))
    with pytest.raises(TaskError, match="at least one"):
        net.ensemble(x, [])


def test_ensemble_refuses_mismatched_members_and_regression():
    net = MultitaskNetwork(conv_spec())
    select_subnetworks(net, net.task_names, method="random")
    with pytest.raises(TaskError, match="regression"):
        net.ensemble(torch.rand(2, 3, 8, 8), ["rgb"])
    with pytest.raises(TaskError, match="unknown task"):
        net(torch.rand(2, 1, 8, 8), "nope")


def test_dense_control_owns_everything_and_matches_plain_layers():
    spec = mlp_spec(n_tasks=2)
    control = dense_control(spec, "t1")
    assert control.task_names == ["t1"]
    for _, layer in control.multitask_layers():
        assert layer.ownership() == {"t1": layer.total_positions, "free": 0}
    x = torch.rand(3, 8)
    h = x
    for step in control.path("t1"):
        m = step.module
        h = torch.nn.functional.linear(h, m.weight, m.biases["t1"]) if step.subnetwork else m(h)
    assert torch.equal(control(x, "t1"), h)


def test_paper_architectures_have_expected_shapes():
    fc = MultitaskNetwork(NetworkSpec(fc_a_trunk(), [TaskSpec("m", "classification", (784,), dense_head(1000, 10))]))
    assert sum(layer.total_positions for k, layer in fc.multitask_layers() if k.startswith("trunk")) == (
        784 * 1000 + 5 * 1000 * 1000
    )
    conv_a = MultitaskNetwork(
        NetworkSpec(conv_a_trunk(), [TaskSpec("m", "classification", (1, 28, 28), dense_head(256, 10))])
    )
    assert conv_a.trunk[11].in_features == 1024
    conv_b = MultitaskNetwork(
        NetworkSpec(conv_b_trunk(), [TaskSpec("c", "classification", (3, 32, 32), dense_head(128, 10))])
    )
    select_subnetworks(conv_b, ["c"], method="random")
    assert conv_b(torch.rand(2, 3, 32, 32), "c").shape == (2, 10)


def test_token_task_with_embedding_adapter():
    spec = NetworkSpec(
        fc_a_trunk(in_features=20, width=16, depth=2),
        [
            TaskSpec(
                "imdb",
                "classification",
                (12,),
                adapter=[embedding(50, 2), flatten(), linear(24, 16), relu()],
                enter_at=2,
                head=[linear(16, 2)],
                keep_fraction=0.5,
            )
        ],
    )
    net = MultitaskNetwork(spec)
    select_subnetworks(net, ["imdb"], method="random")
    tokens = torch.randint(0, 50, (4, 12))
    assert net(tokens, "imdb").shape == (4, 2)
    assert [k for k, _ in net.task_modules("imdb")] == ["adapters.imdb.0"]
    assert "trunk.0" not in {s.key for s in net.path("imdb")}


def test_embedding_starts_small_and_uniform():
    from rsn2.network.build import EMBEDDING_INIT_RANGE, build_layer

    torch.manual_seed(0)
    default = build_layer(embedding(500, 4)).weight
    assert default.abs().max() <= EMBEDDING_INIT_RANGE and default.std() > EMBEDDING_INIT_RANGE / 3
    wide = build_layer(embedding(500, 4, init_range=0.5)).weight
    assert 0.4 < wide.abs().max() <= 0.5
    spec = embedding(10, 2, init_range=0.1)
    assert LayerSpec.from_dict(spec.to_dict()) == spec  # round-trips through model files
    for bad in (0, -1.0, float("inf"), "0.1", True):
        with pytest.raises(SpecError, match="init_range must be a positive number"):
            build_layer(LayerSpec("embedding", {"num_embeddings": 3, "embedding_dim": 2, "init_range": bad}))


def test_spec_errors_name_the_problem():
    with pytest.raises(SpecError, match="unknown layer kind 'lstm'"):
        NetworkSpec.from_dict({"trunk": [{"kind": "lstm"}]})
    with pytest.raises(SpecError, match=r"missing key\(s\) \['out_features'\]"):
        NetworkSpec.from_dict({"trunk": [{"kind": "linear", "in_features": 3}]})
    with pytest.raises(SpecError, match=r"keep_fraction must be a number in \(0, 1\], got 1.5"):
        TaskSpec("a", "classification", (3,), [linear(3, 2)], keep_fraction=1.5)
    with pytest.raises(SpecError, match="kind must be one of"):
        TaskSpec("a", "ranking", (3,), [linear(3, 2)])
    with pytest.raises(SpecError, match="duplicate task"):
        NetworkSpec([linear(3, 3)], [TaskSpec("a", "regression", (3,), [linear(3, 1)])] * 2)
    with pytest.raises(SpecError, match="unknown key"):
        NetworkSpec.from_dict({"trunk": [], "extra": 1})
    with pytest.raises(SpecError, match="not a multitask trunk layer"):
        NetworkSpec(
            [linear(3, 3), relu()],
            [TaskSpec(n, "regression", (3,), [linear(3, 1)]) for n in "ab"],
            [SharedSubnetwork("s", ("a", "b"), (1,), 0.2)],
        )


def test_shape_mismatch_is_reported_with_the_layer():
    with pytest.raises(SpecError, match=r"does not fit layer trunk\.0"):
        MultitaskNetwork(NetworkSpec([linear(8, 4)], [TaskSpec("a", "regression", (5,), [linear(4, 1)])]))


def test_add_tasks_later_and_spec_roundtrip():
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    net.add_tasks([TaskSpec("late", "regression", (8,), [linear(16, 1)], keep_fraction=0.2)])
    assert net.task_names == ["t0", "late"]
    with pytest.raises(SpecError):
        net.add_tasks([TaskSpec("bad", "regression", (9,), [linear(16, 1)])])
    assert net.task_names == ["t0", "late"] and "bad" not in net.heads
    assert NetworkSpec.from_dict(net.spec.to_dict()) == net.spec
    assert "late(regression, keep=0.2)" in repr(net)
