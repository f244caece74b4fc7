"""The runner in-process: callbacks in the run directory, early stopping, the reporter."""

import io
import re
import json

import pytest
from rich.console import Console

from cifarkit.core.recipe import load_recipe
from cifarkit.cli.reporter import Reporter
from cifarkit.runs.runner import run
from conftest import DEFAULT_RECIPE, tiny_overrides

pytest.importorskip("tensorflow")


@pytest.mark.slow
def test_run_with_every_builtin_callback(tmp_path, cifar10_dir, registry, write):
    recipe_file = write("all.toml", f"""
        extends = "{DEFAULT_RECIPE}"
        name = "all-callbacks"
        [[callbacks]]
        plugin = "early_stopping"
        monitor = "val_loss"
        patience = 2
        min_delta = 100.0       # only epoch 1 counts as an improvement: stops after epoch 3 of 5
        [[callbacks]]
        plugin = "model_checkpoint"
        filename = "checkpoints/best.keras"
        [[callbacks]]
        plugin = "csv_logger"
        [[callbacks]]
        plugin = "reduce_lr_on_plateau"
        factor = 0.5
        patience = 0
        min_delta = 100.0       # no improvement after epoch 1: halves the rate from epoch 3
        [[callbacks]]
        plugin = "tensorboard"
    """)
    recipe = load_recipe(recipe_file, [*tiny_overrides(cifar10_dir, epochs=5), "strategy.plugin=one_device"],
                         registry=registry)
    buf = io.StringIO()
    result = run(recipe, registry, tmp_path / "runs", Reporter(Console(file=buf, width=120)))
    run_dir = result.run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_run"] == 3 and summary["stopped_early"] is True
    assert (run_dir / "checkpoints" / "best.keras").is_file()
    assert (run_dir / "training_log.csv").read_text().count("\n") == 4  # header + 3 epochs
    assert any((run_dir / "tensorboard").rglob("*tfevents*"))
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rates = [float(line.split(",")[header.index("learning_rate")]) for line in lines[1:]]
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4])
    assert "stopped early" in buf.getvalue()


def test_reporter_plain_mode_prints_readable_lines(tmp_path):
    buf = io.StringIO()
    reporter = Reporter(Console(file=buf, width=100), plain_interval_s=0.0)
    assert not reporter.live
    reporter.attach_log(tmp_path / "run.log")
    reporter.train_begin(epochs=2, steps=4, batch_size=8)
    reporter.epoch_begin(1)
    reporter.batch_end(2, {"loss": 1.5, "accuracy": 0.25})
    reporter.epoch_end({"epoch": 1, "loss": 1.25, "accuracy": 0.5, "val_loss": 1.0,
                        "learning_rate": 0.001, "epoch_time_s": 2.0, "train_time_s": 1.5,
                        "images_per_s": 21.3})
    reporter.finish({"recipe": "r", "status": "completed", "test_accuracy": 0.5, "test_loss": 1.0,
                     "best_epoch": 1, "best_monitor": "val_loss", "best_value": 1.0,
                     "epochs_run": 1, "epochs_planned": 2, "stopped_early": True,
                     "wall_time_s": 75.0, "train_images_per_s": 21.3, "run_dir": "/x"})
    reporter.close()
    out = buf.getvalue()
    assert "\x1b[" not in out
    assert "epoch 1/2  step 2/4  loss 1.5000  accuracy 0.2500" in out
    assert "epoch 1/2  loss 1.2500  accuracy 0.5000  val_loss 1.0000  lr 0.001  21 img/s  2.0s" in out
    assert "50.00 %" in out and "1 of 2 (stopped early)" in out and "1m15s" in out
    log = (tmp_path / "run.log").read_text()
    assert "epoch 1/2  loss 1.2500" in log and "test accuracy: 50.00 %" in log


def test_reporter_live_mode_draws_a_progress_bar():
    buf = io.StringIO()
    reporter = Reporter(Console(file=buf, width=120, force_terminal=True))
    assert reporter.live
    reporter.train_begin(epochs=1, steps=3, batch_size=8)
    reporter.epoch_begin(1)
    for step in (1, 2, 3):
        reporter.batch_end(step, {"loss": 1.0, "accuracy": 0.5})
    reporter.epoch_end({"epoch": 1, "loss": 1.0, "accuracy": 0.5, "epoch_time_s": 1.0,
                        "train_time_s": 1.0, "images_per_s": 24.0})
    reporter.close()
    out = buf.getvalue()
    assert "epoch 1/1" in out and "img/s" in out


