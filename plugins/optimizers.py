"""Built-in optimizers (keras.optimizers); the learning rate comes from ``train.learning_rate``."""

from __future__ import annotations

from typing import Annotated

import cifarkit
from cifarkit import Range

Unit = Annotated[float, Range(0, 1, max_inclusive=False)]
NonNegative = Annotated[float, Range(0)]


def adam(learning_rate: float, beta_1: Unit = 0.9, beta_2: Unit = 0.999,
         epsilon: NonNegative = 1e-7, amsgrad: bool = False,
         weight_decay: NonNegative | None = None, clipnorm: NonNegative | None = None):
    """Adam (Kingma and Ba), the seed script's optimizer.

    Args:
        beta_1: decay rate of the first-moment estimates.
        beta_2: decay rate of the second-moment estimates.
        epsilon: small constant for numerical stability.
        amsgrad: use the AMSGrad variant.
        weight_decay: decoupled weight decay (unset: none).
        clipnorm: clip each gradient to this norm (unset: no clipping).
    """
    import keras

    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                                 epsilon=epsilon, amsgrad=amsgrad, weight_decay=weight_decay,
                                 clipnorm=clipnorm)


def adamw(learning_rate: float, weight_decay: NonNegative = 0.004, beta_1: Unit = 0.9,
          beta_2: Unit = 0.999, epsilon: NonNegative = 1e-7,
          clipnorm: NonNegative | None = None):
    """AdamW: Adam with decoupled weight decay.

    Args:
        weight_decay: decoupled weight decay.
        beta_1: decay rate of the first-moment estimates.
        beta_2: decay rate of the second-moment estimates.
        epsilon: small constant for numerical stability.
        clipnorm: clip each gradient to this norm (unset: no clipping).
    """
    import keras

    return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay,
                                  beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                                  clipnorm=clipnorm)


def sgd(learning_rate: float, momentum: Unit = 0.0, nesterov: bool = False,
        weight_decay: NonNegative | None = None, clipnorm: NonNegative | None = None,
        beta_lr_scale: Annotated[float, Range(0, min_inclusive=False)] = 1.0):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    Args:
        momentum: momentum factor.
        nesterov: use Nesterov momentum.
        weight_decay: decoupled weight decay (unset: none).
        clipnorm: clip each gradient to this norm (unset: no clipping).
        beta_lr_scale: learning-rate multiplier for the offsets (``beta``) of
            normalisation layers; weight decay is not scaled. airbench uses 64.
    """
    import keras

    kwargs = dict(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                  weight_decay=weight_decay, clipnorm=clipnorm)
    if beta_lr_scale == 1.0:
        return keras.optimizers.SGD(**kwargs)
    from cifarkit_plugins._sgd import BetaScaledSGD

    return BetaScaledSGD(beta_lr_scale=beta_lr_scale, **kwargs)


def rmsprop(learning_rate: float, rho: Unit = 0.9, momentum: Unit = 0.0,
            epsilon: NonNegative = 1e-7, centered: bool = False):
    """RMSprop.

    Args:
        rho: decay rate of the squared-gradient average.
        momentum: momentum factor.
        epsilon: small constant for numerical stability.
        centered: normalise by the gradient's estimated variance.
    """
    import keras

    return keras.optimizers.RMSprop(learning_rate=learning_rate, rho=rho, momentum=momentum,
                                    epsilon=epsilon, centered=centered)


@cifarkit.hookimpl
def register_optimizers(register):
    register(adam)
    register(adamw)
    register(sgd)
    register(rmsprop)
