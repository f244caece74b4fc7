"""Each built-in plugin builds the right Keras / tf.distribute object."""

from pathlib import Path

import re

import numpy as np
import pytest

from cifarkit.errors import PluginError, StrategyError
from cifarkit.core.recipe import PluginCall

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def build(registry, kind, name, **params):
    """Validate params the way a recipe would, then call the factory."""
    info = registry.get(kind, name)
    full = {p.name: p.default for p in info.params if not p.required}
    full.update(params)
    injected = {"input_shape": (32, 32, 3), "num_classes": 10, "seed": 1,
                "run_dir": Path("/tmp/run"), "learning_rate": 0.01}
    return registry.call(PluginCall(kind, name, full, kind), **injected)


def test_seed_cnn_matches_the_seed_script(registry):
    model = build(registry, "model", "seed_cnn")
    assert model.count_params() == 2_201_418
    assert [type(layer).__name__ for layer in model.layers[:4]] == [
        "InputLayer", "Rescaling", "Conv2D", "BatchNormalization"]
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 3
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [
        0.2, 0.3, 0.4, 0.5]
    out = model(np.full((2, 32, 32, 3), 255.0, np.float32))
    assert out.shape == (2, 10)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)


def test_seed_cnn_class_count_follows_the_dataset(registry):
    info = registry.get("model", "seed_cnn")
    params = {p.name: p.default for p in info.params}
    model = info.factory(input_shape=(32, 32, 3), num_classes=100, **params)
    assert model.output_shape == (None, 100)
    assert model.count_params() == 2_201_418 + 90 * 257


def test_seed_cnn_rejects_mismatched_blocks(registry):
    with pytest.raises(PluginError, match="one dropout rate per block"):
        build(registry, "model", "seed_cnn", filters=[8, 8], dropout=[0.1])


