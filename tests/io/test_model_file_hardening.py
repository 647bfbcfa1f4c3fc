"""Model files that can't lie: the whole header is covered, limits hold before allocation, every
malformed file is a ModelFileError, and a killed save leaves nothing behind for long."""

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsn2.errors import ModelFileError
from rsn2.io import load_model, read_metadata, save_model
from rsn2.io.model_file import header_digest
from rsn2.network import MultitaskNetwork
from rsn2.training import TrainConfig, fit_stage
from tests.helpers import conv_spec, random_data

ROOT = Path(__file__).resolve().parents[2]
FUZZ_MUTATIONS = 3000  # docs/model-format.md names this count


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    net = MultitaskNetwork(conv_spec())
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, {"img": data["img"]}, TrainConfig(batch_size=16, max_epochs=1, progress=False))
    path = tmp_path_factory.mktemp("m") / "model.safetensors"
    save_model(net, path, user={"note": "hello"})
    return path


def _split(blob: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(header: dict, rest: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + rest


def _with_meta(blob: bytes, change) -> bytes:
    header, rest = _split(blob)
    meta = json.loads(header["__metadata__"]["rsn2"])
    change(meta)
    header["__metadata__"]["rsn2"] = json.dumps(meta)
    return _join(header, rest)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["frozen"].clear(),  # would let an old task be retrained
        lambda m: m["spec"]["tasks"][0].update(keep_fraction=0.9),
        lambda m: m["spec"]["tasks"][0].update(kind="regression"),
        lambda m: m["spec"]["trunk"].pop(),  # a layer deleted from the architecture
        lambda m: m["user"].update(note="changed"),
        lambda m: m["selection"].clear(),
    ],
)
def test_editing_any_header_field_is_refused(model_file, tmp_path, change):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_with_meta(model_file.read_bytes(), change))
    with pytest.raises(ModelFileError, match="header was altered"):
        load_model(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["spec"]["trunk"][0].update(bias="-1"), r"bias must be true or false, got '-1'"),
        (lambda m: m["spec"]["trunk"][0].update(stride=0.5), r"stride must be a positive integer or a list of two"),
        (lambda m: m["spec"]["trunk"][0].update(padding="full"), r"padding must be 'same', 'valid'"),
        (lambda m: m["spec"]["tasks"][0]["head"][0].update(bias=None), "bias must be true or false, got None"),
        (lambda m: m.update(frozen={"img": 1}), r"frozen must list subnetworks of the model \(\['img', 'rgb'\]\)"),
        (lambda m: m.update(frozen=[1, 2]), "frozen must list subnetworks of the model"),
        (lambda m: m.update(frozen=["nobody"]), "frozen must list subnetworks of the model"),
    ],
)
def test_a_malformed_header_is_refused_even_with_a_recomputed_digest(model_file, tmp_path, change, message):
    def edit(meta):
        change(meta)
        meta["header_sha256"] = header_digest(meta)

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_with_meta(model_file.read_bytes(), edit))
    with pytest.raises(ModelFileError, match=message):
        load_model(bad)


def test_an_edited_input_shape_is_refused_before_anything_is_allocated(model_file, tmp_path):
    def huge(meta):
        meta["spec"]["tasks"][0]["input_shape"] = [1, 50_000, 50_000]
        meta["header_sha256"] = header_digest(meta)  # even with a recomputed digest

    bad = tmp_path / "huge.safetensors"
    bad.write_bytes(_with_meta(model_file.read_bytes(), huge))
    with pytest.raises(ModelFileError, match="over the limit of 16,777,216 elements"):
        load_model(bad)

    def wider(meta):
        meta["spec"]["trunk"][0]["out_channels"] = 4000
        meta["header_sha256"] = header_digest(meta)

    bad.write_bytes(_with_meta(model_file.read_bytes(), wider))
    with pytest.raises(ModelFileError, match=r"layer 'trunk.0' is conv2d \(4000, 1, 3, 3\) in the header"):
        load_model(bad)


