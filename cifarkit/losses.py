"""The recipe's loss (``train.loss``, ``train.label_smoothing``) as a Keras loss object:
backend-neutral Keras code, used by training, evaluation and every backend."""


def make_loss(loss: str, label_smoothing: float = 0.0, reduction: str | None = "sum_over_batch_size"):
    """The Keras loss object for ``train.loss`` (and its label smoothing).

    ``reduction=None`` gives per-example losses (for a hand-written training loop).
    """
    import keras

    if loss == "categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing,
                                                    reduction=reduction)
    return keras.losses.SparseCategoricalCrossentropy(reduction=reduction)
