"""One model, one file: safetensors tensors plus JSON metadata in the header. Nothing is unpickled.

Layout of a file (format version 1):

- tensors ``<layer>.weight`` (the dense kernel), ``<layer>.owner`` (the packed owner map, uint8,
  see :mod:`rsn2.io.owner_codec`), ``<layer>.bias.<subnetwork>``, and ``<module>.<param>`` for
  task modules that are not multitask layers (embeddings);
- header metadata key ``"rsn2"``: JSON with ``format``, ``format_version``, ``spec`` (the
  architecture), per-layer ``subnetworks``/``owned``/``owner`` headers, ``frozen``, ``selection``,
  one SHA-256 ``checksums`` entry per subnetwork (plus ``free``), and the caller's ``user`` data.

Loading checks every tensor's presence, dtype and shape, that owner maps decode and name only
known subnetworks (so subnetworks are disjoint), owned counts, and every checksum.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rsn2.errors import ModelFileError, RSN2Error
from rsn2.io.container import Container, write_container
from rsn2.io.owner_codec import pack_owner, unpack_owner
from rsn2.layers import FREE
from rsn2.layers.ownership import check_owner
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import NetworkSpec
from rsn2.version import __version__

FORMAT = "rsn2-model"
FORMAT_VERSION = 2  # 2: the header's digest (header_sha256) covers every field; version 1 still loads
READABLE_VERSIONS = (1, 2)
MAX_INPUT_ELEMENTS = 1 << 24
"""Most elements one sample's input may have (``input_shape``), checked before anything is allocated."""


def save_model(network: MultitaskNetwork, path: str | os.PathLike[str], user: dict[str, Any] | None = None) -> int:
    """Write ``network`` to ``path`` atomically; returns the file's size in bytes.

    ``user`` is any JSON-serialisable mapping stored with the model (preprocessing statistics...).
    """
    tensors, meta = _to_tensors(network)
    meta["user"] = user or {}
    for name, t in tensors.items():
        if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"tensor {name!r} holds NaN or infinite values; a model file holds finite weights")
    meta["header_sha256"] = header_digest(meta)
    return write_container(path, tensors, meta, ModelFileError)


def header_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the header's canonical JSON, every field but the digest itself. Editing any field of
    the header (the architecture, task kinds, keep fractions, the frozen list, the user data...)
    without recomputing it makes the file fail to load."""
    body = {k: v for k, v in meta.items() if k != "header_sha256"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"model metadata must be JSON-serialisable without NaN: {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a model file (no tensors loaded, nothing verified beyond the header)."""
    with _open(path) as f:
        return f.header


def load_model(path: str | os.PathLike[str], allow_nonfinite: bool = False) -> MultitaskNetwork:
    """Load and fully verify a model file; returns the network in eval mode.

    Checked in this order: the header's format, version and digest (no tensor read yet); the stored
    architecture against limits and against the shapes of the file's tensors (before the network is
    allocated); then every tensor, owner map and checksum. Weights that are NaN or infinite are
    refused unless ``allow_nonfinite``.

    Raises:
        ModelFileError: missing, truncated, malformed or tampered file, or an unknown format version.
    """
    try:
        return _load(path, allow_nonfinite)
    except ModelFileError:
        raise
    except (
        RSN2Error,
        TypeError,
        ValueError,
        AttributeError,
        KeyError,
        IndexError,
        RecursionError,
        ZeroDivisionError,
        OverflowError,
        RuntimeError,
        MemoryError,
    ) as exc:
        raise ModelFileError(f"{path}: malformed model file ({type(exc).__name__}: {exc})") from None


