from typing import Annotated

import cifarkit
from cifarkit import Range


def small_resnet(input_shape, num_classes,
                 widths: list[Annotated[int, Range(1, 1024)]] = [16, 32, 64],  # noqa: B006
                 blocks: Annotated[int, Range(1, 8)] = 1):
    """A small ResNet: residual blocks of two 3x3 convolutions, one stage per width.

    Args:
        widths: filters of each stage; every stage after the first halves the image size.
        blocks: residual blocks per stage.
    """
    import keras
    from keras import layers

    def conv_bn(x, width, stride=1, kernel=3):
        x = layers.Conv2D(width, kernel, strides=stride, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    def residual(x, width, stride):
        y = layers.Activation("relu")(conv_bn(x, width, stride))
        y = conv_bn(y, width)
        if stride != 1 or x.shape[-1] != width:
            x = conv_bn(x, width, stride, kernel=1)
        return layers.Activation("relu")(layers.add([x, y]))

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1 / 255)(inputs)          # the model takes raw 0-255 pixels
    x = layers.Activation("relu")(conv_bn(x, widths[0]))
    for stage, width in enumerate(widths):
        for block in range(blocks):
            x = residual(x, width, stride=2 if stage > 0 and block == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


@cifarkit.hookimpl
def register_models(register):
    register(small_resnet)
