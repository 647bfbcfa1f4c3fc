"""One model, one file: safetensors tensors plus JSON metadata in the header. Nothing is unpickled.

Layout of a file (format version 1):

- tensors ``<layer>.weight`` (the dense kernel), ``<layer>.owner`` (the packed owner map, uint8,
  see :mod:`rsn2.io.owner_codec`), ``<layer>.bias.<subnetwork>``, ``<layer>.reads.<subnetwork>``
  (a read set of forward transfer, a bitmap over earlier subnetworks' positions, see
  :mod:`rsn2.io.read_codec`), and ``<module>.<param>`` for task modules that are not multitask
  layers (embeddings);
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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rsn2.errors import ModelFileError, RSN2Error
from rsn2.io.container import Container, write_container
from rsn2.io.owner_codec import pack_owner, unpack_owner
from rsn2.io.read_codec import pack_reads, unpack_reads
from rsn2.layers import FREE
from rsn2.layers.ownership import check_owner
from rsn2.network.convert import multitask
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import NetworkSpec
from rsn2.version import __version__

FORMAT = "rsn2-model"
FORMAT_VERSION = 2  # 2: the header's digest (header_sha256) covers every field; version 1 still loads
READABLE_VERSIONS = (1, 2)
SHARED_BODY = "body."
"""Checksum entry of a converted body's tensors that no subnetwork owns (no task name has a '.')."""
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


def load_model(
    path: str | os.PathLike[str], allow_nonfinite: bool = False, *, body: nn.Module | None = None
) -> MultitaskNetwork:
    """Load and fully verify a model file; returns the network in eval mode.

    A model made by :func:`rsn2.multitask` needs ``body``: a freshly constructed instance of the same
    architecture (the file never names code to import). It is converted as the file records and
    checked name by name and shape by shape against the file's tensors; any difference is an error.

    Checked in this order: the header's format, version and digest (no tensor read yet); the stored
    architecture against limits and against the shapes of the file's tensors (before the network is
    allocated); then every tensor, owner map and checksum. Weights that are NaN or infinite are
    refused unless ``allow_nonfinite``.

    Raises:
        ModelFileError: missing, truncated, malformed or tampered file, or an unknown format version.
    """
    try:
        return _load(path, allow_nonfinite, body)
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