MODELS = '''
import cifarkit

def unbuilt_sequential(input_shape, num_classes):
    """A Sequential without keras.Input."""
    import keras
    from keras import layers
    return keras.Sequential([layers.Rescaling(1 / 255), layers.Conv2D(4, 3, activation="relu"),
                             layers.GlobalAveragePooling2D(), layers.Dense(num_classes, activation="softmax")])

def logits(input_shape, num_classes):
    """Forgets the softmax."""
    import keras
    from keras import layers
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layers.Dense(num_classes)(layers.Flatten()(inputs)))

def three_classes(input_shape, num_classes):
    """Ignores num_classes."""
    import keras
    from keras import layers
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.Flatten()(inputs)))

@cifarkit.hookimpl
def register_models(register):
    register(unbuilt_sequential)
    register(logits)
    register(three_classes)
'''


@pytest.mark.parametrize("model, fragment", [
    ("unbuilt_sequential", None),
    ("logits", "must output class probabilities (end in a softmax)"),
    ("three_classes", "outputs shape (3,), but the dataset has 10 classes"),
])
def test_model_contract_is_checked_before_anything_is_written(tmp_path, cifar10_dir, write, model, fragment):
    from cifarkit.errors import PluginError
    from cifarkit.core.registry import Registry

    registry = Registry()
    registry.load_entrypoints(only="")
    plugin = write("models.py", MODELS)
    recipe = load_recipe(write("r.toml", f'extends = "{DEFAULT_RECIPE}"\nplugins = ["{plugin}"]\n'
                                         f'[model]\nplugin = "{model}"\n'),
                         [f"data.path={cifar10_dir}", "train.epochs=1"], registry=registry)
    reporter = Reporter(Console(file=io.StringIO()))
    if fragment is None:
        assert run(recipe, registry, tmp_path / "runs", reporter).summary["status"] == "completed"
        return
    with pytest.raises(PluginError, match=re.escape(fragment)):
        run(recipe, registry, tmp_path / "runs", reporter)
    assert not (tmp_path / "runs").exists()


def test_the_run_eta_leaves_out_compilation(monkeypatch):
    """Epoch 1's first step compiles (60 s), then each step takes 1 s: the whole-run ETA
    is the steady pace, not the compile-inflated one; later epochs use steady epochs."""
    import cifarkit.cli.reporter as reporter_module

    clock = [0.0]
    monkeypatch.setattr(reporter_module.time, "perf_counter", lambda: clock[0])
    buf = io.StringIO()
    reporter = Reporter(Console(file=buf, width=200), plain_interval_s=0.0)
    reporter.train_begin(epochs=3, steps=10, batch_size=8)
    reporter.epoch_begin(1)
    clock[0] = 60.0
    reporter.batch_end(1, {"loss": 1.0})  # compiled: no estimate yet
    for step in range(2, 11):
        clock[0] += 1.0
        reporter.batch_end(step, {"loss": 1.0})
    assert "run ETA …" in buf.getvalue()
    assert "step 6/10  loss 1.0000  1 img/s  run ETA 24.0s" in buf.getvalue()  # 4 + 2 x 10 s
    reporter.epoch_end({"epoch": 1, "loss": 1.0, "epoch_time_s": 69.0, "train_time_s": 69.0,
                        "images_per_s": 1.2, "compiled": True})
    assert "1m09s  run ETA 20.0s" in buf.getvalue()  # two epochs of 10 s
    reporter.epoch_begin(2)
    clock[0] += 12.0
    reporter.batch_end(10, {"loss": 1.0})
    reporter.epoch_end({"epoch": 2, "loss": 1.0, "epoch_time_s": 12.0, "train_time_s": 12.0,
                        "images_per_s": 6.7})
    assert "12.0s  run ETA 12.0s" in buf.getvalue()  # one more steady epoch
    reporter.evaluating(0, 100)
    reporter.evaluating(100, 100)
    assert "evaluating the test split: 100/100 images" in buf.getvalue()