def _images(n=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("name, params", [
    ("random_rotation", {"degrees": 15.0}),
    ("random_translation", {"width": 0.1, "height": 0.1}),
    ("random_flip", {"mode": "horizontal"}),
    ("random_affine", {}),
])
def test_augmentations_change_batches_and_keep_shape_and_range(registry, name, params):
    layer = build(registry, "augmentation", name, **params)
    assert isinstance(layer, keras.layers.Layer)
    x = _images()
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    assert y.shape == x.shape
    assert y.min() >= 0.0 and y.max() <= 255.0 + 1e-3
    assert not np.allclose(x, y)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def _assert_mirrors_or_keeps_each_image(layer):
    x = _images(32)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    flipped = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(32)]
    kept = [np.array_equal(y[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_random_flip_is_a_mirror_image(registry):
    _assert_mirrors_or_keeps_each_image(
        build(registry, "augmentation", "random_flip", mode="horizontal"))


def test_random_affine_without_rotation_or_shift_is_a_mirror_image(registry):
    _assert_mirrors_or_keeps_each_image(
        build(registry, "augmentation", "random_affine", rotation=0.0, width_shift=0.0,
              height_shift=0.0))


def test_random_affine_shifts_whole_pixels_within_range(registry):
    layer = build(registry, "augmentation", "random_affine", rotation=0.0, width_shift=2 / 32,
                  height_shift=0.0, horizontal_flip=False, interpolation="nearest")
    x = _images(64)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    shifts = []
    for i in range(64):  # compare away from the edges that the fill mode changes
        (match,) = [s for s in range(-3, 4) if np.array_equal(np.roll(x[i], s, axis=1)[:, 3:-3],
                                                              y[i][:, 3:-3])]
        shifts.append(match)
    assert set(shifts) == {-2, -1, 0, 1, 2}


def test_random_affine_rotates(registry):
    layer = build(registry, "augmentation", "random_affine", rotation=90.0, width_shift=0.0,
                  height_shift=0.0, horizontal_flip=False)
    x = np.zeros((16, 32, 32, 3), np.float32)
    x[:, 2:6, 14:18] = 255.0  # a square near the top edge
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    rows = [np.argwhere(y[i, :, :, 0] > 127)[:, 0].mean() for i in range(16)]
    assert max(rows) - min(rows) > 8  # the square moved around the centre, by various angles


def test_rotation_factor_is_degrees_over_360(registry):
    layer = build(registry, "augmentation", "random_rotation", degrees=15.0)
    assert tuple(layer.get_config()["factor"]) == pytest.approx((-15 / 360, 15 / 360))
    assert layer.fill_mode == "nearest"


def test_strategies_on_this_machine(registry):
    one = build(registry, "strategy", "one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and one.num_replicas_in_sync == 1
    mirrored = build(registry, "strategy", "mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == max(1, len(tf.config.list_logical_devices("GPU")))


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="machine has a GPU")
@pytest.mark.parametrize("name, params, fragment", [
    ("one_device", {"device": "/gpu:0"}, "device '/gpu:0' is not present on this machine (available: /device:CPU:0"),
    ("mirrored", {"devices": ["/cpu:0", "/gpu:3"]}, "device '/gpu:3' is not present"),
    ("one_device", {"device": "gpu0"}, "'gpu0' is not a device name"),
])
def test_missing_devices_are_strategy_errors(registry, name, params, fragment):
    with pytest.raises(StrategyError) as exc_info:
        build(registry, "strategy", name, **params)
    assert fragment in str(exc_info.value)


def test_callbacks_build_configured_keras_callbacks(registry, tmp_path):
    es = build(registry, "callback", "early_stopping", patience=3, restore_best_weights=True)
    assert isinstance(es, keras.callbacks.EarlyStopping)
    assert (es.monitor, es.patience, es.restore_best_weights) == ("val_loss", 3, True)
    ckpt = build(registry, "callback", "model_checkpoint", filename="ck/e{epoch:02d}.keras")
    assert isinstance(ckpt, keras.callbacks.ModelCheckpoint)
    assert ckpt.filepath == "/tmp/run/ck/e{epoch:02d}.keras"
    log = build(registry, "callback", "csv_logger", separator=";")
    assert isinstance(log, keras.callbacks.CSVLogger) and log.sep == ";"
    assert log.filename == "/tmp/run/training_log.csv"
    lr = build(registry, "callback", "reduce_lr_on_plateau", factor=0.5, patience=2)
    assert isinstance(lr, keras.callbacks.ReduceLROnPlateau) and (lr.factor, lr.patience) == (0.5, 2)
    tb = build(registry, "callback", "tensorboard")
    assert isinstance(tb, keras.callbacks.TensorBoard) and tb.log_dir == "/tmp/run/tensorboard"


@pytest.mark.parametrize("params, fragment", [
    ({"filename": "../outside.keras"}, "inside the run directory"),
    ({"filename": "/abs/best.keras"}, "inside the run directory"),
    ({"filename": "best.h5"}, "must end in '.keras'"),
    ({"filename": "best.keras", "save_weights_only": True}, "must end in '.weights.h5'"),
])
def test_model_checkpoint_rejects_bad_filenames(registry, params, fragment):
    with pytest.raises(PluginError, match=fragment):
        build(registry, "callback", "model_checkpoint", **params)


def test_optimizers(registry):
    sgd = build(registry, "optimizer", "sgd", momentum=0.9, nesterov=True)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    assert float(sgd.learning_rate) == pytest.approx(0.01)
    for name, cls in [("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW),
                      ("rmsprop", keras.optimizers.RMSprop)]:
        assert isinstance(build(registry, "optimizer", name), cls)


def test_datasets_read_local_copies(registry, cifar10_dir):
    splits = build(registry, "dataset", "cifar10", path=cifar10_dir)
    assert splits.x_train.shape == (100, 32, 32, 3)


@pytest.mark.parametrize("name, params, fragment", [
    ("csv_logger", {"filename": "recipe.toml"}, "'recipe.toml' is cifarkit's own file"),
    ("csv_logger", {"filename": "checkpoint"}, "'checkpoint' is cifarkit's own file"),
    ("csv_logger", {"filename": "checkpoint/state.json"}, "is cifarkit's own file"),
    ("csv_logger", {"filename": ".summary.json.x.tmp"}, "is cifarkit's own file"),
    ("model_checkpoint", {"filename": "model.keras"}, "'model.keras' is cifarkit's own file"),
    ("tensorboard", {"log_dir": "evaluation"}, "'evaluation' is cifarkit's own file"),
    ("csv_logger", {"filename": "../x.csv"}, "must be a relative path inside the run directory"),
])
def test_a_callback_cannot_write_over_the_run_s_own_files(registry, name, params, fragment):
    with pytest.raises(PluginError, match=re.escape(fragment)):
        build(registry, "callback", name, **params)


def test_a_callback_may_write_its_own_files(registry):
    logger = build(registry, "callback", "csv_logger", filename="logs/history.csv")
    assert logger.filename.endswith("/tmp/run/logs/history.csv")
