"""The CIFAR model zoo, plain Keras 3: He et al.'s CIFAR ResNets (ResNet-20 and
ResNet-56), PreAct-ResNet-18 and Wide ResNets (Zagoruyko and Komodakis).

Every model takes raw 0-255 images, normalises them per channel with statistics of
the training images (a built-in ``Normalization`` layer), and ends in a float32
softmax. Only built-in Keras layers: model.keras loads with plain
``keras.models.load_model``, and ONNX export has an operator for each.
"""

from __future__ import annotations

from typing import Annotated

import cifarkit
from cifarkit import Range


def resnet20(input_shape, num_classes, sample_images):
    """He et al. (2016)'s ResNet-20 for CIFAR: 3 stages of 3 residual blocks, 16/32/64 filters.

    A 3x3 convolution, then three stages of two-convolution residual blocks
    (16, 32 and 64 filters; the second and third stages halve the image size),
    global average pooling and a dense softmax. Shortcuts that change shape
    subsample and pad with zero channels (the paper's option A), so they add no
    parameters: 0.27M with 10 classes.
    """
    return _cifar_resnet("resnet20", input_shape, num_classes, sample_images, blocks=3)


def resnet56(input_shape, num_classes, sample_images):
    """He et al. (2016)'s ResNet-56 for CIFAR: 3 stages of 9 residual blocks, 16/32/64 filters.

    ResNet-20's design with 9 blocks a stage (0.85M parameters with 10 classes).
    """
    return _cifar_resnet("resnet56", input_shape, num_classes, sample_images, blocks=9)


def preact_resnet18(input_shape, num_classes, sample_images):
    """PreAct-ResNet-18 (He et al. 2016, identity mappings) as CIFAR code runs it: 11.17M parameters.

    A 3x3 convolution of 64 filters, four stages of two pre-activation blocks
    (BatchNorm and ReLU before each 3x3 convolution; 64, 128, 256 and 512
    filters, halving the image size after the first stage; 1x1 projection
    shortcuts where the shape changes), global average pooling, dense softmax.
    """
    import keras
    from keras import layers

    inputs, x = _stem(input_shape, sample_images, 64, "preact_resnet18")
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in (1, 2):
            x = _preact_block(x, width, 2 if stage > 1 and block == 1 else 1,
                              f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _head(x, num_classes), name="preact_resnet18")


def wide_resnet(input_shape, num_classes, sample_images,
                depth: Annotated[int, Range(10, 100)] = 28,
                width: Annotated[int, Range(1, 20)] = 10,
                dropout: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.0):
    """Wide ResNet WRN-depth-width (Zagoruyko and Komodakis 2016); WRN-28-10 by default.

    Three groups of (depth - 4) / 6 pre-activation blocks of 16 x width,
    32 x width and 64 x width filters (the second and third groups halve the
    image size), dropout between each block's two convolutions, BatchNorm and
    ReLU, global average pooling, dense softmax. WRN-28-10 has 36.5M
    parameters, WRN-16-8 11.0M (10 classes).

    Args:
        depth: layers, 6n + 4 (10, 16, 22, 28, 40, ...).
        width: the widening factor k.
        dropout: dropout rate between a block's two convolutions.
    """
    import keras
    from keras import layers

    if (depth - 4) % 6:
        raise cifarkit.PluginError(f"wide_resnet: depth must be 6n + 4 (10, 16, 22, 28, 40, "
                                   f"...), got {depth}")
    inputs, x = _stem(input_shape, sample_images, 16, "wide_resnet")
    for group, filters in enumerate((16 * width, 32 * width, 64 * width), start=1):
        for block in range(1, (depth - 4) // 6 + 1):
            x = _preact_block(x, filters, 2 if group > 1 and block == 1 else 1,
                              f"group{group}_block{block}", dropout)
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _head(x, num_classes), name=f"wrn_{depth}_{width}")


