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


@cifarkit.hookimpl
def register_augmentations(register):
    register(random_rotation)
    register(random_translation)
    register(random_flip)
    register(random_affine)
    register(mixup)
    register(cutmix)
