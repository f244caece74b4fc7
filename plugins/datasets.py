"""Built-in datasets: CIFAR-10 and CIFAR-100 (local copy or keras.datasets), image folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import cifarkit
from cifarkit import Range
from cifarkit.backends import import_keras
from cifarkit.data import (Splits, cifar_classes, keras_download, read_cifar10, read_cifar100,
                           read_image_folder)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


def _keras_cache(folder: str) -> Path | None:
    """The copy keras.datasets left in its cache (``$KERAS_HOME`` or ~/.keras), if any."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    for cached in (home / "datasets" / f"{folder}-target" / folder, home / "datasets" / folder):
        if (cached / ("batches.meta" if "10-" in folder else "meta")).is_file():
            return cached
    return None


def cifar10(path: Path | None = None) -> Splits:
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes.

    Args:
        path: a local ``cifar-10-batches-py`` directory (or its parent) or the
            official ``cifar-10-python.tar.gz``, read in place. Unset: the
            keras.datasets cache, downloading into it if needed.
    """
    if path is None:
        cached = _keras_cache("cifar-10-batches-py")
        if cached is not None:
            return read_cifar10(cached)

        def load():
            keras = import_keras()  # on the run's backend (selected before the data loads)
            return keras.datasets.cifar10.load_data()

        return keras_download("cifar10", load, CIFAR10_CLASSES)
    return read_cifar10(path)


def cifar100(path: Path | None = None, label_mode: Literal["fine", "coarse"] = "fine") -> Splits:
    """CIFAR-100: 50,000 training and 10,000 test images, 32x32 RGB, 100 (or 20) classes.

    Args:
        path: a local ``cifar-100-python`` directory (or its parent) or the
            official ``cifar-100-python.tar.gz``, read in place. Unset: the
            keras.datasets cache, downloading into it if needed.
        label_mode: "fine" (100 classes) or "coarse" (20 superclasses).
    """
    if path is None:
        cached = _keras_cache("cifar-100-python")
        if cached is not None:
            return read_cifar100(cached, label_mode)

        def load():
            keras = import_keras()  # on the run's backend (selected before the data loads)
            return keras.datasets.cifar100.load_data(label_mode=label_mode)

        splits = keras_download("cifar100", load, [f"class_{i}" for i in range(100 if label_mode == "fine" else 20)])
        cached = _keras_cache("cifar-100-python")  # the download's meta file has the names
        return read_cifar100(cached, label_mode) if cached is not None else splits
    return read_cifar100(path, label_mode)


def image_folder(path: Path, image_size: Annotated[int, Range(8, 1024)] = 32) -> Splits:
    """Your own images: ``path/train/<class>/*`` and ``path/test/<class>/*``, JPEG or PNG.

    Class names are the folder names, sorted; images of any size are
    converted to RGB and resized to ``image_size`` x ``image_size``.

    Args:
        path: the folder holding ``train/`` and ``test/``.
        image_size: height and width the images are resized to.
    """
    return read_image_folder(path, image_size)


# ``describe``: the image shape and class names a dataset gives, from its metadata alone
# (``cifarkit show`` builds the model from them without reading the images).
def _describe_cifar10(path: Path | None = None):
    cached = path if path is not None else _keras_cache("cifar-10-batches-py")
    return (32, 32, 3), (CIFAR10_CLASSES if cached is None else cifar_classes(cached))


def _describe_cifar100(path: Path | None = None, label_mode: str = "fine"):
    cached = path if path is not None else _keras_cache("cifar-100-python")
    count = 100 if label_mode == "fine" else 20
    return (32, 32, 3), ([f"class_{i}" for i in range(count)] if cached is None
                         else cifar_classes(cached, label_mode))


cifar10.describe = _describe_cifar10  # type: ignore[attr-defined]
cifar100.describe = _describe_cifar100  # type: ignore[attr-defined]


@cifarkit.hookimpl
def register_datasets(register):
    register(cifar10)
    register(cifar100)
    register(image_folder)