# -- the parts ------------------------------------------------------------------------
def _stem(input_shape, sample_images, filters: int, name: str):
    """The image input, per-channel normalisation (float32, from training images) and
    the first 3x3 convolution: ``(inputs, x)``."""
    import keras
    import numpy as np
    from keras import layers

    if min(input_shape[:2]) < 8:
        raise cifarkit.PluginError(f"{name}: needs images of at least 8x8 pixels, got "
                                   f"{input_shape[0]}x{input_shape[1]}")
    sample = np.asarray(sample_images, np.float32)[:5000]
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Normalization(axis=-1, mean=sample.mean(axis=(0, 1, 2)),
                             variance=sample.var(axis=(0, 1, 2)) + 1e-3, dtype="float32",
                             name="normalize")(inputs)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name="stem_conv")(x)
    return inputs, x


def _conv(x, filters: int, stride: int, name: str):
    from keras import layers

    return layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                         kernel_initializer="he_normal", name=name)(x)


def _cifar_resnet(name: str, input_shape, num_classes, sample_images, blocks: int):
    import keras
    from keras import layers

    inputs, x = _stem(input_shape, sample_images, 16, name)
    x = layers.Activation("relu", name="stem_relu")(
        layers.BatchNormalization(name="stem_bn")(x))
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, filters, stride, f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _head(x, num_classes), name=name)


def _basic_block(x, filters: int, stride: int, name: str):
    """conv-BN-ReLU-conv-BN plus the shortcut, then ReLU (option A shortcuts)."""
    from keras import layers

    y = _conv(x, filters, stride, f"{name}_conv1")
    y = layers.Activation("relu", name=f"{name}_relu1")(
        layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = layers.BatchNormalization(name=f"{name}_bn2")(_conv(y, filters, 1, f"{name}_conv2"))
    shortcut = x if stride == 1 and x.shape[-1] == filters else \
        _zero_pad_shortcut(x, filters, stride, name)
    return layers.Activation("relu", name=f"{name}_relu2")(
        layers.Add(name=f"{name}_add")([y, shortcut]))


def _zero_pad_shortcut(x, filters: int, stride: int, name: str):
    """Option A: every ``stride``-th pixel, and zero channels up to ``filters`` (built-in
    layers only: a 1x1 max-pool with a stride, and 3-D zero padding of a reshape)."""
    from keras import layers

    x = layers.MaxPooling2D(pool_size=1, strides=stride, name=f"{name}_subsample")(x)
    height, width, channels = x.shape[1:]
    extra = filters - channels
    x = layers.Reshape((height, width, channels, 1), name=f"{name}_as_volume")(x)
    x = layers.ZeroPadding3D(((0, 0), (0, 0), (extra // 2, extra - extra // 2)),
                             name=f"{name}_pad_channels")(x)
    return layers.Reshape((height, width, filters), name=f"{name}_shortcut")(x)


def _preact_block(x, filters: int, stride: int, name: str, dropout: float = 0.0):
    """BN-ReLU-conv, BN-ReLU-(dropout)-conv, plus the shortcut (a 1x1 projection of the
    activated input where the shape changes)."""
    from keras import layers

    act = layers.Activation("relu", name=f"{name}_relu1")(
        layers.BatchNormalization(name=f"{name}_bn1")(x))
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 kernel_initializer="he_normal", name=f"{name}_projection")(act)
    y = _conv(act, filters, stride, f"{name}_conv1")
    y = layers.Activation("relu", name=f"{name}_relu2")(
        layers.BatchNormalization(name=f"{name}_bn2")(y))
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = _conv(y, filters, 1, f"{name}_conv2")
    return layers.Add(name=f"{name}_add")([y, shortcut])


def _head(x, num_classes: int):
    from keras import layers

    return layers.Dense(num_classes, activation="softmax", dtype="float32",
                        name="predictions")(x)


@cifarkit.hookimpl
def register_models(register):
    for factory in (resnet20, resnet56, preact_resnet18, wide_resnet):
        register(factory)
