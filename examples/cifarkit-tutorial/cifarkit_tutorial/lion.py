from typing import Annotated

import cifarkit
from cifarkit import Range


def lion(learning_rate: float,
         beta_1: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.9,
         beta_2: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.99,
         weight_decay: Annotated[float, Range(0)] | None = None):
    """Lion (Chen et al., 2023): sign updates; use a learning rate 3-10x below Adam's.

    Args:
        beta_1: decay of the update's interpolation.
        beta_2: decay of the momentum.
        weight_decay: decoupled weight decay, or leave it unset for none.
    """
    import keras

    return keras.optimizers.Lion(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                                 weight_decay=weight_decay)


@cifarkit.hookimpl
def register_optimizers(register):
    register(lion)
