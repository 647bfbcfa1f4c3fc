"""Plain, JSON-serialisable descriptions of a multitask network.

A :class:`NetworkSpec` is what a model file stores as its architecture: a shared trunk of layer
descriptions, the tasks (each with an optional input adapter, an entry point into the trunk and an
output head) and the subnetworks that several tasks share in chosen trunk layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rsn2.errors import SpecError
from rsn2.keys import check_keys, require_mapping
from rsn2.network.task_kinds import TASK_KINDS

LAYER_PARAMS: dict[str, dict[str, bool]] = {
    # kind -> {parameter: required}
    "linear": {"in_features": True, "out_features": True, "bias": False},
    "conv2d": {
        "in_channels": True,
        "out_channels": True,
        "kernel_size": True,
        "stride": False,
        "padding": False,
        "dilation": False,
        "bias": False,
    },
    "embedding": {"num_embeddings": True, "embedding_dim": True, "init_range": False},
    "relu": {},
    "flatten": {},
    "maxpool2d": {"kernel_size": True, "stride": False},
}
"""Every layer kind a spec may use and its parameters (True = required)."""


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _sizes(v: Any, least: int = 1) -> bool:
    """An int >= ``least``, or a list of two (one per spatial dimension)."""
    if isinstance(v, (list, tuple)):
        return len(v) == 2 and all(_sizes(x, least) for x in v)
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


_PARAM_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(
        ("in_features", "out_features", "in_channels", "out_channels", "num_embeddings", "embedding_dim"),
        (_positive_int, "a positive integer"),
    ),
    "kernel_size": (_sizes, "a positive integer or a list of two"),
    "stride": (_sizes, "a positive integer or a list of two"),
    "dilation": (_sizes, "a positive integer or a list of two"),
    "padding": (lambda v: v in ("same", "valid") or _sizes(v, 0), "'same', 'valid', an integer >= 0 or a list of two"),
    "bias": (lambda v: isinstance(v, bool), "true or false"),
    "init_range": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf"),
        "a positive number",
    ),
}
"""Each layer parameter's rule and how the error states it."""

MULTITASK_KINDS = frozenset({"linear", "conv2d"})
"""Kinds built as multitask layers (split among subnetworks, prunable)."""


