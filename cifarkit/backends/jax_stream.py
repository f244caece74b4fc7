"""The JAX backend's training stream on the host: the batches of each pass (a
permutation keyed by the seed and the pass), padded to whole batches with zero-weight
examples, and the augmentation layers applied to a batch with its step's seeds."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from cifarkit.errors import PluginError, first_line
from cifarkit.backends import (SEED_STRIDE, augment_batch, seed_states,
                               steps_per_pass)


class Augmenter:
    """The augmentation layers as one jitted function of (images, batch position)."""

    def __init__(self, layers: Sequence[Any], names: Sequence[str]):
        import jax
        import keras

        self.layers, self.names = list(layers), list(names)
        self.states = seed_states(self.layers)
        self.starts = [np.asarray(keras.ops.convert_to_numpy(s.value)).copy() for s in self.states]

        def apply(images, labels, values):
            images = keras.ops.cast(images, "float32")  # uint8 travels: a quarter of the bytes
            with keras.StatelessScope(state_mapping=list(zip(self.states, values))):
                return augment_batch(self.layers, images, labels)

        self.apply = apply
        self._apply = jax.jit(apply)

    def traced(self, images, labels, step):
        """As :meth:`__call__`, inside a compiled program: ``step`` is a traced int32,
        and the seeds wrap exactly as :meth:`values` wraps them."""
        import jax.numpy as jnp

        if not self.layers:
            return images.astype(jnp.float32), labels
        stride = step.astype(jnp.uint32) * jnp.uint32(SEED_STRIDE % 2**32)
        values = []
        for start in self.starts:
            dtype = np.dtype(start.dtype)
            offset = stride if dtype.itemsize == 4 and dtype.kind == "u" else (
                stride & jnp.uint32(np.iinfo(dtype).max))  # signed: modulo its max + 1
            values.append(jnp.stack([jnp.asarray(start[0], dtype), offset.astype(dtype)]))
        return self.apply(images, labels, values)

    def values(self, step: int) -> list[np.ndarray]:
        """Every layer's random state for batch ``step``: (its seed, step x stride)."""
        return [np.array([start[0], step * SEED_STRIDE % (np.iinfo(start.dtype).max + 1)],
                         dtype=start.dtype) for start in self.starts]  # wraps as on TensorFlow

    def __call__(self, images: np.ndarray, labels: np.ndarray, step: int):
        """Batch ``step``'s images (uint8 or float32, 0-255) and labels, augmented: images
        as float32 (labels change only where a layer mixes them)."""
        if not self.layers:
            return images.astype(np.float32), labels
        try:
            return self._apply(images, labels, self.values(step))
        except Exception as exc:  # a layer that cannot be traced by jax.jit
            raise PluginError(f"augmentation {', '.join(self.names)} fails under jax.jit on "
                              f"images of shape {tuple(images.shape[1:])} "
                              f"({first_line(exc)})") from None


class TrainStream:
    """The endless training stream: ``(images, labels)`` batches from step ``first_step`` on."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, augment: Augmenter,
                 seed: int, shuffle: bool, drop_remainder: bool, first_step: int,
                 shard: tuple[int, int] = (0, 1)):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shard = shard  # (this process, processes): each feeds its slice of a batch
        self.augment, self.seed, self.shuffle = augment, seed, shuffle
        self.steps = steps_per_pass(len(x), batch_size, drop_remainder)
        self.step = first_step
        self._pass, self._order = -1, np.arange(len(x))

    def placeholder(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blank batches of the stream's shapes, for a ``fit`` whose steps read the data
        themselves (Keras reads one to learn the shapes)."""
        n = min(self.batch_size, len(self.x))
        images = np.zeros((n, *self.x.shape[1:]), np.float32)
        while True:
            yield images, self.y[:n]

    def indices(self, step: int) -> np.ndarray:
        """The training-split indices of batch ``step``."""
        p, b = divmod(step, self.steps)
        if p != self._pass:
            self._pass = p
            self._order = (np.random.default_rng([self.seed, p]).permutation(len(self.x))
                           if self.shuffle else np.arange(len(self.x)))
        return self._order[b * self.batch_size:(b + 1) * self.batch_size]

    def padded(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``step`` as ``batch_size`` indices and sample weights. A pass's last
        partial batch is filled up with examples from the start of the pass's order,
        weighted 0, and its own examples weighted ``batch_size / their number``: the
        weighted loss (summed, then divided by the batch size) is then the mean over
        the partial batch alone, as is every weighted metric. (Batch-statistic layers
        such as BatchNorm do see the filling examples.)"""
        i = self.indices(step)
        weights = np.ones(self.batch_size, np.float32)
        fill = self.batch_size - len(i)
        if fill:
            weights[:len(i)] = self.batch_size / len(i)
            weights[len(i):] = 0.0
            i = np.concatenate([i, np.resize(self._order, fill)])
        return i, weights

    def batches(self) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """The stream as a generator of ``(images, labels, sample weights)`` (the form
        ``fit`` takes), every batch whole (:meth:`padded`)."""
        index, count = self.shard
        while True:
            i, weights = self.padded(self.step)
            # the whole batch, as one process would
            images, labels = self.augment(self.x[i], self.y[i], self.step)
            self.step += 1
            if count > 1:  # several processes: an equal slice of the batch each
                share = len(i) // count
                part = slice(index * share, (index + 1) * share)
                images, labels, weights = images[part], labels[part], weights[part]
            yield images, labels, weights
