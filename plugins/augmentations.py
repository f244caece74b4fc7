"""Built-in augmentations: Keras 3 preprocessing layers, applied batch-wise.

Together, ``random_rotation`` (15 degrees), ``random_translation`` (0.1, 0.1)
and ``random_flip`` ("horizontal") reproduce the seed script's
``ImageDataGenerator(rotation_range=15, width_shift_range=0.1,
height_shift_range=0.1, horizontal_flip=True)`` (whose ``fill_mode`` default
is "nearest") without its per-image NumPy/SciPy loop.
"""

from __future__ import annotations

from typing import Annotated, Literal

import cifarkit
from cifarkit import Range

FillMode = Literal["nearest", "reflect", "wrap", "constant"]


def random_rotation(degrees: Annotated[float, Range(0, 180)] = 15.0,
                    fill_mode: FillMode = "nearest",
                    interpolation: Literal["bilinear", "nearest"] = "bilinear",
                    seed: int | None = None):
    """Rotate each image by a random angle in [-degrees, +degrees].

    Args:
        degrees: largest rotation, in degrees (ImageDataGenerator's rotation_range).
        fill_mode: how to fill pixels rotated in from outside the image.
        interpolation: pixel interpolation.
    """
    import keras

    return keras.layers.RandomRotation(factor=degrees / 360.0, fill_mode=fill_mode,
                                       interpolation=interpolation, seed=seed)


def random_translation(width: Annotated[float, Range(0, 1)] = 0.1,
                       height: Annotated[float, Range(0, 1)] = 0.1,
                       fill_mode: FillMode = "nearest",
                       interpolation: Literal["bilinear", "nearest"] = "bilinear",
                       seed: int | None = None):
    """Shift each image by up to a fraction of its width and height.

    Args:
        width: largest horizontal shift as a fraction of the width (width_shift_range).
        height: largest vertical shift as a fraction of the height (height_shift_range).
        fill_mode: how to fill pixels shifted in from outside the image.
        interpolation: pixel interpolation.
    """
    import keras

    return keras.layers.RandomTranslation(height_factor=height, width_factor=width,
                                          fill_mode=fill_mode, interpolation=interpolation,
                                          seed=seed)


def random_flip(mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = "horizontal",
                seed: int | None = None):
    """Flip each image with probability 1/2.

    Args:
        mode: which flips to apply ("horizontal" is ImageDataGenerator's horizontal_flip).
    """
    import keras

    return keras.layers.RandomFlip(mode=mode, seed=seed)


def random_affine(rotation: Annotated[float, Range(0, 180)] = 15.0,
                  width_shift: Annotated[float, Range(0, 1)] = 0.1,
                  height_shift: Annotated[float, Range(0, 1)] = 0.1,
                  horizontal_flip: bool = True,
                  fill_mode: FillMode = "nearest",
                  interpolation: Literal["bilinear", "nearest"] = "bilinear",
                  seed: int | None = None):
    """Rotate, shift and mirror each image in one resampling pass, as ImageDataGenerator does.

    Per image: an angle in [-rotation, +rotation] degrees, shifts in
    [-width_shift, +width_shift] x width and [-height_shift, +height_shift] x
    height, and (with horizontal_flip) a mirror image with probability 1/2,
    composed into one affine transform about the image centre and applied
    with a single interpolation (keras.ops.image.affine_transform). Same
    distribution as random_rotation + random_translation + random_flip, at
    one resampling instead of two.

    Args:
        rotation: largest rotation, in degrees (ImageDataGenerator's rotation_range).
        width_shift: largest horizontal shift, as a fraction of the width.
        height_shift: largest vertical shift, as a fraction of the height.
        horizontal_flip: mirror half of the images left-right.
        fill_mode: how to fill pixels moved in from outside the image.
        interpolation: pixel interpolation.
    """
    from cifarkit_plugins._layers import RandomAffine

    return RandomAffine(rotation, width_shift, height_shift, horizontal_flip, fill_mode,
                        interpolation, seed, name="random_affine")


def mixup(alpha: Annotated[float, Range(0, min_inclusive=False)] = 0.2,
          seed: int | None = None):
    """MixUp (Zhang et al.): each image is blended with another of the batch, and
    its one-hot label with that image's, by the same weight drawn from
    Beta(alpha, alpha). Keras's ``MixUp`` layer. The labels become soft, so the
    loss must be categorical_crossentropy; training accuracy then compares
    against the larger share of each mixed label.

    Args:
        alpha: Beta distribution parameter; larger blends more evenly.
    """
    import keras

    return keras.layers.MixUp(alpha=alpha, seed=seed)


def cutmix(factor: Annotated[float, Range(0, 1, min_inclusive=False)] = 1.0,
           seed: int | None = None):
    """CutMix (Yun et al.): a random box of each image is replaced by the same box
    of another image of the batch, and the one-hot labels are mixed by the area
    each image keeps. Keras's ``CutMix`` layer: the mixing weight comes from
    Beta(a, a) with ``a`` drawn uniformly from (0, factor). The loss must be
    categorical_crossentropy.

    Args:
        factor: upper end of the range the Beta parameter is drawn from.
    """
    import keras

    return keras.layers.CutMix(factor=factor, seed=seed)


Interpolation = Literal["bilinear", "nearest"]