def _load(path: str | os.PathLike[str], allow_nonfinite: bool) -> MultitaskNetwork:
    with _open(path) as f:
        meta = f.header
        if meta["format_version"] >= 2 and meta.get("header_sha256") != header_digest(meta):
            raise ModelFileError(f"{path}: the header was altered (its digest does not match its fields)")
        try:
            spec = NetworkSpec.from_dict(meta["spec"])
        except RSN2Error as exc:
            raise ModelFileError(f"{path}: the stored architecture is invalid: {exc}") from None
        _check_before_allocating(spec, f, path)
        try:
            network = MultitaskNetwork(spec)
        except RSN2Error as exc:
            raise ModelFileError(f"{path}: the stored architecture is invalid: {exc}") from None
        names = set(f.keys())
        used: set[str] = set()

        def tensor(name: str, shape: tuple[int, ...] | None, dtype: torch.dtype) -> Tensor:
            if name not in names:
                raise ModelFileError(f"{path}: tensor {name!r} is missing")
            t = f.get_tensor(name)
            if t.dtype != dtype or (shape is not None and tuple(t.shape) != shape):
                raise ModelFileError(f"{path}: tensor {name!r} is {t.dtype} {tuple(t.shape)}, expected {dtype} {shape}")
            if not allow_nonfinite and t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
                raise ModelFileError(
                    f"{path}: tensor {name!r} holds NaN or infinite values (allow_nonfinite=True loads it)"
                )
            used.add(name)
            return t

        layers_meta = meta["layers"]
        for key, layer in network.multitask_layers():
            lm = layers_meta.get(key)
            if not isinstance(lm, dict):
                raise ModelFileError(f"{path}: no metadata for layer {key!r}")
            for sub in lm.get("subnetworks", []):
                layer.add_subnetwork(str(sub))
            shape = tuple(layer.weight.shape)
            weight = tensor(f"{key}.weight", shape, layer.weight.dtype)
            packed = tensor(f"{key}.owner", None, torch.uint8)
            owner = torch.from_numpy(unpack_owner(packed.numpy().tobytes(), lm.get("owner", {}), shape))
            try:
                check_owner(owner, shape, len(layer.subnetworks), f"{path}: layer {key!r}")
            except RSN2Error as exc:
                raise ModelFileError(str(exc)) from None
            with torch.no_grad():
                layer.weight.copy_(weight)
                layer.owner.copy_(owner)
                for sub in layer.subnetworks:
                    layer.biases[sub].copy_(tensor(f"{key}.bias.{sub}", (layer.bias_features,), layer.weight.dtype))
            if layer.ownership() != lm.get("owned"):
                raise ModelFileError(
                    f"{path}: layer {key!r} ownership {layer.ownership()} differs from the recorded {lm.get('owned')}"
                )
        for task in network.task_names:
            for key, module in network.task_modules(task):
                state = {k: tensor(f"{key}.{k}", tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}
                module.load_state_dict(state)
        extra = names - used
        if extra:
            raise ModelFileError(f"{path}: unexpected tensor(s) {sorted(extra)[:5]}")
    network.freeze(sorted(set(meta.get("frozen", []))))
    network.selection_log = dict(meta.get("selection", {}))
    _verify_checksums(network, meta.get("checksums", {}), path)
    network.eval()
    return network


def checksums(network: MultitaskNetwork) -> dict[str, str]:
    """SHA-256 per subnetwork (its positions, weights, biases and its task's own modules) and of ``free``."""
    hashes: dict[str, Any] = {}

    def h(name: str) -> Any:
        return hashes.setdefault(name, hashlib.sha256())

    for key, layer in sorted(network.multitask_layers()):
        w = layer.kernel().detach().cpu()
        for sid, sub in enumerate([*layer.subnetworks, "free"]):
            mask = (layer.owner == (FREE if sub == "free" else sid)).cpu()
            digest = h(sub)
            digest.update(key.encode())
            digest.update(np.packbits(mask.numpy().reshape(-1)).tobytes())
            digest.update(w[mask].numpy().astype("<f4").tobytes())
            if sub != "free" and layer.has_bias:
                digest.update(layer.biases[sub].detach().cpu().numpy().astype("<f4").tobytes())
    for task in network.task_names:
        for key, module in network.task_modules(task):
            for name, value in sorted(module.state_dict().items()):
                digest = h(task)
                digest.update(f"{key}.{name}".encode())
                digest.update(value.detach().cpu().numpy().tobytes())
    return {name: d.hexdigest() for name, d in sorted(hashes.items())}


def _to_tensors(network: MultitaskNetwork) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    layers: dict[str, Any] = {}
    for key, layer in network.multitask_layers():
        packed = pack_owner(layer.owner.detach().cpu().numpy())
        tensors[f"{key}.weight"] = layer.kernel().detach().cpu().contiguous()
        tensors[f"{key}.owner"] = (
            torch.frombuffer(bytearray(packed.data), dtype=torch.uint8)
            if packed.data
            else torch.zeros(0, dtype=torch.uint8)
        )
        for sub in layer.subnetworks:
            tensors[f"{key}.bias.{sub}"] = layer.biases[sub].detach().cpu().contiguous()
        layers[key] = {"subnetworks": list(layer.subnetworks), "owned": layer.ownership(), "owner": packed.header()}
    for task in network.task_names:
        for key, module in network.task_modules(task):
            for name, value in module.state_dict().items():
                tensors[f"{key}.{name}"] = value.detach().cpu().contiguous()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rsn2_version": __version__,
        "spec": network.spec.to_dict(),
        "layers": layers,
        "frozen": sorted(network.frozen),
        "selection": network.selection_log,
        "checksums": checksums(network),
    }
    return tensors, meta


