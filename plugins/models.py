"""Built-in models, plain Keras 3."""

from __future__ import annotations

from typing import Annotated

import cifarkit
from cifarkit import Range


def seed_cnn(input_shape, num_classes,
             filters: list[Annotated[int, Range(1, 4096)]] = [64, 128, 256],  # noqa: B006
             dropout: list[Annotated[float, Range(0, 1, max_inclusive=False)]] = [0.2, 0.3, 0.4],  # noqa: B006
             dense_units: Annotated[int, Range(1, 65536)] = 256,
             dense_dropout: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.5):
    """The seed script's VGG-style CNN: conv pairs with BatchNorm, max-pooling, dropout.

    Each block is two 3x3 ReLU convolutions (each followed by BatchNorm), a
    2x2 max-pool and dropout; then Dense + BatchNorm + dropout + softmax.
    Pixels are scaled from 0-255 to 0-1 inside the model. With the defaults
    and 10 classes it has 2,201,418 parameters.

    Args:
        filters: convolution width of each block (one block per entry).
        dropout: dropout rate after each block (same length as filters).
        dense_units: width of the dense layer.
        dense_dropout: dropout rate after the dense layer.
    """
    import keras
    from keras import layers

    if len(filters) != len(dropout):
        raise cifarkit.PluginError(
            f"seed_cnn: filters has {len(filters)} blocks but dropout has {len(dropout)} rates; "
            "give one dropout rate per block")
    if not filters or input_shape[0] % (2 ** len(filters)) or input_shape[1] % (2 ** len(filters)):
        raise cifarkit.PluginError(
            f"seed_cnn: {len(filters)} pooling blocks need an image size divisible by "
            f"{2 ** len(filters)}, got {input_shape[0]}x{input_shape[1]}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    for i, (width, rate) in enumerate(zip(filters, dropout), start=1):
        for j in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{i}_conv{j}")(x)
            x = layers.BatchNormalization(name=f"block{i}_bn{j}")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = layers.Dropout(rate, name=f"block{i}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.BatchNormalization(name="dense_bn")(x)
    x = layers.Dropout(dense_dropout, name="dense_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


@cifarkit.hookimpl
def register_models(register):
    register(seed_cnn)
