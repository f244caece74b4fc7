"""The input pipeline on the JAX backend: NumPy batches, augmentation in one jitted call.

No tf.data (a JAX run never imports TensorFlow). The training split is the
same step-addressed stream as the TensorFlow pipeline's
(:mod:`cifarkit.pipeline`): pass ``p`` over the data is a permutation keyed
by ``(seed, p)``, and batch ``g`` is augmented with every augmentation
layer's random state set from ``(its seed, g)``, so a resumed run trains on
the batches an uninterrupted one would.

Each batch is gathered from the uint8 array on the host (a few hundred
kilobytes) and travels as uint8; the recipe's augmentation layers (the same plain Keras
layers as on TensorFlow) run on the device as one ``jax.jit``-compiled
function of ``(images, random states)``. JAX dispatches it asynchronously,
so the next batch is augmented while the current one trains.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from .errors import PluginError, first_line
from .pipeline import SEED_STRIDE, seed_states, steps_per_pass


def labels(y: np.ndarray, num_classes: int, one_hot: bool) -> np.ndarray:
    y = y.astype(np.int32)
    return np.eye(num_classes, dtype=np.float32)[y] if one_hot else y


class Augmenter:
    """The augmentation layers as one jitted function of (images, batch position)."""

    def __init__(self, layers: Sequence[Any], names: Sequence[str]):
        import jax
        import keras

        self.layers, self.names = list(layers), list(names)
        self.states = seed_states(self.layers)
        self.starts = [np.asarray(keras.ops.convert_to_numpy(s.value)).copy() for s in self.states]

        def apply(images, values):
            images = keras.ops.cast(images, "float32")  # uint8 travels: a quarter of the bytes
            with keras.StatelessScope(state_mapping=list(zip(self.states, values))):
                for layer in self.layers:
                    images = layer(images, training=True)
            return images

        self._apply = jax.jit(apply)

    def values(self, step: int) -> list[np.ndarray]:
        """Every layer's random state for batch ``step``: (its seed, step x stride)."""
        return [np.array([start[0], step * SEED_STRIDE % (np.iinfo(start.dtype).max + 1)],
                         dtype=start.dtype) for start in self.starts]  # wraps as on TensorFlow

    def __call__(self, images: np.ndarray, step: int):
        """Batch ``step``'s images (uint8 or float32, 0-255), augmented, as float32."""
        if not self.layers:
            return images.astype(np.float32)
        try:
            return self._apply(images, self.values(step))
        except Exception as exc:  # a layer that cannot be traced by jax.jit
            raise PluginError(f"augmentation {', '.join(self.names)} fails under jax.jit on "
                              f"images of shape {tuple(images.shape[1:])} "
                              f"({first_line(exc)})") from None


class TrainStream:
    """The endless training stream: ``(images, labels)`` batches from step ``first_step`` on."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, augment: Augmenter,
                 seed: int, shuffle: bool, drop_remainder: bool, first_step: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.augment, self.seed, self.shuffle = augment, seed, shuffle
        self.steps = steps_per_pass(len(x), batch_size, drop_remainder)
        self.step = first_step
        self._pass, self._order = -1, np.arange(len(x))

    def _indices(self, step: int) -> np.ndarray:
        p, b = divmod(step, self.steps)
        if p != self._pass:
            self._pass = p
            self._order = (np.random.default_rng([self.seed, p]).permutation(len(self.x))
                           if self.shuffle else np.arange(len(self.x)))
        return self._order[b * self.batch_size:(b + 1) * self.batch_size]

    def batches(self) -> Iterator[tuple[Any, np.ndarray]]:
        """The stream as a generator (the form ``fit`` takes)."""
        while True:
            i = self._indices(self.step)
            images = self.augment(self.x[i], self.step)
            self.step += 1
            yield images, self.y[i]


def make_datasets(prepared, batch_size: int, num_classes: int, one_hot: bool,
                  augment: Sequence[Any], seed: int, shuffle: bool = True,
                  drop_remainder: bool = False, first_step: int = 0,
                  names: Sequence[str] = ()):
    """``(train stream, (x_val, y_val) or None)`` for ``fit`` on JAX."""
    augmenter = Augmenter(augment, names or [type(a).__name__ for a in augment])
    y = labels(prepared.y_train, num_classes, one_hot)
    train = TrainStream(prepared.x_train, y, batch_size, augmenter, seed, shuffle,
                        drop_remainder, first_step).batches()
    val = None if prepared.x_val is None else (
        prepared.x_val.astype(np.float32), labels(prepared.y_val, num_classes, one_hot))
    return train, val
