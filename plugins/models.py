"""Built-in models, plain Keras 3."""

from __future__ import annotations

import random
from typing import Annotated

import cifarkit
from cifarkit.errors import plural
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
            f"seed_cnn: filters has {plural(len(filters), 'block')} but dropout has "
            f"{plural(len(dropout), 'rate')}; "
            "give one dropout rate per block")
    if not filters or input_shape[0] % (2 ** len(filters)) or input_shape[1] % (2 ** len(filters)):
        raise cifarkit.PluginError(
            f"seed_cnn: {plural(len(filters), 'pooling block')} need an image size divisible by "
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


def airbench(input_shape, num_classes, sample_images,
             widths: list[Annotated[int, Range(1, 4096)]] = [64, 256, 256],  # noqa: B006
             whiten_kernel: Annotated[int, Range(1, 8)] = 2,
             whiten_eps: Annotated[float, Range(0, min_inclusive=False)] = 5e-4,
             batchnorm_momentum: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.6,
             output_scale: Annotated[float, Range(0, min_inclusive=False)] = 1 / 9):
    """A fast small conv net after KellerJordan/cifar10-airbench (airbench94).

    Per-channel normalisation and a frozen patch-whitening convolution
    (``whiten_kernel`` x ``whiten_kernel``, 2 x channels x kernel^2 filters,
    initialised from the eigenvectors of the training images' patch
    covariance), GELU, then one block per entry of ``widths``: 3x3 conv,
    2x2 max-pool, BatchNorm, GELU, 3x3 conv, BatchNorm, GELU. Convolutions
    start as partial identities (the first input-many filters pass their
    input through). Global max-pool, a bias-free dense layer scaled by
    ``output_scale``, softmax. Normalisation and whitening are computed from
    the injected ``sample_images`` (training images only). Only built-in
    Keras layers: model.keras loads with plain ``keras.models.load_model``.
    With the defaults and 10 classes it has 1,973,920 parameters.

    Args:
        widths: convolution width of each block (one block per entry).
        whiten_kernel: patch size of the whitening convolution.
        whiten_eps: added to the patch-covariance eigenvalues before scaling.
        batchnorm_momentum: momentum of the BatchNorm moving statistics.
        output_scale: multiplier of the logits.
    """
    import keras
    from keras import layers

    height, width, channels = input_shape
    if not widths:
        raise cifarkit.PluginError("airbench: widths must name at least one block")
    side = min(height, width) - whiten_kernel + 1
    if side < 2 ** len(widths):
        raise cifarkit.PluginError(
            f"airbench: {plural(len(widths), 'pooling block')} need images of at least "
            f"{2 ** len(widths) + whiten_kernel - 1} pixels a side, got {height}x{width}")
    mean, std, kernel = _statistics(sample_images, whiten_kernel, whiten_eps)

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    # Normalisation and whitening run in float32 even under a mixed-precision
    # policy: the whitening filters are differences of large weights (up to
    # 1/sqrt(whiten_eps)), and in bfloat16 the low-variance channels lose up
    # to 13 % of their signal to rounding (measured on 500 CIFAR-10 images).
    x = layers.Normalization(axis=-1, mean=mean, variance=std ** 2, dtype="float32",
                             name="normalize")(inputs)
    whiten = layers.Conv2D(kernel.shape[-1], whiten_kernel, padding="valid", use_bias=False,
                           trainable=False, dtype="float32", name="whiten")
    x = layers.Activation("gelu", name="whiten_gelu")(whiten(x))
    x, convs = _airbench_blocks(x, widths, batchnorm_momentum)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name="logits")(x)
    x = layers.Rescaling(output_scale, name="scale_logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="airbench")
    whiten.set_weights([kernel])
    _dirac_init(convs)
    return model


def _statistics(sample_images, whiten_kernel: int, whiten_eps: float):
    """Per-channel mean and standard deviation of (up to 5,000) training images, and
    the whitening kernel of their normalised patches."""
    import numpy as np

    sample = np.asarray(sample_images, np.float32)[:5000]
    mean = sample.mean(axis=(0, 1, 2))
    std = sample.std(axis=(0, 1, 2)) + 1e-3
    return mean, std, _whitening_kernel((sample - mean) / std, whiten_kernel, whiten_eps)


def _airbench_blocks(x, widths: list[int], momentum: float):
    """One block per width: conv, max-pool, BatchNorm, GELU, conv, BatchNorm, GELU;
    returns the output and the convolutions."""
    from keras import layers

    convs = []
    for i, width_i in enumerate(widths, start=1):
        for j in (1, 2):
            conv = layers.Conv2D(width_i, 3, padding="same", use_bias=False,
                                 name=f"block{i}_conv{j}")
            convs.append(conv)
            x = conv(x)
            if j == 1:
                x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
            x = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, scale=False,
                                          name=f"block{i}_bn{j}")(x)
            x = layers.Activation("gelu", name=f"block{i}_gelu{j}")(x)
    return x, convs


def _dirac_init(convs: list) -> None:
    """Partial identity ("dirac") initialisation, drawn in NumPy (reading the
    convolutions' initial weights back would compute them op by op), seeded with
    the run."""
    import numpy as np

    rng = np.random.default_rng(random.getrandbits(64))
    for conv in convs:
        w = _glorot_uniform(rng, tuple(conv.kernel.shape))
        n = min(w.shape[2], w.shape[3])
        w[:, :, :, :n] = 0
        w[1, 1, np.arange(n), np.arange(n)] = 1
        conv.set_weights([w])


def _glorot_uniform(rng, shape: tuple):
    """Keras's default kernel initialiser, in NumPy: uniform in +/- sqrt(6 / (fan_in +
    fan_out)) for a convolution kernel of ``shape`` (kh, kw, in, out)."""
    import numpy as np

    receptive = int(np.prod(shape[:-2]))
    limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def _whitening_kernel(images, size: int, eps: float):
    """Conv kernel (size, size, c, 2*d) whose filters are the +/- eigenvectors of the
    images' size x size patch covariance, each divided by sqrt(eigenvalue + eps)."""
    import numpy as np

    c = images.shape[-1]
    patches = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * c)  # (kh, kw, c) order
    covariance = np.zeros((patches.shape[1],) * 2, np.float64)
    for start in range(0, len(patches), 1 << 20):
        chunk = patches[start:start + (1 << 20)].astype(np.float64)
        covariance += chunk.T @ chunk
    covariance /= len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    filters = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0) + eps)
    filters = np.concatenate([filters, -filters], axis=1)
    return filters.reshape(size, size, c, -1).astype(np.float32)


@cifarkit.hookimpl
def register_models(register):
    register(seed_cnn)
    register(airbench)