def _load(path: str | os.PathLike[str], allow_nonfinite: bool, body: nn.Module | None) -> MultitaskNetwork:
    with _open(path) as f:
        meta = f.header
        if meta["format_version"] >= 2 and meta.get("header_sha256") != header_digest(meta):
            raise ModelFileError(f"{path}: the header was altered (its digest does not match its fields)")
        try:
            spec = NetworkSpec.from_dict(meta["spec"])
        except RSN2Error as exc:
            raise ModelFileError(f"{path}: the stored architecture is invalid: {exc}") from None
        _check_before_allocating(spec, f, path)
        network = _network_for(spec, meta, body, path)
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
        read_sets: list[tuple[Any, str, Tensor]] = []  # restored once the earlier subnetworks are frozen
        for key, layer in network.multitask_layers():
            lm = layers_meta.get(key)
            if not isinstance(lm, dict):
                raise ModelFileError(f"{path}: no metadata for layer {key!r}")
            if lm.get("kind", type(layer).__name__) != type(layer).__name__:
                raise ModelFileError(
                    f"{path}: layer {key!r} is a {lm.get('kind')!r} in the file, {type(layer).__name__} here"
                )
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
                for sub in layer.biases:
                    layer.biases[sub].copy_(tensor(f"{key}.bias.{sub}", (layer.bias_features,), layer.weight.dtype))
            if layer.ownership() != lm.get("owned"):
                raise ModelFileError(
                    f"{path}: layer {key!r} ownership {layer.ownership()} differs from the recorded {lm.get('owned')}"
                )
            for sub, mask in _read_sets(lm, owner, layer.subnetworks, key, path, tensor).items():
                read_sets.append((layer, sub, mask))
        for task in network.task_names:
            for key, module in network.task_modules(task):
                state = {k: tensor(f"{key}.{k}", tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}
                module.load_state_dict(state)
        copies_meta = meta.get("body", {}).get("per_subnetwork", {})
        for key, per_subnetwork in network.per_subnetwork_layers():
            for sub in copies_meta.get(key, {}).get("subnetworks", []):
                per_subnetwork.add_subnetwork(str(sub))
                copy = per_subnetwork.copies[str(sub)]
                state = {
                    k: tensor(f"{key}.copies.{sub}.{k}", tuple(v.shape), v.dtype) for k, v in copy.state_dict().items()
                }
                copy.load_state_dict(state)
        with torch.no_grad():
            for name, value in network.body_state().items():
                value.copy_(tensor(f"body.{name}", tuple(value.shape), value.dtype))
        extra = names - used
        if extra:
            raise ModelFileError(f"{path}: unexpected tensor(s) {sorted(extra)[:5]}")
    frozen = meta.get("frozen", [])
    known = {t.name for t in network.spec.tasks} | {g.name for g in network.spec.shared}
    if not isinstance(frozen, list) or not all(isinstance(n, str) and n in known for n in frozen):
        raise ModelFileError(f"{path}: frozen must list subnetworks of the model ({sorted(known)}), got {frozen!r}")
    network.freeze(sorted(set(frozen)))
    for layer, sub, mask in read_sets:
        try:
            layer.restore_reads(sub, mask)
        except RSN2Error as exc:
            raise ModelFileError(f"{path}: {exc}") from None
    network.selection_log = dict(meta.get("selection", {}))
    _verify_checksums(network, meta.get("checksums", {}), path)
    network.eval()
    return network


def _network_for(
    spec: NetworkSpec, meta: dict[str, Any], body: nn.Module | None, path: str | os.PathLike[str]
) -> MultitaskNetwork:
    """The empty network the file's tensors go into: built from the spec, or ``body`` converted as
    the file records (its multitask layers and per-subnetwork layers must be the file's)."""
    recorded = meta.get("body")
    if recorded is None:
        if body is not None:
            raise ModelFileError(f"{path}: this model was not made from a module; load it without body=")
        try:
            return MultitaskNetwork(spec)
        except RSN2Error as exc:
            raise ModelFileError(f"{path}: the stored architecture is invalid: {exc}") from None
    if body is None:
        raise ModelFileError(
            f"{path}: this model was made from a {recorded.get('class', 'user')} module by rsn2.multitask; "
            "pass a fresh instance of it (load_model(path, body=...); on the command line --factory "
            "package.module:callable)"
        )
    try:
        network = multitask(
            body,
            spec.tasks,
            shared_frozen=recorded.get("shared_frozen", ()),
            dense_per_task=recorded.get("dense_per_task", ()),
            shared=spec.shared,
        )
    except RSN2Error as exc:
        raise ModelFileError(f"{path}: the given module cannot be converted as the file's was: {exc}") from None
    network.conversion = {k: v for k, v in recorded.items() if k != "per_subnetwork"}  # as written, kept on save
    in_file = set(meta["layers"]) | set(recorded.get("per_subnetwork", {}))
    in_module = {k for k, _ in network.multitask_layers()} | {k for k, _ in network.per_subnetwork_layers()}
    if in_file != in_module:
        raise ModelFileError(
            f"{path}: the given module does not match the file: layers only in the file "
            f"{sorted(in_file - in_module)[:5]}, only in the module {sorted(in_module - in_file)[:5]}"
        )
    return network


@dataclass(frozen=True)
class _Contents:
    """What a model file's checksums cover, in the order they are hashed; built from a network or
    from a file's tensors, so that a file can be verified without building its network."""

    kernels: list[tuple[str, Tensor, Tensor, list[str], dict[str, Tensor], dict[str, Tensor]]]
    """(layer key, kernel, owner map, subnetworks, biases and read sets by subnetwork), sorted by key."""
    task_tensors: list[tuple[str, str, Tensor]]
    """(task, tensor name, tensor) of tasks' own modules that are not multitask layers."""
    copies: list[tuple[str, str, Tensor]]
    """(subnetwork, tensor name, tensor) of per-subnetwork layers, sorted by layer key."""
    body: list[tuple[str, Tensor]]
    """(name in the body, tensor) of a converted body's tensors no subnetwork owns, sorted."""

    @classmethod
    def of(cls, network: MultitaskNetwork) -> _Contents:
        kernels = [
            (
                key,
                layer.kernel().detach(),
                layer.owner,
                list(layer.subnetworks),
                dict(layer.biases.items()),
                {n: r for n in layer.subnetworks if (r := layer.reads(n)) is not None},
            )
            for key, layer in sorted(network.multitask_layers())
        ]
        task_tensors = [
            (task, f"{key}.{name}", value)
            for task in network.task_names
            for key, module in network.task_modules(task)
            for name, value in sorted(module.state_dict().items())
        ]
        copies = [
            (sub, f"{key}.copies.{sub}.{name}", value)
            for key, layer in sorted(network.per_subnetwork_layers())
            for sub in layer.subnetworks
            for name, value in sorted(layer.copies[sub].state_dict().items())
        ]
        return cls(kernels, task_tensors, copies, sorted(network.body_state().items()))

    @classmethod
    def read(cls, f: Container, meta: dict[str, Any], spec: NetworkSpec, path: str | os.PathLike[str]) -> _Contents:
        """The contents of an open model file, owner maps decoded and checked against the header."""
        kernels = []
        for key in sorted(meta["layers"]):
            lm = meta["layers"][key]
            weight = f.get_tensor(f"{key}.weight")
            shape = tuple(weight.shape)
            owner = torch.from_numpy(
                unpack_owner(f.get_tensor(f"{key}.owner").numpy().tobytes(), lm.get("owner", {}), shape)
            )
            subnetworks = [str(n) for n in lm.get("subnetworks", [])]
            check_owner(owner, shape, len(subnetworks), f"{path}: layer {key!r}")
            counts = torch.bincount(owner.flatten().long(), minlength=FREE + 1)
            owned = {n: int(counts[i]) for i, n in enumerate(subnetworks)} | {"free": int(counts[FREE])}
            if owned != lm.get("owned"):
                raise ModelFileError(
                    f"{path}: layer {key!r} ownership {owned} differs from the recorded {lm.get('owned')}"
                )
            biases = {n: f.get_tensor(f"{key}.bias.{n}") for n in subnetworks if f"{key}.bias.{n}" in f.keys()}
            reads = _read_sets(lm, owner, subnetworks, key, path, lambda name, *_: f.get_tensor(name))
            kernels.append((key, weight, owner, subnetworks, biases, reads))
        names = sorted(f.keys())
        task_tensors = []
        for task in spec.tasks:
            for part, layers in (("adapters", task.adapter), ("heads", task.head)):
                for i, layer in enumerate(layers):
                    if not layer.is_multitask:
                        prefix = f"{part}.{task.name}.{i}."
                        task_tensors += [(task.name, n, f.get_tensor(n)) for n in names if n.startswith(prefix)]
        copies_meta = meta.get("body", {}).get("per_subnetwork", {})
        copies = [
            (sub, n, f.get_tensor(n))
            for key in sorted(copies_meta)
            for sub in copies_meta[key]["subnetworks"]
            for n in names
            if n.startswith(f"{key}.copies.{sub}.")
        ]
        known = {f"{key}.{part}" for key in meta["layers"] for part in ("weight", "owner")}
        known |= {f"{key}.bias.{n}" for key, _, _, subnetworks, _, _ in kernels for n in subnetworks}
        known |= {f"{key}.reads.{n}" for key, _, _, _, _, reads in kernels for n in reads}
        known |= {n for _, n, _ in task_tensors} | {n for _, n, _ in copies}
        body = [(n[len("body.") :], f.get_tensor(n)) for n in names if n.startswith("body.") and n not in known]
        return cls(kernels, task_tensors, copies, body)

    def checksums(self) -> dict[str, str]:
        """SHA-256 per subnetwork (its positions, weights, biases, its task's own modules and its
        per-subnetwork copies), of ``free``, and of a converted body's shared tensors (:data:`SHARED_BODY`)."""
        hashes: dict[str, Any] = {}

        def h(name: str) -> Any:
            return hashes.setdefault(name, hashlib.sha256())

        for key, kernel, owner, subnetworks, biases, reads in self.kernels:
            w = kernel.detach().cpu()
            for sid, sub in enumerate([*subnetworks, "free"]):
                mask = (owner == (FREE if sub == "free" else sid)).cpu()
                digest = h(sub)
                digest.update(key.encode())
                digest.update(np.packbits(mask.numpy().reshape(-1)).tobytes())
                digest.update(w[mask].numpy().astype("<f4").tobytes())
                if sub != "free" and sub in biases:
                    digest.update(biases[sub].detach().cpu().numpy().astype("<f4").tobytes())
                if sub in reads:  # what it reads of earlier subnetworks (their values are in theirs)
                    digest.update(b"reads")
                    digest.update(np.packbits(reads[sub].detach().cpu().numpy().reshape(-1)).tobytes())
        for sub, name, value in [*self.task_tensors, *self.copies]:
            digest = h(sub)
            digest.update(name.encode())
            digest.update(value.detach().cpu().numpy().tobytes())
        for name, value in self.body:
            digest = h(SHARED_BODY)
            digest.update(name.encode())
            digest.update(value.detach().cpu().numpy().tobytes())
        return {name: d.hexdigest() for name, d in sorted(hashes.items())}


def verify_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify a model file without building its network (no module needed, also for a converted one):
    the header's digest, every owner map (decoded, known subnetworks, recorded counts) and every
    checksum. Returns the header with, per multitask layer, ``kind`` and ``shape`` filled in.

    Raises:
        ModelFileError: as :func:`load_model` for a damaged or altered file.
    """
    try:
        with _open(path) as f:
            meta = f.header
            if meta["format_version"] >= 2 and meta.get("header_sha256") != header_digest(meta):
                raise ModelFileError(f"{path}: the header was altered (its digest does not match its fields)")
            spec = NetworkSpec.from_dict(meta["spec"])
            contents = _Contents.read(f, meta, spec, path)
    except ModelFileError:
        raise
    except (RSN2Error, TypeError, ValueError, AttributeError, KeyError, IndexError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: malformed model file ({type(exc).__name__}: {exc})") from None
    recorded = meta.get("checksums", {})
    if contents.checksums() != recorded:
        raise ModelFileError(f"{path}: checksum mismatch: the file was altered or corrupted")
    for key, kernel, _, _, _, _ in contents.kernels:
        meta["layers"][key] = dict(meta["layers"][key]) | {"shape": list(kernel.shape)}
    return meta


def checksums(network: MultitaskNetwork) -> dict[str, str]:
    """SHA-256 per subnetwork (its positions, weights, biases and its task's own modules) and of ``free``."""
    return _Contents.of(network).checksums()


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
        for sub in layer.biases:
            tensors[f"{key}.bias.{sub}"] = layer.biases[sub].detach().cpu().contiguous()
        layers[key] = {
            "subnetworks": list(layer.subnetworks),
            "owned": layer.ownership(),
            "owner": packed.header(),
            "kind": type(layer).__name__,
        }
        read_sets = {}
        for sid, sub in enumerate(layer.subnetworks):
            reads = layer.reads(sub)
            if reads is not None:
                encoding, data = pack_reads(reads.cpu().numpy(), layer.owner.cpu().numpy(), sid)
                tensors[f"{key}.reads.{sub}"] = (
                    torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
                )
                read_sets[sub] = {"count": int(reads.sum()), "encoding": encoding}
        if read_sets:
            layers[key]["reads"] = read_sets
    for task in network.task_names:
        for key, module in network.task_modules(task):
            for name, value in module.state_dict().items():
                tensors[f"{key}.{name}"] = value.detach().cpu().contiguous()
    copies: dict[str, Any] = {}
    for key, per_subnetwork in network.per_subnetwork_layers():
        for sub in per_subnetwork.subnetworks:
            for name, value in per_subnetwork.copies[sub].state_dict().items():
                tensors[f"{key}.copies.{sub}.{name}"] = value.detach().cpu().contiguous()
        copies[key] = {
            "subnetworks": list(per_subnetwork.subnetworks),
            "module": type(per_subnetwork.template).__name__,
        }
    for name, value in network.body_state().items():
        tensors[f"body.{name}"] = value.detach().cpu().contiguous()
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
    if network.body is not None:
        meta["body"] = dict(network.conversion or {}) | {"per_subnetwork": copies}
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


def _read_sets(
    lm: dict[str, Any],
    owner: Tensor,
    subnetworks: list[str],
    key: str,
    path: str | os.PathLike[str],
    tensor: Any,
) -> dict[str, Tensor]:
    """The read sets a layer's header records (``lm["reads"]``: subnetwork -> ``{"count", "encoding"}``),
    decoded from their tensors (``tensor(name, shape, dtype)`` reads one) against the layer's owner map."""
    recorded = lm.get("reads", {})
    if not isinstance(recorded, dict):
        raise ModelFileError(f"{path}: layer {key!r}: 'reads' must map subnetworks to their read sets")
    out = {}
    owner_np = owner.cpu().numpy()
    for sub, entry in recorded.items():
        if sub not in subnetworks or not isinstance(entry, dict) or not isinstance(entry.get("count"), int):
            raise ModelFileError(
                f"{path}: layer {key!r} records a bad read set for {sub!r} (subnetworks {subnetworks})"
            )
        data = tensor(f"{key}.reads.{sub}", None, torch.uint8).numpy().tobytes()
        where = f"{path}: layer {key!r}, read set of {sub!r}"
        sid = subnetworks.index(sub)
        out[sub] = torch.from_numpy(
            unpack_reads(str(entry.get("encoding")), data, owner_np, sid, entry["count"], where)
        )
    return out
