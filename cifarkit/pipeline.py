"""The tf.data input pipeline of the TensorFlow backend (TensorFlow code lives
here and in strategies; the JAX backend's pipeline is :mod:`cifarkit.jax_pipeline`).

Images stay uint8 until the last moment: batches are cast to float32 (pixel
values 0-255) just before augmentation; the model scales them itself.
Augmentation runs batch-wise on the training split only.

The training split is one stream of batches addressed by position: pass
``p`` over the data is a stateless permutation keyed by ``(seed, p)``, and
batch ``g`` of the stream is augmented with every augmentation layer's
random state set to a value derived from ``(its seed, g)``. So what step
``g`` trains on does not depend on how many batches this process has seen
before: a resumed run (``first_step`` > 0) trains on exactly the batches the
uninterrupted run would have, and two runs with one seed see the same data.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: Seed-generator counter values reserved for one batch (a layer may draw several seeds).
SEED_STRIDE = 1024


def seed_states(layers: Sequence[Any]) -> list:
    """The random-state variables (Keras ``SeedGenerator`` states) of ``layers``."""
    states: dict[int, Any] = {}
    for layer in layers:
        for v in getattr(layer, "variables", []):
            if v.path.split("/")[-1] == "seed_generator_state":
                states.setdefault(id(v), v)
    return list(states.values())


def make_datasets(prepared, batch_size: int, num_classes: int, one_hot: bool,
                  augment: Sequence[Any], seed: int, shuffle: bool = True,
                  drop_remainder: bool = False, first_step: int = 0, names=()):
    """Return ``(train, validation or None)`` tf.data datasets (on the JAX backend:
    :func:`cifarkit.jax_pipeline.make_datasets`'s stream and arrays). The test
    split is not here: it is predicted once, from its arrays, after training.

    ``train`` is endless: fit it with ``steps_per_epoch`` (by default one pass
    over the data). ``first_step`` is the stream position to start at (the
    number of training steps already done). ``drop_remainder`` drops the last
    partial batch of each pass (needed with several replicas: Keras fails on
    batches that do not split evenly).
    """
    from . import framework

    if framework.active() == "jax":
        from .jax_pipeline import make_datasets as jax_datasets

        return jax_datasets(prepared, batch_size, num_classes, one_hot, augment, seed, shuffle,
                            drop_remainder, first_step, names)
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE

    def labels(y):
        y = tf.cast(y, tf.int32)
        return tf.one_hot(y, num_classes) if one_hot else y

    def to_float(x, y):
        return tf.cast(x, tf.float32), labels(y)

    def evaluation(x: np.ndarray, y: np.ndarray):
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        return ds.map(to_float, num_parallel_calls=autotune).prefetch(autotune)

    x, y = prepared.x_train, prepared.y_train
    n = len(x)
    images, targets = tf.convert_to_tensor(x), tf.convert_to_tensor(y)

    def one_pass(p):
        """Pass ``p`` over the data as batches of indices: a stateless permutation seeded by
        ``(seed, p)``, whatever the global seed and however far this process has got."""
        indices = tf.data.Dataset.range(n).batch(batch_size, drop_remainder=drop_remainder)
        if not shuffle:
            return indices
        key = tf.stack([tf.constant(seed, tf.int64), p])
        return indices.map(lambda i: tf.random.experimental.index_shuffle(i, key, n - 1))

    def fetch(g, i):
        return (g, *to_float(tf.gather(images, i), tf.gather(targets, i)))

    train = (tf.data.Dataset.range(2**62).flat_map(one_pass)
             .skip(first_step).enumerate(start=first_step)
             .map(fetch, num_parallel_calls=autotune))
    states = seed_states(augment)
    initial = [np.asarray(s.numpy()).copy() for s in states]

    def apply(g, images, y):
        for state, start in zip(states, initial):  # this batch's random state: (seed, g)
            counter = tf.cast(g, state.dtype) * SEED_STRIDE
            state.assign(tf.stack([tf.constant(start[0], state.dtype), counter]))
        for layer in augment:
            images = layer(images, training=True)
        return images, y

    # Sequential when layers share random state: each batch sets it, then uses it.
    train = train.map(apply, num_parallel_calls=None if states else autotune)
    val = None if prepared.x_val is None else evaluation(prepared.x_val, prepared.y_val)
    return train.prefetch(autotune), val


def steps_per_pass(n: int, batch_size: int, drop_remainder: bool) -> int:
    """Batches in one pass over ``n`` examples."""
    return n // batch_size if drop_remainder else -(-n // batch_size)
