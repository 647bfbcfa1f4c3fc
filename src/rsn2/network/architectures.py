"""The paper's architectures (docs/method.md, "Architectures") as trunk and head specs."""

from __future__ import annotations

from collections.abc import Sequence

from rsn2.network.spec import LayerSpec, conv2d, flatten, linear, maxpool2d, relu


def fc_a_trunk(in_features: int = 784, width: int = 1000, depth: int = 6) -> tuple[LayerSpec, ...]:
    """FC-A: ``depth`` dense layers of ``width`` with ReLU, on a flattened input."""
    layers: list[LayerSpec] = []
    for i in range(depth):
        layers += [linear(in_features if i == 0 else width, width), relu()]
    return tuple(layers)


def mlp_trunk(in_features: int, hidden: Sequence[int]) -> tuple[LayerSpec, ...]:
    """Dense layers of the ``hidden`` widths with ReLU (784-100-100: ``mlp_trunk(784, [100, 100])``)."""
    layers: list[LayerSpec] = []
    width = in_features
    for h in hidden:
        layers += [linear(width, h), relu()]
        width = h
    return tuple(layers)


def conv_a_trunk(in_channels: int = 1, image_size: int = 28) -> tuple[LayerSpec, ...]:
    """CONV-A: two blocks of two 3x3 'valid' convs (32, 64) + maxpool, then two dense 256 with ReLU."""
    side = ((image_size - 4) // 2 - 4) // 2
    return (
        conv2d(in_channels, 32, 3),
        relu(),
        conv2d(32, 32, 3),
        relu(),
        maxpool2d(2),
        conv2d(32, 64, 3),
        relu(),
        conv2d(64, 64, 3),
        relu(),
        maxpool2d(2),
        flatten(),
        linear(64 * side * side, 256),
        relu(),
        linear(256, 256),
        relu(),
    )


def conv_b_trunk(in_channels: int = 3, image_size: int = 32) -> tuple[LayerSpec, ...]:
    """CONV-B: three blocks of two 3x3 'same' convs (16, 32, 64) + maxpool, then three dense 128 with ReLU."""
    layers: list[LayerSpec] = []
    c_in = in_channels
    for c_out in (16, 32, 64):
        layers += [
            conv2d(c_in, c_out, 3, padding="same"),
            relu(),
            conv2d(c_out, c_out, 3, padding="same"),
            relu(),
            maxpool2d(2),
        ]
        c_in = c_out
    side = image_size // 8
    layers += [flatten(), linear(64 * side * side, 128), relu(), linear(128, 128), relu(), linear(128, 128), relu()]
    return tuple(layers)


def dense_head(width: int, outputs: int) -> tuple[LayerSpec, ...]:
    """A task head: one dense layer from the trunk's width to the task's outputs."""
    return (linear(width, outputs),)