def rand_augment(num_ops: Annotated[int, Range(1, 11)] = 2,
                 factor: Annotated[float, Range(0, 1)] = 0.5,
                 interpolation: Interpolation = "bilinear",
                 seed: int | None = None):
    """RandAugment (Cubuk et al.): each image goes through ``num_ops`` operations
    drawn at random from Keras's 11 (shear, translation, rotation, brightness,
    colour, contrast, sharpness, posterization, solarization, auto-contrast,
    equalization), all at one strength. Keras's ``RandAugment`` layer.

    Args:
        num_ops: operations applied to each image, one after another.
        factor: the operations' strength, from 0 (none) to 1 (strongest).
        interpolation: pixel interpolation for the geometric operations.
    """
    import keras

    return keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=factor,
                                    interpolation=interpolation, seed=seed)


def random_erasing(probability: Annotated[float, Range(0, 1)] = 0.5,
                   min_area: Annotated[float, Range(0, 1, min_inclusive=False)] = 0.02,
                   max_area: Annotated[float, Range(0, 1, min_inclusive=False)] = 0.33,
                   fill_value: Annotated[float, Range(0, 255)] | None = None,
                   seed: int | None = None):
    """Random Erasing (Zhong et al.): a random rectangle of an image is replaced by
    noise or by one value. Keras's ``RandomErasing`` layer: each side of the
    rectangle is the square root of a fraction drawn from [min_area, max_area] of
    the image's side, so the rectangle covers about that share of the image.

    Args:
        probability: the largest chance an image is erased; each image's chance is
            drawn from [0, probability] (Keras's ``factor``).
        min_area: the smallest share of the image a rectangle covers.
        max_area: the largest share of the image a rectangle covers.
        fill_value: the pixel value (0-255) the rectangle is filled with; unset:
            Gaussian noise.
    """
    import keras

    if min_area > max_area:
        raise cifarkit.PluginError(f"random_erasing: min_area {min_area} is larger than "
                                   f"max_area {max_area}")
    return keras.layers.RandomErasing(factor=probability, scale=(min_area, max_area),
                                      fill_value=fill_value, value_range=(0, 255), seed=seed)


def aug_mix(num_chains: Annotated[int, Range(1, 8)] = 3,
            chain_depth: Annotated[int, Range(1, 8)] = 3,
            factor: Annotated[float, Range(0, 1)] = 0.3,
            alpha: Annotated[float, Range(0, min_inclusive=False)] = 1.0,
            all_ops: bool = True,
            interpolation: Interpolation = "bilinear",
            seed: int | None = None):
    """AugMix (Hendrycks et al.): ``num_chains`` chains of ``chain_depth`` random
    operations each are applied to the image, their results blended with Dirichlet
    weights and the blend mixed back with the original by a Beta-drawn weight.
    Keras's ``AugMix`` layer. The labels are not changed.

    Args:
        num_chains: augmentation chains blended per image.
        chain_depth: operations in each chain.
        factor: the operations' strength, from 0 to 1.
        alpha: the Dirichlet and Beta parameter of the blending weights.
        all_ops: also use the colour operations (brightness, colour, contrast,
            sharpness); off: geometric and tonal ones only.
        interpolation: pixel interpolation for the geometric operations.
    """
    import keras

    return keras.layers.AugMix(value_range=(0, 255), num_chains=num_chains,
                               chain_depth=chain_depth, factor=factor, alpha=alpha,
                               all_ops=all_ops, interpolation=interpolation, seed=seed)


def color_jitter(brightness: Annotated[float, Range(0, 1)] = 0.2,
                 contrast: Annotated[float, Range(0, 1)] = 0.2,
                 saturation: Annotated[float, Range(0, 1)] = 0.2,
                 hue: Annotated[float, Range(0, 1)] = 0.05,
                 seed: int | None = None):
    """Colour jitter: each image's brightness, contrast, saturation and hue are
    shifted by random amounts up to the given strengths; 0 leaves that property
    alone. Keras's ``RandomColorJitter`` layer.

    Args:
        brightness: the largest brightness shift, as a fraction of the value range.
        contrast: contrast is scaled by a factor drawn from [1 - contrast, 1 + contrast].
        saturation: how far saturation moves, from 0 (unchanged) to 1 (anywhere from
            grey to fully saturated).
        hue: the largest hue rotation, from 0 (none) to 1 (half the colour circle).
    """
    import keras

    return keras.layers.RandomColorJitter(
        value_range=(0, 255), brightness_factor=(-brightness, brightness) if brightness else None,
        contrast_factor=contrast or None,
        saturation_factor=(0.5 - saturation / 2, 0.5 + saturation / 2) if saturation else None,
        hue_factor=hue or None, seed=seed)


def grayscale(probability: Annotated[float, Range(0, 1)] = 0.2,
              seed: int | None = None):
    """Random grayscale: each image becomes grey (its three channels equal) with
    the given probability. Keras's ``RandomGrayscale`` layer.

    Args:
        probability: the chance an image is made grey (Keras's ``factor``).
    """
    import keras

    return keras.layers.RandomGrayscale(factor=probability, seed=seed)


@cifarkit.hookimpl
def register_augmentations(register):
    register(random_rotation)
    register(random_translation)
    register(random_flip)
    register(random_affine)
    register(mixup)
    register(cutmix)
    for layer in (rand_augment, random_erasing, aug_mix, color_jitter, grayscale):
        register(layer)
