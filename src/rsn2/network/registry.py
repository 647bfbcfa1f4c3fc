"""Named networks, and the one way every file (experiment, training, benchmark) names its network.

Every YAML file spells its network as one mapping, holding exactly one of three keys::

    network: {kind: conv-a}                                   # a named network (NETWORKS)
    network: {kind: mlp, hidden: [100, 100]}                  # ... with the options its kind takes
    network: {module: "package.module:callable", input_shape: [1, 28, 28]}   # your own nn.Module
    network: {layers: [{kind: linear, ...}, ...], input_shape: [64]}         # rsn2 layer specs

A named network is a trunk of layer specs built for one sample's shape: the flat ones (``fc-a``,
``mlp``) read ``(D,)`` vectors, the convolutional ones (``conv-a``, ``conv-b``) ``(C, S, S)`` images.
Each file kind accepts the forms it can build (:func:`parse_network`'s ``forms``); the old spellings
(``network: fc-a``, ``flatten: true``; experiment files' ``architecture: conv-a``) are refused with
the new one named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rsn2.errors import ConfigError, SpecError
from rsn2.keys import check_keys, require_mapping
from rsn2.network.architectures import conv_a_trunk, conv_b_trunk, fc_a_trunk, mlp_trunk
from rsn2.network.spec import LayerSpec

FORMS = ("kind", "module", "layers")
"""The keys that say which form a ``network:`` mapping takes; exactly one is present."""


@dataclass(frozen=True)
class Trunk:
    """A trunk of layer specs for samples of ``input_shape``; ``width``: the features it outputs per sample."""

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...]
    width: int


@dataclass(frozen=True)
class NamedNetwork:
    """A network the files may name by ``kind``.

    ``input_shape``: the sample shape it is built for when the caller has none; ``flat``: whether it
    reads ``(D,)`` vectors (else ``(C, S, S)`` images); ``options``: the keys its mapping may add, with
    their defaults.
    """

    name: str
    summary: str
    input_shape: tuple[int, ...]
    flat: bool
    build: Callable[..., tuple[LayerSpec, ...]]
    options: Mapping[str, Any] = field(default_factory=dict)

    def trunk(self, input_shape: Sequence[int] | None = None, **options: Any) -> Trunk:
        """The trunk for samples of ``input_shape`` (default: :attr:`input_shape`).

        Raises:
            SpecError: an option it does not take, or a sample shape it cannot read (flat networks read
                ``(D,)``; convolutional ones square ``(C, S, S)`` images).
        """
        shape = tuple(int(d) for d in (self.input_shape if input_shape is None else input_shape))
        check_keys(options, dict.fromkeys(self.options, False), f"network {self.name}", SpecError)
        if self.flat and len(shape) != 1:
            raise SpecError(f"network {self.name} reads flat (D,) vectors, got samples of shape {list(shape)}")
        if not self.flat and (len(shape) != 3 or shape[1] != shape[2]):
            raise SpecError(f"network {self.name} reads square (C, S, S) images, got samples of shape {list(shape)}")
        layers = self.build(shape, **{**self.options, **options})
        width = next(layer.params["out_features"] for layer in reversed(layers) if layer.kind == "linear")
        return Trunk(layers, shape, int(width))


NETWORKS: dict[str, NamedNetwork] = {
    n.name: n
    for n in (
        NamedNetwork(
            "fc-a",
            "six dense layers of 1000 with ReLU (the paper's FC-A)",
            (784,),
            True,
            lambda shape: fc_a_trunk(shape[0]),
        ),
        NamedNetwork(
            "conv-a",
            "four 3x3 convolutions (32, 64) in two pooled blocks, two dense 256 (the paper's CONV-A)",
            (1, 28, 28),
            False,
            lambda shape: conv_a_trunk(shape[0], shape[1]),
        ),
        NamedNetwork(
            "conv-b",
            "six 3x3 'same' convolutions (16, 32, 64) in three pooled blocks, three dense 128 (the paper's CONV-B)",
            (3, 32, 32),
            False,
            lambda shape: conv_b_trunk(shape[0], shape[1]),
        ),
        NamedNetwork(
            "mlp",
            "dense layers of the hidden widths with ReLU (the continual-learning benchmarks' MLP)",
            (784,),
            True,
            lambda shape, hidden: mlp_trunk(shape[0], hidden),
            {"hidden": (100, 100)},
        ),
    )
}
"""Every named network, by the name the files give as ``network: {kind: NAME}``."""


@dataclass(frozen=True)
class NetworkChoice:
    """What a file's ``network:`` names, checked: exactly one of ``kind`` (with its ``options``),
    ``module`` or ``layers``; ``input_shape`` is given with ``module`` and ``layers`` (one sample's
    shape), None with ``kind`` (the caller's data or the network's own shape decides)."""

    kind: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    module: str | None = None
    layers: tuple[LayerSpec, ...] = ()
    input_shape: tuple[int, ...] | None = None

    @property
    def form(self) -> str:
        """``"kind"``, ``"module"`` or ``"layers"``."""
        return "kind" if self.kind is not None else "module" if self.module is not None else "layers"

    @property
    def flat(self) -> bool:
        """Whether the network reads flat ``(D,)`` vectors (else images or other shaped samples)."""
        if self.kind is not None:
            return NETWORKS[self.kind].flat
        assert self.input_shape is not None
        return len(self.input_shape) == 1

    def trunk(self, input_shape: Sequence[int] | None = None) -> Trunk:
        """The trunk of a ``kind`` or ``layers`` network (for ``kind``: built for ``input_shape``, default
        the network's own). The width of a ``layers`` trunk is the caller's to compute (it needs the
        layers built)."""
        if self.kind is not None:
            return NETWORKS[self.kind].trunk(input_shape, **self.options)
        if self.module is not None:
            raise SpecError(f"network {self.module!r} is a module, not a trunk of layer specs")
        assert self.input_shape is not None
        return Trunk(self.layers, self.input_shape, 0)

    def to_dict(self) -> dict[str, Any]:
        """The ``network:`` mapping this choice reads back from (options written out in full)."""
        if self.kind is not None:
            return {"kind": self.kind, **{k: _plain(v) for k, v in self.options.items()}}
        shape = list(self.input_shape or ())
        if self.module is not None:
            return {"module": self.module, "input_shape": shape}
        return {"layers": [layer.to_dict() for layer in self.layers], "input_shape": shape}


def parse_network(raw: Any, where: str = "network", forms: Sequence[str] = FORMS) -> NetworkChoice:
    """Check a file's ``network:`` value; ``forms``: which of ``kind``, ``module``, ``layers`` the file
    kind accepts.

    Raises:
        ConfigError: not a mapping (the old ``network: fc-a`` names the new spelling), not exactly one
            of the forms, a form the file kind does not take, an unknown kind or option, a malformed
            module name, layer list or input shape.
    """
    if isinstance(raw, str):
        if raw in NETWORKS:
            raise ConfigError(f"{where}: write {where}: {{kind: {raw}}} (a bare name is the old spelling)")
        raise ConfigError(f"{where}: must be a mapping such as {{kind: fc-a}}; named networks: {list(NETWORKS)}")
    net = require_mapping(raw, where)
    given = [f for f in FORMS if f in net]
    accepted = " | ".join(_FORM_TEXT[f] for f in forms)
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of {list(forms)}, got {sorted(net)}; {where}: {accepted}")
    form = given[0]
    if form not in forms:
        raise ConfigError(f"{where}: {form} networks are not taken here; {where}: {accepted}")
    if form == "kind":
        kind = net["kind"]
        if kind not in NETWORKS:
            raise ConfigError(f"{where}.kind must be one of {list(NETWORKS)}, got {kind!r}")
        named = NETWORKS[kind]
        check_keys(net, {"kind": True, **dict.fromkeys(named.options, False)}, where)
        options = {k: _option(named, k, net[k], where) for k in named.options if k in net}
        return NetworkChoice(kind=str(kind), options={**named.options, **options})
    if "flatten" in net:
        raise ConfigError(
            f"{where}.flatten is the old spelling: give {where}.input_shape, one sample's shape as the network "
            "takes it ([784] for flat vectors, [1, 28, 28] for images)"
        )
    check_keys(net, {form: True, "input_shape": True}, where)
    shape = _shape(net["input_shape"], f"{where}.input_shape")
    if form == "module":
        module = net["module"]
        if not isinstance(module, str) or ":" not in module:
            raise ConfigError(f"{where}.module must be 'package.module:callable', got {module!r}")
        return NetworkChoice(module=module, input_shape=shape)
    layers = net["layers"]
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"{where}.layers must be a non-empty list of layers, got {layers!r}")
    try:
        specs = tuple(LayerSpec.from_dict(require_mapping(d, f"{where}.layers[{i}]")) for i, d in enumerate(layers))
    except SpecError as exc:
        raise ConfigError(f"{where}.layers: {exc}") from None
    return NetworkChoice(layers=specs, input_shape=shape)


_FORM_TEXT = {
    "kind": "{kind: " + " | ".join(NETWORKS) + "}",
    "module": "{module: package.module:callable, input_shape: [...]}",
    "layers": "{layers: [...], input_shape: [...]}",
}


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(_positive_int(d) for d in value):
        raise ConfigError(f"{where} must be a non-empty list of positive integers, got {value!r}")
    return tuple(value)


def _option(named: NamedNetwork, key: str, value: Any, where: str) -> Any:
    """An option of a named network, checked (the one option today: ``mlp``'s ``hidden`` widths)."""
    if key == "hidden":
        if not isinstance(value, list) or not value or not all(_positive_int(h) for h in value):
            raise ConfigError(f"{where}.hidden must be a non-empty list of positive integers, got {value!r}")
        return tuple(value)
    return value


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
