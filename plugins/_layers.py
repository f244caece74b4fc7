"""Keras layers behind the built-in augmentation plugins.

Imported only when a recipe asks for them (this module imports Keras at its
top level; ``plugins/augmentations.py`` must not).
"""

from __future__ import annotations

import math

import keras
from keras import ops


class RandomAffine(keras.layers.Layer):
    """Rotate, shift and mirror each image in one resampling pass.

    Args:
        rotation: largest rotation, in degrees.
        width_shift: largest horizontal shift, as a fraction of the width.
        height_shift: largest vertical shift, as a fraction of the height.
        horizontal_flip: mirror half of the images left-right.
        fill_mode: how to fill pixels moved in from outside the image.
        interpolation: pixel interpolation.
        seed: seed of the layer's random stream.

    Example:
        >>> layer = RandomAffine(rotation=15.0, width_shift=0.1, height_shift=0.1)
        >>> layer(images, training=True).shape == images.shape
    """

    def __init__(self, rotation: float = 15.0, width_shift: float = 0.1,
                 height_shift: float = 0.1, horizontal_flip: bool = True,
                 fill_mode: str = "nearest", interpolation: str = "bilinear",
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.width_shift, self.height_shift = rotation, width_shift, height_shift
        self.horizontal_flip, self.fill_mode, self.interpolation = (
            horizontal_flip, fill_mode, interpolation)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        n = shape[0]
        height, width = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")

        def uniform(low, high):
            return keras.random.uniform((n,), low, high, seed=self.seed_generator)

        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
        dx = uniform(-self.width_shift, self.width_shift) * width
        dy = uniform(-self.height_shift, self.height_shift) * height
        mirror = (ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.horizontal_flip
                  else ops.ones((n,)))
        cos, sin = ops.cos(angle), ops.sin(angle)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        # output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)
        a0, a1, b0, b1 = cos * mirror, -sin, sin * mirror, cos
        a2 = cx - a0 * cx - a1 * cy - dx
        b2 = cy - b0 * cx - b1 * cy - dy
        zeros = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(images, transform, interpolation=self.interpolation,
                                          fill_mode=self.fill_mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "width_shift": self.width_shift,
                "height_shift": self.height_shift, "horizontal_flip": self.horizontal_flip,
                "fill_mode": self.fill_mode, "interpolation": self.interpolation, "seed": self.seed}
