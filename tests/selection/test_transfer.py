"""Forward transfer: a subnetwork reading earlier frozen subnetworks' positions (read-only), in the
layer, in selection, in model files, in per-task inference and ONNX, and on a converted module."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors import safe_open

import rsn2
from rsn2.cli.main import main
from rsn2.deploy import export_onnx
from rsn2.errors import FrozenSubnetworkError, ModelFileError, OwnershipError, SpecError
from rsn2.io import load_model, save_model, verify_file
from rsn2.io.container import write_container
from rsn2.io.model_file import header_digest
from rsn2.layers import MultitaskLinear, reading
from rsn2.network import MultitaskNetwork
from rsn2.selection import SelectionConfig, ownership_problems
from rsn2.training import TaskData, TrainConfig, fit_stage
from tests.helpers import mlp_spec, random_data
from tests.user_models import MODELS, inputs_for, tasks_for

FAST = TrainConfig(batch_size=16, max_epochs=2, patience=5, progress=False)


def _layer_with_frozen_a() -> MultitaskLinear:
    """A 4x6 linear layer: ``a`` owns the first two rows (frozen), ``b`` the third, the rest free."""
    torch.manual_seed(0)
    layer = MultitaskLinear(6, 4)
    for name, row in (("a", slice(0, 2)), ("b", slice(2, 3))):
        layer.add_subnetwork(name)
        positions = torch.zeros(4, 6, dtype=torch.bool)
        positions[row] = True
        layer.assign(name, positions)
    layer.freeze("a")
    return layer


def test_a_read_set_adds_the_frozen_values_and_nothing_else():
    layer = _layer_with_frozen_a()
    reads = torch.zeros(4, 6, dtype=torch.bool)
    reads[0, :3] = True
    layer.set_reads("b", reads)
    x = torch.randn(5, 6)
    with torch.no_grad():
        layer.weight[0, :3] = 99.0  # weight moves where a's frozen snapshot does not: b reads the snapshot
    expected = x @ torch.where(reads | (layer.owner == 1), layer.kernel(), torch.zeros(())).T + layer.biases["b"]
    with reading({layer: "b"}):
        out = layer(x)
    torch.testing.assert_close(out, expected)
    assert torch.equal(layer.reading_mask("b"), reads | layer.mask("b"))
    with reading({layer: "b"}):
        layer(x).sum().backward()
    assert layer.weight.grad is not None and not layer.weight.grad[reads].any()  # never trains what it reads


def test_only_positions_of_frozen_earlier_subnetworks_can_be_read():
    layer = _layer_with_frozen_a()
    free = torch.zeros(4, 6, dtype=torch.bool)
    free[3, 0] = True
    with pytest.raises(OwnershipError, match="only positions of frozen subnetworks added before it"):
        layer.set_reads("b", free)
    layer.add_subnetwork("c")
    of_b = torch.zeros(4, 6, dtype=torch.bool)
    of_b[2, 0] = True
    with pytest.raises(OwnershipError, match="cannot read 1 of the positions"):
        layer.set_reads("c", of_b)  # b is not frozen
    with pytest.raises(OwnershipError, match="bool tensor of shape"):
        layer.set_reads("c", of_b.float())
    layer.set_reads("c", layer.mask("a"))
    layer.freeze("c")
    with pytest.raises(FrozenSubnetworkError, match="its read set cannot change"):
        layer.set_reads("c", torch.zeros(4, 6, dtype=torch.bool))
    layer.remove_last_subnetwork("c")
    assert "reads_c" not in dict(layer.named_buffers())


def test_read_sets_round_trip_through_a_state_dict_into_a_fresh_layer():
    layer = _layer_with_frozen_a()
    layer.set_reads("b", layer.mask("a"))
    fresh = MultitaskLinear(6, 4)
    fresh.load_state_dict(layer.state_dict())
    fresh.freeze("a")
    assert torch.equal(fresh.reads("b"), layer.reads("b"))
    x = torch.randn(3, 6)
    with reading({layer: "b", fresh: "b"}):
        assert torch.equal(fresh(x), layer(x))


def test_an_unknown_transfer_mode_is_refused():
    with pytest.raises(SpecError, match=r"transfer must be one of \('none', 'select', 'all'\)"):
        SelectionConfig(transfer="some")


@pytest.fixture(scope="module")
def transferred():
    """t0 trained alone; t1 trained later reading t0's positions (WSN's rule)."""
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec())
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, {"t0": data["t0"]}, FAST)
    fit_stage(net, {"t1": data["t1"]}, FAST, selection=SelectionConfig(transfer="select"))
    assert net.read_fraction("t1") > 0 and ownership_problems(net) == []
    return net, data


def test_a_transfer_model_round_trips_and_serves_each_task_with_what_it_reads(transferred, tmp_path):
    net, data = transferred
    path = tmp_path / "m.safetensors"
    save_model(net, path)
    back = load_model(path)
    for task in net.task_names:
        assert torch.equal(back(data[task].x, task), net(data[task].x, task))
        sparse = rsn2.TaskModel.load(path, task)
        torch.testing.assert_close(sparse(data[task].x), net(data[task].x, task), rtol=1e-5, atol=1e-5)
    assert back.selection_log["t1"]["transfer"] == "select"
    meta = verify_file(path)
    reads = {key: lm["reads"] for key, lm in meta["layers"].items() if "reads" in lm}
    assert reads and all(set(r) == {"t1"} for r in reads.values())
    onnx_path = tmp_path / "t1.onnx"
    export_onnx(net, "t1", onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"input": data["t1"].x.numpy()})[0]
    np.testing.assert_allclose(probs, torch.softmax(net(data["t1"].x, "t1"), 1).detach().numpy(), atol=1e-5)


def test_rsn2_info_shows_what_each_task_reads(transferred, tmp_path, capsys):
    net, _ = transferred
    save_model(net, tmp_path / "m.safetensors")
    assert main(["info", str(tmp_path / "m.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "transfer select" in text and "; reads t1 " in text


def _rewritten(path, out, change):
    """``path`` rewritten with ``change(tensors, meta)`` applied (a consistent header digest kept)."""
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["rsn2"])
    change(tensors, meta)
    meta["header_sha256"] = header_digest(meta)
    write_container(out, tensors, meta, ModelFileError)


def _bump_count(tensors, meta):
    for lm in meta["layers"].values():
        for entry in lm.get("reads", {}).values():
            entry["count"] += 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, m: t.update({k: t[k] ^ 1 for k in t if ".reads." in k}), "checksum|padding|holds|cut off|run past"),
        (lambda t, m: t.update({k: t[k][:-1] for k in t if ".reads." in k}), "bytes for a read set|holds|cut off"),
        (_bump_count, "the header records"),
        (lambda t, m: [t.pop(k) for k in [k for k in t if ".reads." in k]], "is missing"),
        (
            lambda t, m: [
                e.update(encoding="rle") for lm in m["layers"].values() for e in lm.get("reads", {}).values()
            ],
            "unknown read-set encoding 'rle'",
        ),
    ],
)
def test_a_damaged_read_set_is_refused_on_load_and_verify(transferred, tmp_path, change, message):
    net, _ = transferred
    save_model(net, tmp_path / "m.safetensors")
    _rewritten(tmp_path / "m.safetensors", tmp_path / "bad.safetensors", change)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "bad.safetensors")
    with pytest.raises(ModelFileError):
        verify_file(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("transfer", ["select", "all"])
def test_transfer_on_a_converted_module_with_a_plain_adamw_loop_leaves_the_earlier_task_bit_identical(transfer):
    torch.manual_seed(0)
    net = rsn2.multitask(MODELS["resnet"][0](), tasks_for("resnet", ("a",)))
    fit_stage(net, {"a": TaskData(*inputs_for("resnet", seed=1))}, FAST)
    net.add_tasks(tasks_for("resnet", ("b",)))
    x, y = inputs_for("resnet", seed=2)
    rsn2.select_subnetworks(net, ["b"], {"b": (x, y)}, SelectionConfig(transfer=transfer))
    assert net.read_fraction("b") > 0
    net.eval()
    before = net(x, "a").detach().clone()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.5)
    net.train()
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x, "b"), y).backward()
        optimizer.step()
    net.eval()
    assert torch.equal(net(x, "a"), before)


def test_a_task_to_be_selected_with_transfer_select_fits_in_free_and_frozen_positions_together():
    from rsn2.errors import CapacityError
    from rsn2.network import NetworkSpec, TaskSpec, linear, relu

    def task(name):
        return TaskSpec(name, "classification", (8,), head=[linear(16, 2)], keep_fraction=0.6)

    torch.manual_seed(0)
    net = MultitaskNetwork(NetworkSpec([linear(8, 16), relu()], [task("a")]))
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    fit_stage(net, {"a": TaskData(x, y)}, FAST)
    with pytest.raises(CapacityError, match="only 52 are free"):  # 40% of 128 positions left
        net.add_tasks([task("b")])
    assert net.task_names == ["a"]
    net.add_tasks([task("b")], transfer="select")
    fit_stage(net, {"b": TaskData(x, y)}, FAST, selection=SelectionConfig(transfer="select"))
    assert ownership_problems(net) == [] and net.read_fraction("b") > 0


@pytest.mark.parametrize("density", [0.0005, 0.02, 0.5, 1.0])
def test_read_sets_take_the_smallest_encoding_and_decode_exactly(density):
    from rsn2.io.read_codec import pack_reads, unpack_reads

    gen = torch.Generator().manual_seed(int(density * 1e4))
    owner = torch.randint(0, 5, (300, 400), generator=gen).to(torch.uint8).numpy()  # id 4 reads ids 0..3
    domain = owner < 4
    reads = domain & (torch.rand(owner.shape, generator=gen).numpy() < density)
    reads[np.unravel_index(np.flatnonzero(domain)[-1], owner.shape)] = True  # the last domain position too
    encoding, data = pack_reads(reads, owner, 4)
    bitmap_bytes = (int(domain.sum()) + 7) // 8
    assert encoding == {0.0005: "delta", 0.02: "delta", 0.5: "bitmap", 1.0: "all"}[density]
    assert len(data) <= bitmap_bytes
    back = unpack_reads(encoding, data, owner, 4, int(reads.sum()), "test")
    assert np.array_equal(back, reads)
    with pytest.raises(ValueError, match="no earlier subnetwork owns"):
        pack_reads(owner == 4, owner, 4)
