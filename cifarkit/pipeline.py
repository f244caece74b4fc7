"""The tf.data input pipeline (TensorFlow code lives here and in strategies).

Images stay uint8 until the last moment: batches are cast to float32 (pixel
values 0-255) just before augmentation; the model scales them itself.
Augmentation runs batch-wise, in parallel, on the training split only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def make_datasets(prepared, batch_size: int, num_classes: int, one_hot: bool,
                  augment: Sequence[Any], seed: int, shuffle: bool = True,
                  repeat: bool = False, drop_remainder: bool = False):
    """Return ``(train, validation or None, test)`` tf.data datasets.

    ``drop_remainder`` drops the last partial training batch (needed with
    several replicas: Keras fails on batches that do not split evenly).
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE

    def labels(y):
        y = tf.cast(y, tf.int32)
        return tf.one_hot(y, num_classes) if one_hot else y

    def to_float(x, y):
        return tf.cast(x, tf.float32), labels(y)

    def build(x: np.ndarray, y: np.ndarray, train: bool):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if train and shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        if train and repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size, drop_remainder=train and drop_remainder)
        ds = ds.map(to_float, num_parallel_calls=autotune)
        if train and augment:
            def apply(images, y):
                for layer in augment:
                    images = layer(images, training=True)
                return images, y

            ds = ds.map(apply, num_parallel_calls=autotune)
        return ds.prefetch(autotune)

    train = build(prepared.x_train, prepared.y_train, True)
    val = None if prepared.x_val is None else build(prepared.x_val, prepared.y_val, False)
    test = build(prepared.x_test, prepared.y_test, False)
    return train, val, test
