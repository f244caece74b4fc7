"""Precise BatchNorm: population statistics a short run can trust.

A BatchNormalization layer predicts with moving averages of its batch
statistics, updated once per training step with ``momentum``: after ``s``
steps, ``momentum ** s`` of the average is still its starting value (mean 0,
variance 1). The default recipe's momentum is 0.99: after one epoch of 2,048
images (29 steps) three quarters of its average is still the start, and the
model predicts one class for every test image while its training accuracy
rises.

When that share is above :data:`SETTLED` for any BatchNorm layer, the run
recomputes every layer's statistics after training, before the test split is
touched and model.keras is written: a forward pass in training mode over up to
4,096 training images (without augmentation), with each layer's momentum set so its moving average becomes
the plain mean over the batches (momentum ``1 - 1/k`` at the ``k``-th batch),
as pycls and fvcore's ``precise_bn`` do. Full-length runs have long settled and
are left as they are. ``train.precise_bn`` chooses: "auto" (this rule), "on",
"off".
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The share of a moving average still at its start above which it is recomputed.
SETTLED = 0.01
#: The most training images the statistics are recomputed over, and the smallest batch
#: they are taken in (a forward pass per batch: larger batches cost less per image, and
#: estimate the population's statistics at least as well as training's batches).
MAX_IMAGES = 4096
MIN_BATCH = 256


def batch_norms(model) -> list:
    """Every BatchNormalization layer of ``model``, nested models included."""
    import keras

    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        stack.extend(reversed(getattr(layer, "layers", None) or []))
    return found


def leftover(model, steps: int) -> float:
    """The largest share of a BatchNorm layer's moving average that is still its starting
    value after ``steps`` training steps (0 for a model without BatchNorm)."""
    return max((float(bn.momentum) ** max(steps, 0) for bn in batch_norms(model)), default=0.0)


def wanted(setting: str, model, steps: int) -> bool:
    """Whether the statistics are recomputed: ``setting`` "on", "off", or "auto" (when
    the moving averages have not settled after ``steps`` steps)."""
    if setting == "off" or not batch_norms(model):
        return False
    return setting == "on" or leftover(model, steps) > SETTLED


def header(setting: str, model, steps: int, examples: int, batch_size: int) -> str | None:
    """The run header's line saying what will happen, or None."""
    if not wanted(setting, model, steps):
        return None
    batches = planned_batches(examples, batch_size)
    why = ("train.precise_bn = \"on\"" if setting == "on" else
           f"after {steps} steps {100 * leftover(model, steps):.0f} % of a moving average is "
           "still its start")
    batch_word = "batch" if batches == 1 else "batches"
    return (f"statistics recomputed over {batches} training {batch_word} before the "
            f"test split ({why})")


def batch_size_for(examples: int, batch_size: int) -> int:
    return max(1, min(examples, max(batch_size, MIN_BATCH)))


def planned_batches(examples: int, batch_size: int) -> int:
    size = batch_size_for(examples, batch_size)
    return max(1, min(MAX_IMAGES, examples) // size)


def recompute(model, x: np.ndarray, batch_size: int, seed: int = 0,
              progress=None) -> dict[str, Any]:
    """Set every BatchNorm layer's moving mean and variance to their means over training
    batches of ``x`` (raw images as the model takes them; up to :data:`MAX_IMAGES`, in
    batches of the run's size or :data:`MIN_BATCH`, whichever is larger), in training
    mode. Returns what was done: ``{"batches": N, "images": M, "layers": L}``.
    ``progress(done, total)`` after each batch."""
    layers = batch_norms(model)
    batches = planned_batches(len(x), batch_size)
    batch_size = batch_size_for(len(x), batch_size)
    order = np.random.default_rng(seed).permutation(len(x))[:batches * batch_size]
    saved = [bn.momentum for bn in layers]
    try:
        for k in range(batches):
            for bn in layers:  # the k-th batch gets weight 1/k: a plain mean over batches
                bn.momentum = 1.0 - 1.0 / (k + 1)
            chunk = order[k * batch_size:(k + 1) * batch_size]
            model(np.asarray(x[chunk], np.float32), training=True)
            if progress is not None:
                progress(k + 1, batches)
    finally:
        for bn, momentum in zip(layers, saved):
            bn.momentum = momentum
    return {"batches": batches, "images": int(len(order)), "layers": len(layers)}
