"""Time every built-in augmentation plugin on its own, per batch of 512 CIFAR-sized images.

    python benchmarks/augmentations.py                       # TensorFlow (a tf.function)
    KERAS_BACKEND=jax python benchmarks/augmentations.py     # JAX (the run's jitted function)

Prints, per plugin with its defaults: the first call (on JAX, the compilation a run pays
once) and the median of 5 later calls, as milliseconds and images/s on this machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

from cifarkit.backends import augment_batch
from cifarkit.core.registry import Registry

BATCH = 512


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def calls(layer, name: str, images: np.ndarray, labels: np.ndarray):
    """``(first call, a later call)``: each returns once the batch is computed."""
    augment_batch([layer], images[:2], labels[:2])  # built, as a run builds it
    if os.environ.get("KERAS_BACKEND") == "jax":
        from cifarkit.backends.jax import Augmenter

        augment = Augmenter([layer], [name])
        steps = iter(range(10**6))
        once = lambda: augment(images, labels, next(steps))[0].block_until_ready()  # noqa: E731
        return once, once
    import tensorflow as tf

    function = tf.function(lambda x, y: augment_batch([layer], x, y))
    x, y = tf.constant(images), tf.constant(labels)
    once = lambda: function(x, y)[0].numpy()  # noqa: E731
    return once, once


def main(names: list[str]) -> None:
    registry = Registry()
    registry.load_entrypoints(only="")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BATCH, 32, 32, 3)).astype(np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    print(f"{'plugin':<20}{'first call s':>14}{'ms per batch':>14}{'images/s':>12}")
    for name in names or sorted(registry.names("augmentation")):
        first, later = calls(registry.get("augmentation", name).factory(seed=1), name,
                             images, labels)
        compile_s = timed(first)
        ms = 1000 * statistics.median(timed(later) for _ in range(5))
        print(f"{name:<20}{compile_s:>14.1f}{ms:>14.0f}{BATCH / ms * 1000:>12,.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
