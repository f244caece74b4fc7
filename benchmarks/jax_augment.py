"""Time cifarkit's augmentation on the JAX backend alone (its jitted function, per batch).

    KERAS_BACKEND=jax python benchmarks/jax_augment.py

Prints milliseconds per batch (median of 20 after one compiling call) for the
default recipe's augmentation (random_affine, batch 64) and the fast
recipe's (random_flip + random_translation, batch 1024), on JAX's default
device.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

from cifarkit.backends.jax import Augmenter  # noqa: E402
from cifarkit_plugins import augmentations as aug  # noqa: E402


def per_batch_ms(layers, names, batch: int) -> float:
    images = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    for layer in layers:
        layer(images[:2].astype(np.float32), training=True)
    augment = Augmenter(layers, names)
    labels = np.zeros((batch, 10), np.float32)
    augment(images, labels, 0)[0].block_until_ready()  # compiles
    times = []
    for step in range(1, 21):
        start = time.perf_counter()
        augment(images, labels, step)[0].block_until_ready()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


if __name__ == "__main__":
    import jax

    print(f"device: {jax.devices()[0]}")
    print(f"random_affine, batch 64: {per_batch_ms([aug.random_affine(seed=1)], ['random_affine'], 64):.1f} ms")
    fast = [aug.random_flip(seed=1), aug.random_translation(0.0625, 0.0625, "reflect", "nearest", seed=2)]
    print(f"random_flip + random_translation, batch 1024: "
          f"{per_batch_ms(fast, ['random_flip', 'random_translation'], 1024):.1f} ms")
