import json
import os
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from rsn2.errors import ModelFileError
from rsn2.io import load_model, read_metadata, save_model
from rsn2.io.owner_codec import digits_per_word, pack_owner, unpack_owner
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec
from rsn2.network.architectures import dense_head, fc_a_trunk
from rsn2.network.dense_control import dense_control
from rsn2.selection import select_subnetworks
from rsn2.training import TrainConfig, fit_stage, predict
from tests.helpers import conv_spec, mlp_spec, random_data, snapshot


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(0)
    net = MultitaskNetwork(conv_spec())
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, {"img": data["img"]}, TrainConfig(batch_size=16, max_epochs=1, progress=False))
    fit_stage(net, {"rgb": data["rgb"]}, TrainConfig(batch_size=16, max_epochs=1, progress=False))
    path = tmp_path / "model.safetensors"
    save_model(net, path, user={"note": "hello"})
    return net, data, path


def test_roundtrip_is_exact(trained):
    net, data, path = trained
    loaded = load_model(path)
    before, after = snapshot(net), snapshot(loaded)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    for t in net.task_names:
        assert torch.equal(predict(loaded, t, data[t].x), predict(net, t, data[t].x))
    assert loaded.frozen == net.frozen and loaded.spec == net.spec
    assert read_metadata(path)["user"] == {"note": "hello"}


def _header_len(path):
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def test_truncated_file_is_refused(trained, tmp_path):
    _, _, path = trained
    blob = path.read_bytes()
    for cut in (4, 100, len(blob) // 2, len(blob) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(blob[:cut])
        with pytest.raises(ModelFileError, match=r"not a readable safetensors|cannot be read"):
            load_model(bad)


def test_tampered_weight_fails_checksum(trained, tmp_path):
    _net, _, path = trained
    blob = bytearray(path.read_bytes())
    start = 8 + _header_len(path)
    blob[start + 100] ^= 0x01  # flip one bit in the tensor data
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match=r"checksum mismatch|owner map|ownership"):
        load_model(bad)


def test_every_single_tensor_tamper_is_detected(trained, tmp_path):
    _net, _, path = trained
    from safetensors.torch import load_file

    tensors = load_file(path)
    meta = {"rsn2": json.dumps(read_metadata(path))}
    for name, value in tensors.items():
        if value.numel() == 0:
            continue
        changed = dict(tensors)
        v = value.clone()
        v.view(-1)[0] = v.view(-1)[0] + (1 if v.dtype == torch.uint8 else 0.5)
        changed[name] = v
        bad = tmp_path / "t.safetensors"
        save_file(changed, bad, metadata=meta)
        with pytest.raises(ModelFileError):
            load_model(bad)


def _redigest(meta):
    from rsn2.io.model_file import header_digest

    return {**meta, "header_sha256": header_digest(meta)}


def test_malformed_metadata_and_foreign_files_are_refused(trained, tmp_path):
    _, _, path = trained
    meta = read_metadata(path)
    from safetensors.torch import load_file

    tensors = load_file(path)
    cases = {
        "no_meta": (None, "not an rsn2 model"),
        "bad_json": ({"rsn2": "{not json"}, "not valid JSON"),
        "wrong_format": ({"rsn2": json.dumps({**meta, "format": "other"})}, "expected 'rsn2-model'"),
        "future": ({"rsn2": json.dumps({**meta, "format_version": 99})}, "version 99 is not supported"),
        "bad_spec": (
            {"rsn2": json.dumps(_redigest({**meta, "spec": {"trunk": [{"kind": "lstm"}]}}))},
            "unknown layer kind",
        ),
        "edited_spec": ({"rsn2": json.dumps({**meta, "spec": {"trunk": [{"kind": "lstm"}]}})}, "header was altered"),
    }
    for name, (metadata, message) in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        save_file(tensors, bad, metadata=metadata)
        with pytest.raises(ModelFileError, match=message):
            load_model(bad)
    with pytest.raises(ModelFileError, match="no rsn2 model file at"):
        load_model(tmp_path / "missing.safetensors")
    pickle_like = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(2)}, pickle_like)
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_model(pickle_like)


def test_save_is_atomic(trained, tmp_path, monkeypatch):
    net, _, path = trained
    original = path.read_bytes()

    def killed(src, dst):
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_model(net, path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left


def test_save_errors_are_clear(trained, tmp_path):
    net, _, _ = trained
    with pytest.raises(ModelFileError, match="is a directory"):
        save_model(net, tmp_path)
    with pytest.raises(ModelFileError, match="does not exist"):
        save_model(net, tmp_path / "nope" / "m.safetensors")
    with pytest.raises(ModelFileError, match="JSON-serialisable"):
        save_model(net, tmp_path / "m.safetensors", user={"x": object()})
    assert not (tmp_path / "m.safetensors").exists()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=300), st.integers(1, 12))
def test_owner_codec_roundtrip(values, n_symbols):
    symbols = sorted(set(values))[:n_symbols]
    arr = np.array([v if v in symbols else symbols[0] for v in values], dtype=np.uint8)
    packed = pack_owner(arr)
    assert np.array_equal(unpack_owner(packed.data, packed.header(), arr.shape), arr)


def test_owner_codec_density():
    assert digits_per_word(1) == 0 and digits_per_word(2) == 64 and digits_per_word(3) == 40
    assert digits_per_word(11) == 18  # 3.6 bits per position
    rng = np.random.default_rng(0)
    owner = rng.integers(0, 10, size=100_000).astype(np.uint8)
    assert len(pack_owner(owner).data) <= 100_000 * 3.6 / 8 + 8


@pytest.mark.slow
@pytest.mark.parametrize("n_tasks", [2, 5, 10])
def test_fc_a_model_file_within_115_percent_of_one_dense_model(tmp_path, n_tasks):
    trunk = fc_a_trunk()
    tasks = [
        TaskSpec(f"task{i}", "classification", (784,), head=dense_head(1000, 10), keep_fraction=0.1)
        for i in range(n_tasks)
    ]
    spec = NetworkSpec(trunk, tasks)
    net = MultitaskNetwork(spec)
    select_subnetworks(net, net.task_names, method="random")
    multitask = save_model(net, tmp_path / "multi.safetensors")
    dense = save_model(dense_control(spec, "task0"), tmp_path / "dense.safetensors")
    assert multitask == (tmp_path / "multi.safetensors").stat().st_size
    assert multitask / dense <= 1.15, f"{n_tasks} tasks: {multitask / dense:.3f}x one dense model"
    assert multitask < n_tasks * dense


def test_loader_never_unpickles():
    import inspect

    import rsn2.io.model_file as mf

    source = inspect.getsource(mf)
    assert "torch.load" not in source and "pickle" not in source.replace("unpickled", "")


def test_unselected_and_partial_models_roundtrip(tmp_path):
    net = MultitaskNetwork(mlp_spec(n_tasks=2))
    select_subnetworks(net, ["t0"], method="random")
    save_model(net, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.is_selected("t0") and not loaded.is_selected("t1")
    select_subnetworks(loaded, ["t1"], method="random")  # continues where it stopped
