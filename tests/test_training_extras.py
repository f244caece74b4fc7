"""Training extras (issue 23): weights from another run (train.init_from), frozen
layers (train.freeze), EMA of the weights (train.ema_momentum), mixup and cutmix,
cosine-decay and one-cycle schedules; on both backends, and resumed exactly."""

import importlib.util
import math

import h5py
import numpy as np
import pytest

from conftest import (assert_same_epochs, cifarkit, cli, commands_on, metrics, stop_at, summary,
                      write_tiny_recipe)

BACKENDS = ["tensorflow"] + (["jax"] if importlib.util.find_spec("jax") else [])


def _layer_weights(path) -> dict:
    """{layer name: [arrays]} of a Keras weights file (model.keras or .weights.h5)."""
    from cifarkit.runs.init import read_layers

    return read_layers(path, "test")


def _train(tmp_path, data, name, rest="", *args, backend="tensorflow", run=cifarkit):
    recipe = write_tiny_recipe(tmp_path / f"{name}.toml", data, name, 16, rest)
    result = run("run", str(recipe), "--backend", backend, "--output", str(tmp_path / name),
                 *args)
    return result, recipe


# -- init_from and freeze --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_init_from_loads_matching_layers_and_freeze_keeps_them(tmp_path, cifar10_dir, backend):
    """A wider first block: its layers stay fresh, the rest come from the source run;
    frozen layers leave training exactly as they were loaded."""
    first = write_tiny_recipe(tmp_path / "source.toml", cifar10_dir, "source", 16,
                              "[train]\nepochs = 1\n")
    then = write_tiny_recipe(tmp_path / "tuned.toml", cifar10_dir, "tuned", 16,
                             '[train]\nepochs = 1\nfreeze = ["block2_[bc]*2", "dense"]\n')
    source, result = commands_on(backend, [  # TensorFlow here, JAX in one new process
        (["run", first, "--backend", backend, "--output", tmp_path / "source"], None),
        (["run", then, "--backend", backend, "--output", tmp_path / "tuned", "--set",
          "model.filters=[6, 8]", "--set", f"train.init_from={{only:{tmp_path / 'source'}}}"],
         None)])
    assert source.returncode == 0, source.stderr[-2000:]
    assert result.returncode == 0, result.stderr[-2000:]
    (source_dir,) = (tmp_path / "source").iterdir()
    report = " ".join(result.stdout.split())  # the header may wrap
    assert f"init_from {source_dir}: loaded 6 of 11 layers" in report
    assert "fresh: block1_conv1 (3x3x3x4, 4 there; 3x3x3x6, 6 here)" in report
    assert "frozen: block2_conv2, block2_bn2, dense" in report
    (tuned_dir,) = (tmp_path / "tuned").iterdir()
    before, after = (_layer_weights(d / "model.keras") for d in (source_dir, tuned_dir))
    for name in ("block2_conv2", "block2_bn2", "dense"):  # frozen: untouched (BN statistics too)
        for a, b in zip(before[name], after[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.array_equal(before["predictions"][0], after["predictions"][0])  # trained on
    assert before["block1_conv1"][0].shape != after["block1_conv1"][0].shape


def test_init_from_with_nothing_matching_is_one_line_and_writes_nothing(tmp_path, cifar10_dir):
    other = tmp_path / "metrics.csv"
    other.write_text("epoch\n")
    weights = tmp_path / "w.weights.h5"
    with h5py.File(weights, "w") as f:  # a weights file of some other model
        f.create_group("layers/dense/vars").attrs["name"] = "other"
        f["layers/dense/vars/0"] = np.zeros((3, 3))
    for value, expected in [(weights, "no layer of this model matches one in"),
                            (tmp_path / "missing", "does not exist"),
                            (other, "neither a run directory"),
                            (tmp_path, "holds neither model.keras nor a checkpoint")]:
        result, recipe = _train(tmp_path, cifar10_dir, "t", f'[train]\ninit_from = "{value}"\n',
                                run=cli)
        assert result.returncode == 2, result.stderr[-2000:]
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"cifarkit: error: {recipe}: train.init_from:") and expected in line
        assert not (tmp_path / "t").exists()
    result, _ = _train(tmp_path, cifar10_dir, "t", '[train]\nfreeze = ["nothing_*"]\n', run=cli)
    assert result.returncode == 2 and "'nothing_*' matches no layer with weights" in result.stderr
    assert "block1_conv1" in result.stderr and not (tmp_path / "t").exists()


# -- mixup and cutmix ------------------------------------------------------------------


def test_mixing_augmentations_mix_one_hot_labels_and_keep_images_in_range():
    """Keras's MixUp and CutMix through cifarkit's augmentation path: soft labels that
    still sum to one, the same mixing on the same step, and a different one later."""
    import keras

    from cifarkit.backends import augment_batch
    from cifarkit_plugins.augmentations import cutmix, mixup

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8, 3)).astype(np.float32)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    for layer in (mixup(alpha=1.0, seed=1), cutmix(seed=2)):
        out_images, out_labels = (np.asarray(keras.ops.convert_to_numpy(t))
                                  for t in augment_batch([layer], images, labels))
        assert out_images.shape == images.shape and out_labels.shape == labels.shape
        np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, rtol=1e-5)
        assert ((out_labels > 0) & (out_labels < 1)).any()  # some labels are mixed
        assert out_images.min() >= 0 and out_images.max() <= 255


