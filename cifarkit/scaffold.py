"""``cifarkit new-plugin``: write a ready-to-install plugin package."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from .errors import CifarkitError

KIND_CHOICES = ("model", "augmentation", "callback", "strategy", "optimizer", "dataset")

PLUGINS = {
    "model": ('''
        from typing import Annotated

        import cifarkit
        from cifarkit import Range


        def {name}(input_shape, num_classes,
               width: Annotated[int, Range(1, 1024)] = 32,
               dropout: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.2):
            """A small CNN: two convolution blocks and a softmax classifier.

            Args:
                width: filters of the first block (the second has twice as many).
                dropout: dropout rate before the classifier.
            """
            import keras
            from keras import layers

            inputs = keras.Input(shape=input_shape)
            x = layers.Rescaling(1 / 255)(inputs)  # models take raw 0-255 pixels
            for filters in (width, 2 * width):
                x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
                x = layers.BatchNormalization()(x)
                x = layers.MaxPooling2D()(x)
            x = layers.GlobalAveragePooling2D()(x)
            x = layers.Dropout(dropout)(x)
            outputs = layers.Dense(num_classes, activation="softmax")(x)
            return keras.Model(inputs, outputs, name="{name}")


        @cifarkit.hookimpl
        def register_models(register):
            register({name})
        ''', '{{"model": {{"plugin": "{name}", "width": 8}}}}'),
    "augmentation": ('''
        from typing import Annotated

        import cifarkit
        from cifarkit import Range


        def {name}(factor: Annotated[float, Range(0, 1)] = 0.2, seed: int | None = None):
            """Shift each image's brightness by up to ``factor`` of the 0-255 range.

            Args:
                factor: largest brightness change, as a fraction of the value range.
            """
            import keras

            return keras.layers.RandomBrightness(factor, value_range=(0, 255), seed=seed)


        @cifarkit.hookimpl
        def register_augmentations(register):
            register({name})
        ''', '{{"augmentation": [{{"plugin": "{name}", "factor": 0.3}}]}}'),
    "callback": ('''
        import json
        from pathlib import Path

        import cifarkit


        def {name}(run_dir: Path, filename: str = "{name}.jsonl"):
            """Append each epoch's metrics as one JSON line to a file in the run directory.

            Args:
                filename: file name inside the run directory.
            """
            import keras

            path = run_dir / filename

            class EpochLogger(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    row = {{"epoch": epoch + 1, **{{k: float(v) for k, v in (logs or {{}}).items()}}}}
                    with path.open("a") as f:
                        f.write(json.dumps(row) + "\\n")

            return EpochLogger()


        @cifarkit.hookimpl
        def register_callbacks(register):
            register({name})
        ''', '{{"callbacks": [{{"plugin": "{name}"}}]}}'),
    "strategy": ('''
        import cifarkit
        from cifarkit import StrategyError


        def {name}(device: str = "/cpu:0"):
            """Train on one named device (a tf.distribute.OneDeviceStrategy).

            Args:
                device: a device name such as "/cpu:0" or "/gpu:1".
            """
            import tensorflow as tf

            wanted = device.lower().replace("/device:", "/").lstrip("/")
            available = [d.name for d in tf.config.list_logical_devices()]
            if not any(a.lower().replace("/device:", "/").lstrip("/") == wanted for a in available):
                raise StrategyError(f"{name}: device {{device!r}} is not present "
                                    f"(available: {{', '.join(available)}})")
            return tf.distribute.OneDeviceStrategy(device)


        @cifarkit.hookimpl
        def register_strategies(register):
            register({name})
        ''', '{{"strategy": {{"plugin": "{name}"}}}}'),
    "optimizer": ('''
        from typing import Annotated

        import cifarkit
        from cifarkit import Range


        def {name}(learning_rate: float,
               momentum: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.9):
            """SGD with Nesterov momentum.

            Args:
                momentum: momentum factor.
            """
            import keras

            return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                        nesterov=True)


        @cifarkit.hookimpl
        def register_optimizers(register):
            register({name})
        ''', '{{"train": {{"optimizer": {{"plugin": "{name}"}}}}}}'),
    "dataset": ('''
        from typing import Annotated

        import numpy as np

        import cifarkit
        from cifarkit import Range
        from cifarkit.data import Splits


        def {name}(train_size: Annotated[int, Range(10)] = 500,
               test_size: Annotated[int, Range(10)] = 100,
               image_size: Annotated[int, Range(8, 512)] = 32,
               seed: int = 0):
            """Synthetic colour squares: each class has its own colour. Replace with your loader.

            Args:
                train_size: number of training images.
                test_size: number of test images.
                image_size: height and width of the images.
                seed: random seed of the generated images.
            """
            rng = np.random.default_rng(seed)
            colours = rng.integers(0, 256, size=(4, 3))

            def make(n):
                labels = rng.integers(0, len(colours), size=n)
                noise = rng.normal(0, 30, size=(n, image_size, image_size, 3))
                images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255)
                return images.astype(np.uint8), labels

            x_train, y_train = make(train_size)
            x_test, y_test = make(test_size)
            return Splits(x_train, y_train, x_test, y_test, ["red", "green", "blue", "grey"])


        @cifarkit.hookimpl
        def register_datasets(register):
            register({name})
        ''', '{{"data": {{"dataset": "{name}", "train_size": 64, "test_size": 32}}}}'),
}

TEST = '''
    import {module}


    def test_{name}_is_registered(cifarkit_registry):
        info = cifarkit_registry.get("{kind}", "{name}")
        assert info.summary
        assert info.factory is {module}.{name}


    def test_{name}_trains_in_a_recipe(make_recipe, run_recipe):
        result = run_recipe(make_recipe({overrides}))
        assert result.summary["status"] == "completed"
        assert (result.run_dir / "model.keras").is_file()
    '''

PYPROJECT = '''
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "{dist}"
    version = "0.1.0"
    description = "A cifarkit {kind} plugin: {name}."
    readme = "README.md"
    requires-python = ">=3.11"
    dependencies = ["cifarkit"]

    # cifarkit finds installed plugins through this entry-point group.
    [project.entry-points.cifarkit]
    {name} = "{module}"

    [tool.setuptools]
    packages = ["{module}"]

    [tool.pytest.ini_options]
    # The plugins under test, for cifarkit's `cifarkit_registry` fixture.
    cifarkit_plugins = ["{module}"]
    '''

README = '''
    # {dist}

    A cifarkit {kind} plugin, `{name}`.

    ```bash
    pip install -e .                    # registers it through the `cifarkit` entry points
    cifarkit list-plugins {name}        # its summary and parameters
    pytest                              # tests with cifarkit's fixtures
    ```

    Use it in a recipe:

    ```toml
    extends = "default"
    {usage}
    ```

    Edit `{module}/__init__.py`; see cifarkit's docs/writing-plugins.md.
    '''

USAGE = {
    "model": '[model]\nplugin = "{name}"',
    "augmentation": '[[augmentation]]\nplugin = "{name}"',
    "callback": '[[callbacks]]\nplugin = "{name}"',
    "strategy": '[strategy]\nplugin = "{name}"',
    "optimizer": '[train]\noptimizer = "{name}"',
    "dataset": '[data]\ndataset = "{name}"',
}


def _render(template: str, **values: str) -> str:
    return textwrap.dedent(template).lstrip("\n").format(**values)


def new_plugin(name: str, kind: str, directory: Path) -> Path:
    """Write ``directory/cifarkit-NAME/`` and return its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,50}", name):
        raise CifarkitError(f"new-plugin: {name!r} is not a usable plugin name "
                            "(lowercase letters, digits and '_', starting with a letter)")
    if kind not in PLUGINS:
        raise CifarkitError(f"new-plugin: unknown kind {kind!r} (allowed: {', '.join(KIND_CHOICES)})")
    module = f"cifarkit_{name}"
    dist = f"cifarkit-{name.replace('_', '-')}"
    root = directory / dist
    if root.exists():
        raise CifarkitError(f"new-plugin: {root} already exists; choose another name or --dir")
    source, overrides = PLUGINS[kind]
    values = {"name": name, "kind": kind, "module": module, "dist": dist}
    files = {
        f"{module}/__init__.py": _render(source, **values),
        "tests/test_plugin.py": _render(TEST, overrides=overrides.format(name=name), **values),
        "pyproject.toml": _render(PYPROJECT, **values),
        "README.md": _render(README, usage=USAGE[kind].format(name=name).replace("\n", "\n    "),
                             **values),
    }
    try:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as exc:
        raise CifarkitError(f"new-plugin: cannot write {root} ({exc.strerror or exc})") from None
    return root
