from typing import Annotated

import cifarkit
from cifarkit import Range


def cutout(size: Annotated[float, Range(0, 1, min_inclusive=False)] = 0.25,
           probability: Annotated[float, Range(0, 1)] = 1.0,
           fill: Annotated[float, Range(0, 255)] = 0.0,
           seed: int | None = None):
    """Cutout: blank out one random patch of each image.

    Args:
        size: the patch's area is size**2 of the image's (0.25: a quarter of each side).
        probability: chance that an image gets a patch.
        fill: pixel value (0-255) of the patch.
    """
    import keras

    area = size * size
    return keras.layers.RandomErasing(factor=(probability, probability), scale=(area, area),
                                      fill_value=fill, value_range=(0, 255), seed=seed)


@cifarkit.hookimpl
def register_augmentations(register):
    register(cutout)