def _check_before_allocating(spec: NetworkSpec, f: Container, path: str | os.PathLike[str]) -> None:
    """Refuse an architecture the file's tensors cannot back, before the network is built: every task's
    input within :data:`MAX_INPUT_ELEMENTS`, and every multitask layer's kernel present in the file
    with the shape the spec gives it (read from the file's index, no tensor loaded)."""
    for task in spec.tasks:
        if math.prod(task.input_shape) > MAX_INPUT_ELEMENTS:
            raise ModelFileError(
                f"{path}: task {task.name!r} has input_shape {list(task.input_shape)}, over the limit of "
                f"{MAX_INPUT_ELEMENTS:,} elements per sample"
            )
    shapes = f.shapes()
    layers = [(f"trunk.{i}", s) for i, s in enumerate(spec.trunk)]
    for task in spec.tasks:
        layers += [(f"adapters.{task.name}.{i}", s) for i, s in enumerate(task.adapter)]
        layers += [(f"heads.{task.name}.{i}", s) for i, s in enumerate(task.head)]
    for key, layer in layers:
        want = _kernel_shape(layer)
        if want is None:
            continue
        got = shapes.get(f"{key}.weight")
        if got is None or tuple(got) != want:
            raise ModelFileError(
                f"{path}: layer {key!r} is {layer.kind} {want} in the header but its kernel in the file is "
                f"{'missing' if got is None else tuple(got)}"
            )


def _kernel_shape(layer: Any) -> tuple[int, ...] | None:
    p = layer.params
    if layer.kind == "linear":
        return (int(p["out_features"]), int(p["in_features"]))
    if layer.kind == "conv2d":
        k = p["kernel_size"]
        kh, kw = (int(k), int(k)) if isinstance(k, int) else (int(k[0]), int(k[1]))
        return (int(p["out_channels"]), int(p["in_channels"]), kh, kw)
    return None


def _open(path: str | os.PathLike[str]) -> Container:
    """The model file at ``path``; its header is checked for the format, version and the keys every
    model file has."""
    return _ModelContainer(path, FORMAT, READABLE_VERSIONS, ModelFileError, what="rsn2 model file")


class _ModelContainer(Container):
    def _check(self, metadata: dict[str, str]) -> dict[str, Any]:
        header = super()._check(metadata)
        for key in ("spec", "layers", "checksums"):
            if not isinstance(header.get(key), dict):
                raise ModelFileError(f"{self.path}: metadata key {key!r} is missing or not a mapping")
        return header


def _verify_checksums(network: MultitaskNetwork, recorded: dict[str, str], path: str | os.PathLike[str]) -> None:
    actual = checksums(network)
    if set(actual) != set(recorded):
        raise ModelFileError(f"{path}: checksums recorded for {sorted(recorded)}, model has {sorted(actual)}")
    bad = [name for name in actual if actual[name] != recorded[name]]
    if bad:
        raise ModelFileError(f"{path}: checksum mismatch for subnetwork(s) {bad}: the file was altered or corrupted")
