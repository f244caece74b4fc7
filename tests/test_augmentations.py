"""Every built-in augmentation plugin on both backends, with its defaults: a batch keeps
its shape, its pixels stay finite and in range, and labels (mixed by the layers that mix
them) stay distributions. An augmentation plugin added to plugins/ joins without anyone
editing this file (the shipped recipes' augmentations also train in tests/test_matrix.py)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, builtin_registry


def _augmentations():
    return sorted(builtin_registry().names("augmentation"))


def _batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    return images, labels


def _check(images, labels):
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.float32)
    assert images.shape == (8, 32, 32, 3) and labels.shape == (8, 10)
    assert np.isfinite(images).all() and images.min() >= -1e-3 and images.max() <= 255 + 1e-3
    np.testing.assert_allclose(labels.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("name", _augmentations())
def test_every_augmentation_on_tensorflow(name, registry):
    from cifarkit.backends import augment_batch

    layer = registry.get("augmentation", name).factory(seed=1)
    _check(*augment_batch([layer], *_batch()))


@pytest.mark.slow  # a JAX process
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="the jax extra")
def test_every_augmentation_traces_under_jit_on_jax(tmp_path):
    """Each layer traced as the run's jitted step traces it, with its step's seeds (what
    fails under jax.jit fails there); its values from running it, not from XLA's
    compilation of the trace (tens of seconds for rand_augment on a CPU;
    docs/recipes.md), which the matrix's runs pay for the shipped recipes' layers."""
    code = f"""
import json
import jax
import numpy as np
from cifarkit.core.registry import Registry
from cifarkit.backends import augment_batch
from cifarkit.backends.jax import Augmenter
registry = Registry()
registry.load_entrypoints(only="")
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
out = {{}}
for name in {_augmentations()!r}:
    layer = registry.get("augmentation", name).factory(seed=1)
    x, y = augment_batch([layer], images, labels)  # built, as the run's check builds it
    augmenter = Augmenter([layer], [name])
    jax.jit(augmenter.apply).lower(images, labels, augmenter.values(3))
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    out[name] = [list(x.shape), list(y.shape), bool(np.isfinite(x).all()), float(x.min()),
                 float(x.max()), float(np.abs(y.sum(axis=1) - 1).max())]
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600,
                          env={"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(results) == _augmentations()
    for name, (x_shape, y_shape, finite, low, high, off) in results.items():
        assert x_shape == [8, 32, 32, 3] and y_shape == [8, 10] and finite, name
        assert low >= -1e-3 and high <= 255 + 1e-3 and off < 1e-5, name
