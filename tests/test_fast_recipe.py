"""The fast recipe's plugins (airbench model, warmup_decay, lookahead), flip
test-time augmentation, the injected sample_images, and the recipe end to end."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from cifarkit.runs.evaluation import predict_tta
from cifarkit.core.recipe import load_recipe
from cifarkit.runs.build import load_data
from conftest import ROOT, cli

keras = pytest.importorskip("keras")

FAST = ROOT / "recipes" / "fast.toml"


def factory(registry, kind, name):
    return registry.get(kind, name).factory


def _sample(n=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 32, 32, 1))
    noise = rng.integers(-20, 21, (n, 32, 32, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)  # strongly correlated channels


def test_whitening_kernel_whitens_patches():
    from cifarkit_plugins.models import _whitening_kernel

    x = _sample().astype(np.float32)
    x = (x - x.mean((0, 1, 2))) / x.std((0, 1, 2))
    kernel = _whitening_kernel(x, 2, eps=1e-9)
    assert kernel.shape == (2, 2, 3, 24)
    patches = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype(np.float64)
    out = patches @ kernel.reshape(12, 24)
    np.testing.assert_allclose(out[:, 12:], -out[:, :12])
    second_moment = out[:, :12].T @ out[:, :12] / len(out)
    np.testing.assert_allclose(second_moment, np.eye(12), atol=1e-3)


def test_airbench_model(registry, tmp_path):
    sample = _sample(200)
    model = factory(registry, "model", "airbench")(input_shape=(32, 32, 3), num_classes=10,
                                                   sample_images=sample)
    assert model.count_params() == 1_973_920
    whiten = model.get_layer("whiten")
    assert not whiten.trainable and whiten.kernel.shape == (2, 2, 3, 24)
    w = model.get_layer("block2_conv1").get_weights()[0]  # 64 -> 256: first 64 filters identity
    identity = np.zeros((3, 3, 64, 64), np.float32)
    identity[1, 1] = np.eye(64)
    assert np.array_equal(w[:, :, :, :64], identity) and np.abs(w[:, :, :, 64:]).sum() > 0
    x = sample[:4].astype(np.float32)
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "m.keras")  # built-in layers only: plain load_model works
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), probs, rtol=1e-5)


def test_airbench_whitens_in_float32_under_mixed_precision(registry):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = factory(registry, "model", "airbench")(input_shape=(32, 32, 3), num_classes=10,
                                                       sample_images=_sample(100))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name in ("normalize", "whiten"):
        assert model.get_layer(name).compute_dtype == "float32"
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"


def _one_sgd_step(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False),
                              keras.layers.BatchNormalization(scale=False),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    before = [v.numpy().copy() for v in model.trainable_variables]
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
    model.train_on_batch(x, y)
    return model, [(v.name, v.numpy() - b) for v, b in zip(model.trainable_variables, before)]


def test_sgd_beta_lr_scale_scales_only_normalisation_offsets(registry, tmp_path):
    sgd = factory(registry, "optimizer", "sgd")
    _, plain = _one_sgd_step(sgd(learning_rate=0.1, momentum=0.5, nesterov=True))
    model, scaled = _one_sgd_step(sgd(learning_rate=0.1, momentum=0.5, nesterov=True,
                                      beta_lr_scale=64))
    assert [name for name, _ in plain] == ["kernel", "beta", "kernel", "bias"]
    for (name, step), (_, scaled_step) in zip(plain, scaled):
        assert np.abs(step).sum() > 0
        np.testing.assert_allclose(scaled_step, (64 if name == "beta" else 1) * step,
                                   rtol=1e-4, atol=1e-7)
    model.save(tmp_path / "m.keras")  # the optimizer is registered with Keras
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.beta_lr_scale == 64


def test_airbench_rejects_images_too_small_for_its_blocks(registry):
    from cifarkit.errors import PluginError

    with pytest.raises(PluginError, match="at least 9 pixels"):
        factory(registry, "model", "airbench")(input_shape=(6, 6, 3), num_classes=10,
                                               sample_images=_sample(4)[:, :6, :6])


def _tiny_model(lr=1.0):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return model


def test_warmup_decay_follows_the_triangle(registry):
    callback = factory(registry, "callback", "warmup_decay")(learning_rate=2.0, start=0.2,
                                                             peak_at=0.5, end=0.0)
    callback.set_model(_tiny_model())
    callback.set_params({"epochs": 2, "steps": 3})
    optimizer = callback.model.optimizer
    seen = []
    for step in range(6):  # the schedule reads the optimizer's step count
        optimizer.iterations.assign(step)
        seen.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    # progress = step / 5; rises 0.4 -> 2.0 until progress 0.5, then falls to 0 at the last step
    np.testing.assert_allclose(seen, [0.4, 1.04, 1.68, 1.6, 0.8, 0.0], atol=1e-6)


def test_lookahead_averages_and_copies_back(registry):
    callback = factory(registry, "callback", "lookahead")(start_epoch=1, every=2, decay=0.5,
                                                          decay_power=0.0)
    model = _tiny_model()
    callback.set_model(model)
    callback.set_params({"epochs": 2, "steps": 4})
    w0 = [np.ones_like(w) for w in model.get_weights()]
    model.set_weights(w0)
    callback.on_epoch_begin(0)
    for step in range(4):  # before start_epoch: nothing happens
        callback.on_train_batch_end(step)
    assert callback.average is None
    callback.on_epoch_begin(1)
    callback.on_train_batch_end(0)  # not a multiple of `every`
    callback.on_train_batch_end(1)  # first update: the average starts at the weights
    model.set_weights([3 * w for w in w0])
    callback.on_train_batch_end(3)  # rho = 0.5 ** 2: 0.25 * 1 + 0.75 * 3
    for w in model.get_weights():
        np.testing.assert_allclose(w, 2.5)
    model.set_weights([10 * w for w in w0])
    callback.on_epoch_end(1)  # the epoch ends on the average
    for w in model.get_weights():
        np.testing.assert_allclose(w, 2.5)


def test_flip_tta_averages_an_image_and_its_mirror():
    x = np.arange(2 * 2 * 3 * 1, dtype=np.float32).reshape(2, 2, 3, 1)

    def predict(images):  # "probability" of class 0: the top-left pixel, scaled
        p0 = images[:, 0, 0, 0] / 10.0
        return np.stack([p0, 1 - p0], axis=1)

    tta, plain = predict_tta(predict, x, "flip")
    np.testing.assert_allclose(plain, predict(x))
    np.testing.assert_allclose(tta[:, 0], (x[:, 0, 0, 0] + x[:, 0, 2, 0]) / 20.0)
    none, same = predict_tta(predict, x, "none")
    assert none is same


def test_flip_translate_tta_weighs_six_views():
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 5, 2)).astype(np.float32)
    calls = []

    def predict(images):
        calls.append(images.copy())
        p0 = images[:, 1, 1, 0]  # one pixel, so each view is easy to follow
        return np.stack([p0, 1 - p0], axis=1)

    tta, _ = predict_tta(predict, x, "flip_translate")
    assert len(calls) == 6
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [x, x[:, :, ::-1], padded[:, :4, :5], padded[:, :4, :5][:, :, ::-1],
             padded[:, 2:, 2:], padded[:, 2:, 2:][:, :, ::-1]]
    weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    expected = sum(w * v[:, 1, 1, 0] for w, v in zip(weights, views))
    np.testing.assert_allclose(tta[:, 0], expected, rtol=1e-6)


def test_fast_recipe_is_valid(registry):
    recipe = load_recipe(FAST, [], registry)
    assert recipe.model.plugin == "airbench" and recipe.train.tta == "flip_translate"
    assert recipe.train.optimizer.params["beta_lr_scale"] == 64
    assert recipe.train.mixed_precision == "mixed_bfloat16"
    assert [c.plugin for c in recipe.callbacks] == ["warmup_decay", "lookahead"]


SPY = '''
import os

import numpy as np

import cifarkit


def spy(input_shape, num_classes, sample_images):
    """Records the images it is given, then builds a tiny model."""
    import keras

    np.save(os.environ["SPY_OUT"], sample_images)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


@cifarkit.hookimpl
def register_models(register):
    register(spy)
'''


@pytest.mark.slow
def test_sample_images_are_training_images_only(tmp_path, cifar10_dir, registry):
    plugin = tmp_path / "spy.py"
    plugin.write_text(SPY)
    sets = [f"data.path={cifar10_dir}", "train.epochs=1", "data.batch_size=16",
            "data.validation_split=0.2", "model.plugin=spy"]
    args = [a for s in sets for a in ("--set", s)]
    result = cli("run", str(FAST), *args, "--plugin", str(plugin),
                 "--output", str(tmp_path / "runs"), env={"SPY_OUT": str(tmp_path / "s.npy")})
    assert result.returncode == 0, result.stderr[-2000:]
    sample = np.load(tmp_path / "s.npy")
    recipe = load_recipe(FAST, sets[:-1], registry)  # the same data split, built-in model
    data = load_data(recipe, registry)
    assert sample.dtype == np.uint8
    np.testing.assert_array_equal(sample, data.x_train)
    assert len(data.x_val) == 20


@pytest.mark.slow
def test_fast_recipe_end_to_end_with_tta(tmp_path, cifar10_dir):
    sets = [f"data.path={cifar10_dir}", "train.epochs=3", "data.batch_size=16",
            "model.widths=[8, 8, 8]", "callbacks.lookahead.start_epoch=1",
            "callbacks.lookahead.every=1"]
    args = [a for s in sets for a in ("--set", s)]
    result = cli("run", str(FAST), *args, "--output", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_tta"] == "flip_translate"
    # without TTA: the plain predictions of the saved model on the 40 test images
    import keras

    from cifarkit.data import read_cifar10

    data = read_cifar10(cifar10_dir)
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    plain = model.predict(data.x_test.astype("float32"), verbose=0)
    assert float((plain.argmax(1) == data.y_test).mean()) == summary["test_accuracy_without_tta"]
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    # the mean of the rate each epoch's steps used (the header: 3 epochs x N steps)
    from cifarkit_plugins._callbacks import WarmupDecaySchedule

    n = int(result.stdout.split("3 epochs x ")[1].split()[0])
    schedule = WarmupDecaySchedule(1.5, 0.2, 0.23, 0.07, 3 * n)
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx(
        [np.mean([schedule(n * e + k) for k in range(n)]) for e in range(3)], rel=1e-5)
    assert "warmup_decay (start 0.2, peak_at 0.23, end 0.07)" in result.stdout
    evaluated = cli("evaluate", str(run_dir), "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["accuracy"] == summary["test_accuracy"]
    # plain Keras, without cifarkit's optimizer class: compile=False (docs/runs.md)
    code = ("import keras, sys; m = keras.models.load_model(sys.argv[1], compile=False); "
            "print(m.output_shape[-1])")
    loaded = subprocess.run([sys.executable, "-c", code, str(run_dir / "model.keras")],
                            capture_output=True, text=True)
    assert loaded.returncode == 0 and loaded.stdout.split()[-1] == "10", loaded.stderr[-2000:]