def test_a_mixing_augmentation_with_a_sparse_loss_is_refused(tmp_path, cifar10_dir):
    rest = ('[[augmentation]]\nplugin = "cutmix"\n'
            '[train]\nloss = "sparse_categorical_crossentropy"\n')
    result, recipe = _train(tmp_path, cifar10_dir, "t", rest, run=cli)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"cifarkit: error: {recipe}: augmentation[0]: augmentation 'cutmix' mixes "
                    "labels, which train.loss = 'sparse_categorical_crossentropy' cannot take "
                    "(it reads class indices); use loss = \"categorical_crossentropy\"")
    assert not (tmp_path / "t").exists()


# -- schedules -------------------------------------------------------------------------


def test_cosine_decay_and_one_cycle_follow_their_formulas_on_host_and_in_the_step():
    """The rate the reporter reads (NumPy) is the one the training step computes (Keras
    ops, traced); cosine_decay is Keras's CosineDecay, one_cycle PyTorch's OneCycleLR."""
    import keras
    import tensorflow as tf

    from cifarkit_plugins.callbacks import cosine_decay, one_cycle

    total, lr = 100, 0.1
    cosine = cosine_decay(lr, warmup=0.1, warmup_start=0.1, end=0.01).make(total)
    cycle = one_cycle(lr, pct_start=0.25).make(total)
    plain = cosine_decay(lr).make(total)
    reference = keras.optimizers.schedules.CosineDecay(0.01, 89, alpha=0.01,
                                                       warmup_target=lr, warmup_steps=10)
    for step in (0, 1, 5, 10, 11, 50, 98, 99, 150):
        traced = [float(tf.function(s)(tf.constant(step, tf.int64))) for s in (cosine, cycle)]
        assert float(cosine(step)) == pytest.approx(traced[0], rel=1e-5)
        assert float(cycle(step)) == pytest.approx(traced[1], rel=1e-5)
        assert float(cosine(step)) == pytest.approx(float(reference(step)), rel=1e-5)
    assert float(cosine(0)) == pytest.approx(0.01) and float(cosine(10)) == pytest.approx(lr)
    assert float(cosine(99)) == pytest.approx(lr * 0.01, rel=1e-4)
    assert float(plain(0)) == pytest.approx(lr) and float(plain(99)) == pytest.approx(0, abs=1e-9)
    peak = 0.25 * 99
    assert float(cycle(0)) == pytest.approx(lr / 25)
    assert float(cycle(math.floor(peak))) == pytest.approx(lr, rel=1e-2)
    assert float(cycle(99)) == pytest.approx(lr / 25 / 1e4, rel=1e-3)


