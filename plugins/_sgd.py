"""Keras SGD with a learning-rate multiplier for normalisation offsets.

Imported only when a recipe asks for it (it imports Keras at module level);
the class is registered with Keras. A model.keras compiled with it loads in
plain Keras with ``keras.models.load_model(path, compile=False)``, or after
``import cifarkit_plugins._sgd``; cifarkit's evaluate and predict do the former.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cifarkit")
class BetaScaledSGD(keras.optimizers.SGD):
    """SGD whose updates of variables named ``beta`` (the offsets of BatchNormalization
    and LayerNormalization) use ``beta_lr_scale`` x the learning rate. Weight decay is
    applied before the update at the unscaled rate, as for every other variable."""

    def __init__(self, beta_lr_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta_lr_scale = float(beta_lr_scale)

    def update_step(self, gradient, variable, learning_rate):
        # Under TensorFlow the optimizer sees the backend variable ("beta:0", or with a path).
        if variable.name.split(":")[0].rsplit("/", 1)[-1] == "beta":
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype),
                                         ops.cast(self.beta_lr_scale, variable.dtype))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "beta_lr_scale": self.beta_lr_scale}