def check_keep_fraction(value: object, where: str) -> float:
    """``value`` as a float if it is a keep fraction (a number in ``(0, 1]``); else :class:`SpecError`
    naming ``where``. The one check every keep fraction goes through."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise SpecError(f"{where} must be a number in (0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its kind (a key of :data:`LAYER_PARAMS`) and its parameters."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in LAYER_PARAMS:
            raise SpecError(f"unknown layer kind {self.kind!r}; allowed: {sorted(LAYER_PARAMS)}")
        check_keys(self.params, LAYER_PARAMS[self.kind], f"layer {self.kind!r}", SpecError)
        for name, value in self.params.items():
            rule, allowed = _PARAM_RULES[name]
            if not rule(value):
                raise SpecError(f"layer {self.kind!r}: {name} must be {allowed}, got {value!r}")

    @property
    def is_multitask(self) -> bool:
        return self.kind in MULTITASK_KINDS

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: _jsonable(v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSpec:
        if not isinstance(data, Mapping) or "kind" not in data:
            raise SpecError(f"a layer must be a mapping with a 'kind' key, got {data!r}")
        params = {k: v for k, v in data.items() if k != "kind"}
        return cls(str(data["kind"]), params)


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# Small constructors so specs read like code.
def linear(in_features: int, out_features: int, bias: bool = True) -> LayerSpec:
    return LayerSpec("linear", {"in_features": in_features, "out_features": out_features, "bias": bias})


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    bias: bool = True,
) -> LayerSpec:
    return LayerSpec(
        "conv2d",
        {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "kernel_size": kernel_size,
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "bias": bias,
        },
    )


def relu() -> LayerSpec:
    return LayerSpec("relu")


def flatten() -> LayerSpec:
    return LayerSpec("flatten")


def maxpool2d(kernel_size: int = 2, stride: int | None = None) -> LayerSpec:
    params: dict[str, Any] = {"kernel_size": kernel_size}
    if stride is not None:
        params["stride"] = stride
    return LayerSpec("maxpool2d", params)


def embedding(num_embeddings: int, embedding_dim: int, init_range: float | None = None) -> LayerSpec:
    """Token embedding; weights start uniform in ``[-init_range, init_range]`` (default
    :data:`rsn2.network.build.EMBEDDING_INIT_RANGE`)."""
    params: dict[str, Any] = {"num_embeddings": num_embeddings, "embedding_dim": embedding_dim}
    if init_range is not None:
        params["init_range"] = init_range
    return LayerSpec("embedding", params)


_TASK_KEYS = {
    **dict.fromkeys(("name", "kind", "input_shape", "head"), True),
    **dict.fromkeys(
        (
            "adapter",
            "enter_at",
            "keep_fraction",
            "prune_adapter",
            "prune_head",
            "classes",
            "token_input",
            "output_width",
            "vocabulary",
        ),
        False,
    ),
}
"""A task's keys in a spec's JSON (True: required)."""


@dataclass(frozen=True)
class TaskSpec:
    """One task's own parts and how it is pruned.

    Args:
        name: unique task name (also the name of its own subnetwork).
        kind: ``"classification"`` (cross-entropy, accuracy) or ``"regression"`` (MSE).
        input_shape: shape of one input sample, without the batch axis.
        head: layers after the trunk (or converted body), ending in the task's outputs; empty when the
            body's output is the task's (a network made by :func:`rsn2.multitask`).
        adapter: layers before the trunk (for inputs of another shape); may be empty.
        enter_at: index of the first trunk layer the task uses (skipping layers its adapter replaces).
        keep_fraction: fraction of every pruned layer's positions the task keeps (``1 - pruning rate``).
        prune_adapter: whether multitask adapter layers keep only ``keep_fraction`` (else all).
        prune_head: whether multitask head layers keep only ``keep_fraction`` (else all).
        classes: class names, one per output, of a classification task (stored in model files so
            that a client can read the answer); None when unnamed.
        token_input: the input is int64 token ids though no adapter starts with an embedding (a
            converted body that begins with one).
        output_width, vocabulary: filled in by the network for a task without a head (its body's
            output width) and for a ``token_input`` task (its body's first embedding's size).
    """

    name: str
    kind: str
    input_shape: Sequence[int]
    head: Sequence[LayerSpec]
    adapter: Sequence[LayerSpec] = ()
    enter_at: int = 0
    keep_fraction: float = 0.1
    prune_adapter: bool = True
    prune_head: bool = False
    classes: Sequence[str] | None = None
    token_input: bool = False
    output_width: int | None = None
    vocabulary: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "." in self.name or self.name == "free":
            raise SpecError(f"task name must be a non-empty string without '.', not 'free'; got {self.name!r}")
        if self.kind not in TASK_KINDS:
            raise SpecError(f"task {self.name!r}: kind must be one of {tuple(TASK_KINDS)}, got {self.kind!r}")
        object.__setattr__(
            self, "keep_fraction", check_keep_fraction(self.keep_fraction, f"task {self.name!r}: keep_fraction")
        )
        if self.enter_at < 0:
            raise SpecError(f"task {self.name!r}: enter_at must be >= 0, got {self.enter_at}")
        if not self.input_shape or any(int(d) < 1 for d in self.input_shape):
            raise SpecError(f"task {self.name!r}: input_shape must be non-empty positive ints, got {self.input_shape}")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "head", tuple(self.head))
        object.__setattr__(self, "adapter", tuple(self.adapter))
        if self.classes is not None:
            if isinstance(self.classes, str) or not isinstance(self.classes, Sequence):
                raise SpecError(f"task {self.name!r}: classes must be a list of names, got {self.classes!r}")
            classes = tuple(self.classes)
            if self.kind != "classification":
                raise SpecError(f"task {self.name!r}: only classification tasks have classes")
            if not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
                raise SpecError(f"task {self.name!r}: classes must be distinct non-empty strings, got {classes}")
            if self.outputs is not None and len(classes) != self.outputs:
                raise SpecError(f"task {self.name!r}: {len(classes)} class names for {self.outputs} outputs")
            object.__setattr__(self, "classes", classes)

    @property
    def outputs(self) -> int | None:
        """Outputs per sample: the last head layer's ``out_features`` (None without a head or if it has none)."""
        if not self.head:
            return self.output_width
        value = self.head[-1].params.get("out_features")
        return int(value) if value is not None else None

    @property
    def input_dtype(self) -> str:
        """The input's datatype in Open Inference Protocol terms: ``"INT64"`` (token ids) or ``"FP32"``."""
        return "INT64" if self.takes_tokens else "FP32"

    @property
    def vocabulary_size(self) -> int | None:
        """How many token ids a token task takes (its adapter's embedding, or :attr:`vocabulary`)."""
        if self.adapter and self.adapter[0].kind == "embedding":
            return int(self.adapter[0].params["num_embeddings"])
        return self.vocabulary

    @property
    def takes_tokens(self) -> bool:
        """True when the task's input is integer token ids (its adapter starts with an embedding)."""
        return self.token_input or (bool(self.adapter) and self.adapter[0].kind == "embedding")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "head": [layer.to_dict() for layer in self.head],
            "adapter": [layer.to_dict() for layer in self.adapter],
            "enter_at": self.enter_at,
            "keep_fraction": self.keep_fraction,
            "prune_adapter": self.prune_adapter,
            "prune_head": self.prune_head,
            "classes": list(self.classes) if self.classes is not None else None,
        } | {
            k: v
            for k, v in (
                ("token_input", self.token_input),
                ("output_width", self.output_width),
                ("vocabulary", self.vocabulary),
            )
            if v
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        data = require_mapping(data, "a task", SpecError)
        check_keys(data, _TASK_KEYS, "task", SpecError)
        return cls(
            name=data["name"],
            kind=data["kind"],
            input_shape=tuple(data["input_shape"]),
            head=tuple(LayerSpec.from_dict(d) for d in data["head"]),
            adapter=tuple(LayerSpec.from_dict(d) for d in data.get("adapter", ())),
            enter_at=int(data.get("enter_at", 0)),
            keep_fraction=float(data.get("keep_fraction", 0.1)),
            prune_adapter=bool(data.get("prune_adapter", True)),
            prune_head=bool(data.get("prune_head", False)),
            classes=data.get("classes"),
            token_input=bool(data.get("token_input", False)),
            output_width=int(data["output_width"]) if data.get("output_width") is not None else None,
            vocabulary=int(data["vocabulary"]) if data.get("vocabulary") is not None else None,
        )


@dataclass(frozen=True)
class SharedSubnetwork:
    """Several tasks reading and training ONE subnetwork in the given layers.

    Args:
        name: the subnetwork's name (must not clash with a task name).
        tasks: the tasks that share it.
        layers: where they share it: indices of multitask trunk layers (a network built from layer
            specs), or, in a network made by :func:`rsn2.multitask`, module keys of its converted
            body: ``"body"`` (every multitask layer of the body) or ``"body.<name>"`` (every one at
            or inside the module ``<name>`` of the user's model).
        keep_fraction: fraction of each of those layers the shared subnetwork keeps.
    """

    name: str
    tasks: Sequence[str]
    layers: Sequence[int] | Sequence[str]
    keep_fraction: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "." in self.name or self.name == "free":
            raise SpecError(f"shared subnetwork name must be a non-empty string without '.'; got {self.name!r}")
        if len(self.tasks) < 2:
            raise SpecError(f"shared subnetwork {self.name!r} needs at least two tasks, got {list(self.tasks)}")
        if isinstance(self.layers, str) or not self.layers:
            raise SpecError(
                f"shared subnetwork {self.name!r} needs a list of trunk layer indices or of body module keys "
                f"('body', 'body.<module>'), got {self.layers!r}"
            )
        where = f"shared subnetwork {self.name!r}: keep_fraction"
        object.__setattr__(self, "keep_fraction", check_keep_fraction(self.keep_fraction, where))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "layers", _shared_layers(self.name, self.layers))

    @property
    def in_body(self) -> bool:
        """Whether ``layers`` name modules of a converted body (else trunk indices)."""
        return isinstance(self.layers[0], str)

    def covers(self, key: str) -> bool:
        """Whether the body layer with this key (``body.<name>``) is one of the shared ones."""
        return any(key == k or key.startswith(f"{k}.") for k in self.layers if isinstance(k, str))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "layers": list(self.layers),
            "keep_fraction": self.keep_fraction,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedSubnetwork:
        data = require_mapping(data, "a shared subnetwork", SpecError)
        check_keys(
            data, dict.fromkeys(("name", "tasks", "layers", "keep_fraction"), True), "shared subnetwork", SpecError
        )
        return cls(data["name"], tuple(data["tasks"]), tuple(data["layers"]), float(data["keep_fraction"]))