def test_nonfinite_weights_are_refused_on_save_and_on_load(model_file, tmp_path):
    net = load_model(model_file)
    layer = net.trunk[0]
    with torch.no_grad():  # a NaN the model computes with: in the weight and, where frozen, its snapshot
        layer.weight[0, 0, 0, 0] = float("nan")
        if layer.frozen_kernel is not None:
            layer.frozen_kernel[0, 0, 0, 0] = float("nan")
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        save_model(net, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()


def test_a_version_1_file_still_loads():
    old = ROOT / "docs" / "results" / "exp8-task-stopping" / "model.safetensors"
    assert read_metadata(old)["format_version"] == 1
    assert load_model(old).task_names == ["age", "gender", "race", "cifar"]


def test_a_save_killed_mid_write_leaves_no_partial_file_after_the_next_save(model_file, tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(model_file.read_bytes())
    crash = (
        "import os, sys; import rsn2.io.atomic as a; from rsn2.io import load_model, save_model\n"
        "net = load_model(sys.argv[1])\n"
        "os.fsync = lambda fd: os._exit(9)  # dies after writing, before the rename\n"
        "save_model(net, sys.argv[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", crash, str(target)], capture_output=True)
    assert done.returncode == 9
    partials = [p for p in tmp_path.iterdir() if p.name.endswith(".rsn2-partial")]
    assert len(partials) == 1
    assert target.read_bytes() == model_file.read_bytes()  # the old file is whole
    save_model(load_model(target), tmp_path / "other.safetensors")  # any later write in the folder
    assert not any(p.name.endswith(".rsn2-partial") for p in tmp_path.iterdir())


def _mutations(blob: bytes, rng: random.Random, n: int):
    header, rest = _split(blob)
    meta = json.loads(header["__metadata__"]["rsn2"])
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(meta, ())
    replacements = [None, 0, -1, 1e308, 2**70, "", "x", [], {}, True, [1, 2], {"a": 1}, 0.5, "-1"]
    for i in range(n):
        kind = i % 4
        if kind == 0:  # a bit flip anywhere
            data = bytearray(blob)
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
            yield "flip", bytes(data)
        elif kind == 1:  # a truncation
            yield "truncate", blob[: rng.randrange(len(blob))]
        else:  # a header field replaced or deleted, with the digest recomputed half of the time
            edited = json.loads(json.dumps(meta))
            path = rng.choice(paths[1:])
            node = edited
            for step in path[:-1]:
                node = node[step]
            if rng.random() < 0.3 and isinstance(node, (dict, list)):
                del node[path[-1]]
            else:
                node[path[-1]] = rng.choice(replacements)
            if kind == 3 and isinstance(edited, dict):
                edited["header_sha256"] = header_digest({k: v for k, v in edited.items()})
            h = json.loads(json.dumps(header))
            h["__metadata__"]["rsn2"] = json.dumps(edited)
            yield f"edit{' (digest recomputed)' if kind == 3 else ''} {path}", _join(h, rest)


def _same_model(a: MultitaskNetwork, b: MultitaskNetwork) -> bool:
    """Whether two loaded networks are one model: the same spec, frozen set and tensors (owner maps included)."""
    state_a, state_b = a.state_dict(), b.state_dict()
    return (
        a.spec.to_dict() == b.spec.to_dict()
        and a.frozen == b.frozen
        and state_a.keys() == state_b.keys()
        and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    )


def _fuzz(model_file, tmp_path, n):
    rng = random.Random(0)
    blob = model_file.read_bytes()
    original = load_model(model_file)
    path = tmp_path / "fuzzed.safetensors"
    outcomes = {"refused": 0, "loaded": 0}
    for what, mutated in _mutations(blob, rng, n):
        path.write_bytes(mutated)
        try:
            loaded = load_model(path)
        except ModelFileError:
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # anything else is a bug
            pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
        if "digest recomputed" in what:  # a deliberate, consistent edit may load: then as a whole model
            path.unlink()
            save_model(loaded, path)
            assert _same_model(load_model(path), loaded), f"{what}: the edited model does not save and load back"
        else:  # only changes that mean nothing (a flip in unused padding) load, and they load the same model
            assert _same_model(loaded, original), f"{what}: the file loaded as another model"
        outcomes["loaded"] += 1
    return outcomes


def test_fuzz_a_few_hundred_mutations(model_file, tmp_path):
    outcomes = _fuzz(model_file, tmp_path, 300)
    assert outcomes["refused"] >= 280


def test_fuzz_a_model_whose_later_task_reads_the_earlier_one(tmp_path):
    """Read sets (forward transfer) in the header and tensors: every mutation refused cleanly."""
    from rsn2.selection import SelectionConfig
    from tests.helpers import mlp_spec

    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec())
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    config = TrainConfig(batch_size=16, max_epochs=1, progress=False)
    fit_stage(net, {"t0": data["t0"]}, config)
    fit_stage(net, {"t1": data["t1"]}, config, selection=SelectionConfig(transfer="select"))
    assert net.read_fraction("t1") > 0
    path = tmp_path / "transfer.safetensors"
    save_model(net, path)
    outcomes = _fuzz(path, tmp_path, 150)
    assert outcomes["refused"] >= 140


@pytest.mark.slow
def test_fuzz_thousands_of_mutations_every_one_refused_cleanly(model_file, tmp_path):
    outcomes = _fuzz(model_file, tmp_path, FUZZ_MUTATIONS)
    assert outcomes["refused"] >= 0.95 * FUZZ_MUTATIONS
