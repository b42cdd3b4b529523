"""EfficientNet-Lite in Keras 3, and the mapping of its PyTorch state dict onto it.

Only ``keras.layers`` are used, so the graph runs on any Keras backend. The
layout is EfficientNet-B0 with the Lite changes: no squeeze-and-excite, ReLU6,
stem (32) and head (1280) fixed whatever the width multiplier, and the first and
last stages never repeated more often. Inputs are float32 RGB in 0..255; the model
normalises them itself with ``(x - 127) / 128``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
DEPTH_DIVISOR = 8


@dataclass(frozen=True)
class StageArgs:
    repeats: int
    kernel_size: int
    strides: int
    expand_ratio: int
    input_filters: int
    output_filters: int


# The EfficientNet-B0 stages (squeeze-and-excite dropped for Lite).
B0_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class BlockArgs:
    """One MBConv block after width and depth scaling."""

    kernel_size: int
    strides: int
    input_filters: int
    expanded_filters: int
    output_filters: int

    @property
    def has_expand(self) -> bool:
        return self.expanded_filters != self.input_filters

    @property
    def has_skip(self) -> bool:
        return self.strides == 1 and self.input_filters == self.output_filters


def round_filters(filters: int, width: float) -> int:
    """Scale a channel count by ``width`` and round to a multiple of 8 (never down by >10%)."""
    scaled = filters * width
    rounded = max(DEPTH_DIVISOR, int(scaled + DEPTH_DIVISOR / 2) // DEPTH_DIVISOR * DEPTH_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += DEPTH_DIVISOR
    return int(rounded)


def block_args(width: float, depth: float) -> list[BlockArgs]:
    """Expand the B0 stages into the per-block layout of one Lite variant."""
    blocks: list[BlockArgs] = []
    last = len(B0_STAGES) - 1
    for index, stage in enumerate(B0_STAGES):
        fixed = index in (0, last)
        repeats = stage.repeats if fixed else math.ceil(depth * stage.repeats)
        in_filters = STEM_FILTERS if index == 0 else round_filters(stage.input_filters, width)
        out_filters = round_filters(stage.output_filters, width)
        for repeat in range(repeats):
            block_in = in_filters if repeat == 0 else out_filters
            blocks.append(
                BlockArgs(
                    kernel_size=stage.kernel_size,
                    strides=stage.strides if repeat == 0 else 1,
                    input_filters=block_in,
                    expanded_filters=block_in * stage.expand_ratio,
                    output_filters=out_filters,
                )
            )
    return blocks


def _conv_bn(x, filters: int, kernel: int, strides: int, name: str, dtype, relu: bool):
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        name=f"{name}_conv",
        dtype=dtype,
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn", dtype=dtype)(x)
    if relu:
        x = keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6", dtype=dtype)(x)
    return x


def _mbconv(x, args: BlockArgs, name: str, dtype):
    inputs = x
    if args.has_expand:
        x = _conv_bn(x, args.expanded_filters, 1, 1, f"{name}_expand", dtype, relu=True)
    x = keras.layers.DepthwiseConv2D(
        args.kernel_size,
        strides=args.strides,
        padding="same",
        use_bias=False,
        name=f"{name}_dw_conv",
        dtype=dtype,
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn", dtype=dtype)(x)
    x = keras.layers.ReLU(max_value=6.0, name=f"{name}_dw_relu6", dtype=dtype)(x)
    x = _conv_bn(x, args.output_filters, 1, 1, f"{name}_project", dtype, relu=False)
    if args.has_skip:
        x = keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, inputs])
    return x


def build_efficientnet_lite(
    name: str, size: int, width: float, depth: float, dtype: str | None = None
) -> keras.Model:
    """Build the untrained Keras model of a Lite variant: its input ``size`` and its
    ``width`` and ``depth`` multipliers (the registry's entry holds them).

    ``dtype`` is a Keras dtype policy name such as ``"mixed_float16"``; the softmax
    output stays float32 either way.
    """
    inputs = keras.Input(shape=(size, size, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalize", dtype=dtype)(
        inputs
    )
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "stem", dtype, relu=True)
    for index, args in enumerate(block_args(width, depth)):
        x = _mbconv(x, args, f"block{index}", dtype)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head", dtype, relu=True)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    x = keras.layers.Dense(NUM_CLASSES, name="logits", dtype=dtype)(x)
    outputs = keras.layers.Activation("softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def _torch_to_keras_names(num_blocks: int) -> dict[str, str]:
    """Map each torch module prefix to the Keras layer that takes its weights."""
    names = {
        "_conv_stem": "stem_conv",
        "_bn0": "stem_bn",
        "_conv_head": "head_conv",
        "_bn1": "head_bn",
        "_fc": "logits",
    }
    for i in range(num_blocks):
        names.update(
            {
                f"_blocks.{i}._expand_conv": f"block{i}_expand_conv",
                f"_blocks.{i}._bn0": f"block{i}_expand_bn",
                f"_blocks.{i}._depthwise_conv": f"block{i}_dw_conv",
                f"_blocks.{i}._bn1": f"block{i}_dw_bn",
                f"_blocks.{i}._project_conv": f"block{i}_project_conv",
                f"_blocks.{i}._bn2": f"block{i}_project_bn",
            }
        )
    return names


_BN_LEAVES = ("weight", "bias", "running_mean", "running_var")


def _keras_weights(
    layer: keras.layers.Layer, tensors: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Reorder one torch module's tensors into ``layer.get_weights()`` order and layout."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        leaves: tuple[str, ...] = ("weight",)
    elif isinstance(layer, keras.layers.Conv2D):
        leaves = ("weight",)
    elif isinstance(layer, keras.layers.BatchNormalization):
        leaves = _BN_LEAVES
    elif isinstance(layer, keras.layers.Dense):
        leaves = ("weight", "bias")
    else:
        raise TypeError(f"no torch mapping for layer {layer.name} ({type(layer).__name__})")
    if set(tensors) != set(leaves):
        raise ValueError(f"expected tensors {sorted(leaves)}, found {sorted(tensors)}")
    values = [tensors[leaf] for leaf in leaves]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        values[0] = values[0].transpose(2, 3, 0, 1)  # (C,1,kh,kw) -> (kh,kw,C,1)
    elif isinstance(layer, keras.layers.Conv2D):
        values[0] = values[0].transpose(2, 3, 1, 0)  # (O,I,kh,kw) -> (kh,kw,I,O)
    elif isinstance(layer, keras.layers.Dense):
        values[0] = values[0].T  # (out,in) -> (in,out)
    return values


def assign_torch_weights(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy a torch EfficientNet-Lite state dict into ``model``.

    Every tensor (except ``num_batches_tracked``) must land in exactly one Keras
    weight and every Keras weight must be filled; otherwise ``ValueError``.
    """
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        modules.setdefault(prefix, {})[leaf] = value

    weighted = [layer for layer in model.layers if layer.weights]
    num_blocks = sum(1 for layer in weighted if layer.name.endswith("_dw_conv"))
    names = _torch_to_keras_names(num_blocks)
    unknown = sorted(set(modules) - set(names))
    if unknown:
        raise ValueError(f"state dict has modules the model lacks: {unknown[:5]}")
    by_layer = {names[prefix]: prefix for prefix in modules}
    missing = sorted(layer.name for layer in weighted if layer.name not in by_layer)
    if missing:
        raise ValueError(f"state dict lacks weights for layers: {missing[:5]}")

    for layer in weighted:
        prefix = by_layer[layer.name]
        try:
            values = _keras_weights(layer, modules[prefix])
        except ValueError as exc:
            raise ValueError(f"{prefix}: {exc}") from None
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise ValueError(f"{prefix}: shapes {got} do not fit layer {layer.name} {expected}")
        layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