def _shared_layers(name: str, layers: Sequence[Any]) -> tuple[int, ...] | tuple[str, ...]:
    """``layers`` of a shared subnetwork, checked: all trunk indices or all body keys."""
    if all(isinstance(k, str) for k in layers):
        bad = [k for k in layers if k != "body" and not (k.startswith("body.") and len(k) > 5)]
        if bad:
            raise SpecError(
                f"shared subnetwork {name!r}: {bad} are not body module keys; write 'body' (the whole "
                "converted model) or 'body.<module name>'"
            )
        return tuple(layers)
    if all(isinstance(k, int) and not isinstance(k, bool) for k in layers):
        return tuple(layers)
    raise SpecError(
        f"shared subnetwork {name!r}: layers must be all trunk indices or all body module keys, got {list(layers)}"
    )


@dataclass(frozen=True)
class NetworkSpec:
    """A whole multitask network: trunk, tasks and shared subnetworks. Validated on creation."""

    trunk: Sequence[LayerSpec]
    tasks: Sequence[TaskSpec] = ()
    shared: Sequence[SharedSubnetwork] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "trunk", tuple(self.trunk))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "shared", tuple(self.shared))
        if any(layer.kind == "embedding" for layer in self.trunk):
            raise SpecError("embedding layers belong in a task's adapter, not in the shared trunk")
        names = [t.name for t in self.tasks]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise SpecError(f"duplicate task name(s): {sorted(dupes)}")
        for task in self.tasks:
            if task.enter_at > len(self.trunk):
                raise SpecError(
                    f"task {task.name!r}: enter_at={task.enter_at} but the trunk has {len(self.trunk)} layers"
                )
            if any(layer.kind == "embedding" for layer in task.adapter[1:]) or any(
                layer.kind == "embedding" for layer in task.head
            ):
                raise SpecError(f"task {task.name!r}: an embedding may only be the first adapter layer")
        seen_layers: dict[tuple[str, int], str] = {}
        for group in self.shared:
            if group.name in names:
                raise SpecError(f"shared subnetwork {group.name!r} has the same name as a task")
            for t in group.tasks:
                if t not in names:
                    raise SpecError(f"shared subnetwork {group.name!r} names unknown task {t!r}; tasks: {names}")
            if group.in_body:  # checked against the body by MultitaskNetwork
                if self.trunk:
                    raise SpecError(f"shared subnetwork {group.name!r} names body modules but the network has a trunk")
                continue
            if not self.trunk:
                raise SpecError(
                    f"shared subnetwork {group.name!r} names trunk layers {list(group.layers)} but the network has "
                    "no trunk; in a module made multitask, name its modules ('body' or 'body.<module name>')"
                )
            for i in group.layers:
                assert isinstance(i, int)
                if not 0 <= i < len(self.trunk) or not self.trunk[i].is_multitask:
                    raise SpecError(
                        f"shared subnetwork {group.name!r}: layer {i} is not a multitask trunk layer "
                        f"(multitask layers: {[j for j, s in enumerate(self.trunk) if s.is_multitask]})"
                    )
                for t in group.tasks:
                    task = self.task(t)
                    if i < task.enter_at:
                        raise SpecError(f"shared subnetwork {group.name!r}: task {t!r} does not use trunk layer {i}")
                    if (t, i) in seen_layers:
                        raise SpecError(
                            f"task {t!r} shares trunk layer {i} twice ({seen_layers[(t, i)]!r}, {group.name!r})"
                        )
                    seen_layers[(t, i)] = group.name

    @property
    def has_convolutions(self) -> bool:
        """Whether any layer of the trunk or of a task's adapter or head is a 2-D convolution."""
        layers = [*self.trunk, *(layer for t in self.tasks for layer in (*t.adapter, *t.head))]
        return any(layer.kind == "conv2d" for layer in layers)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        from rsn2.errors import TaskError

        raise TaskError(f"unknown task {name!r}; tasks: {self.task_names}")

    def with_tasks(self, tasks: Iterable[TaskSpec], shared: Sequence[SharedSubnetwork] = ()) -> NetworkSpec:
        """A copy with ``tasks`` (and ``shared`` groups) appended."""
        return NetworkSpec(self.trunk, (*self.tasks, *tasks), (*self.shared, *shared))

    def to_dict(self) -> dict[str, Any]:
        return {
            "trunk": [layer.to_dict() for layer in self.trunk],
            "tasks": [t.to_dict() for t in self.tasks],
            "shared": [g.to_dict() for g in self.shared],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkSpec:
        data = require_mapping(data, "a network", SpecError)
        check_keys(data, {"trunk": True, "tasks": False, "shared": False}, "network", SpecError)
        return cls(
            tuple(LayerSpec.from_dict(d) for d in data["trunk"]),
            tuple(TaskSpec.from_dict(d) for d in data.get("tasks", ())),
            tuple(SharedSubnetwork.from_dict(d) for d in data.get("shared", ())),
        )