# -- everything together, resumed ------------------------------------------------------

EXTRAS = """
[[augmentation]]
plugin = "random_flip"
[[augmentation]]
plugin = "cutmix"
[[augmentation]]
plugin = "mixup"
[train]
epochs = 3
steps_per_epoch = 6
ema_momentum = 0.9
[[callbacks]]
plugin = "early_stopping"
patience = 10
[[callbacks]]
plugin = "{schedule}"
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend,schedule", [(b, s) for b, s in
                                              zip(BACKENDS, ["cosine_decay", "one_cycle"])])
def test_extras_resume_exactly(tmp_path, cifar10_dir, backend, schedule):
    """EMA + cutmix + mixup + a schedule: a run interrupted after its first epoch and
    resumed has the uninterrupted run's figures, epoch by epoch, and model.keras
    holds the average (the optimizer's EMA) of the weights."""
    recipe = write_tiny_recipe(tmp_path / "r.toml", cifar10_dir, "r", 16,
                               EXTRAS.format(schedule=schedule))
    common = ["--deterministic", "--backend", backend]
    extra, env = stop_at(2, 3, "int")
    parts = f"{{only:{tmp_path / 'parts'}}}"
    whole, stopped, resumed = commands_on(backend, [  # JAX: the three in one new process
        (["run", recipe, *common, "--output", tmp_path / "whole"], None),
        (["run", recipe, *common, "--output", tmp_path / "parts", *extra], env),
        (["run", "--resume", parts], None)])
    assert whole.returncode == 0, whole.stderr[-2000:]
    (run_dir,) = (tmp_path / "parts").iterdir()
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "interrupted after 1 completed epoch(s)" in " ".join(stopped.stdout.split())
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (whole_dir,) = (tmp_path / "whole").iterdir()
    assert_same_epochs(whole_dir, run_dir, 3, rel=1e-5)
    assert summary(run_dir)["status"] == "completed"
    rates = [float(r["learning_rate"]) for r in metrics(run_dir)]
    assert len(set(rates)) == 3  # the schedule moved the rate every epoch


def test_the_shipped_recipes_with_extras_resolve(registry):
    from cifarkit.core.recipe import load_recipe
    from conftest import ROOT

    tuned = load_recipe(ROOT / "recipes" / "finetune.toml", ["train.init_from=runs/x"],
                        registry=registry)
    assert tuned.train.freeze == ("block1_*",) and tuned.train.init_from.is_absolute()
    assert [c.plugin for c in tuned.callbacks] == ["early_stopping", "cosine_decay"]
    extras = load_recipe(ROOT / "recipes" / "ema-cutmix-cosine.toml", registry=registry)
    assert extras.train.ema_momentum == 0.99
    assert [a.plugin for a in extras.augmentation] == ["random_affine", "cutmix"]


def test_top_5_accuracy_reads_smoothed_and_mixed_labels_by_their_largest_share():
    """With label smoothing or mixed labels, top_5_accuracy scores the class with the
    largest share of each label, as for hard labels."""
    import keras

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), 64).astype(np.float32)
    classes = rng.integers(0, 10, 64)
    hard = np.eye(10, dtype=np.float32)[classes]
    smoothed = hard * 0.9 + 0.01
    other = np.eye(10, dtype=np.float32)[(classes + 3) % 10]
    mixed = 0.7 * hard + 0.3 * other
    scores = []
    for labels in (hard, smoothed, mixed):
        metric = keras.metrics.TopKCategoricalAccuracy(k=5)
        metric.update_state(labels, probs)
        scores.append(float(metric.result()))
    assert scores[0] == scores[1] == scores[2]
    assert 0 < scores[0] < 1
