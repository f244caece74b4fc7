"""What lifecycle hooks see of a run: a read-only context (cifarkit.runs.context), not
the engine. They add callbacks, files and numbers through its methods; replacing the
model (or anything else) is one line naming the plugin."""

import json

import pytest

from conftest import cli, tiny_overrides

pytestmark = pytest.mark.slow  # each trains a tiny run

PLUGIN = '''\
import os

import keras

import cifarkit


class Seen(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.ended = True


def reach_behind(run):
    """What a hostile plugin tries: none of it may change the run's recipe or outcome."""
    for attempt in (lambda: object.__setattr__(run.recipe.train, "epochs", 3),
                    lambda: run.recipe.model.params.update(dense_units=7),
                    lambda: object.__setattr__(run, "_summary", {"test_accuracy": 0.999}),
                    lambda: object.__getattribute__(run, "_metrics").update(test_accuracy=2.0),
                    lambda: object.__getattribute__(run, "_facts")["recipe"]):
        try:
            attempt()
        except Exception:
            pass
    assert not hasattr(run, "_run")


@cifarkit.hookimpl
def run_start(run):
    if os.environ.get("REPLACE"):
        run.model = keras.Sequential([])
    reach_behind(run)
    run.add_callback(Seen())
    run.add_metric("started_steps", run.steps)


@cifarkit.hookimpl
def run_finish(run, status):
    if status == "completed":
        assert any(isinstance(c, Seen) and c.ended for c in run.callbacks)
    run.artifact("notes/seen.txt").write_text(f"{run.backend} {run.class_names[0]} {status}")
    run.add_metric("epochs_seen", len(run.rows))
    reach_behind(run)
'''


def _run(tmp_path, cifar10_dir, env=None):
    plugin = tmp_path / "seen.py"
    plugin.write_text(PLUGIN)
    sets = [a for o in tiny_overrides(cifar10_dir) for a in ("--set", o)]
    return cli("run", "default", *sets, "--plugin", str(plugin), "--output",
               str(tmp_path / "runs"), env=env)


def test_a_plugin_adds_a_callback_a_file_and_numbers(tmp_path, cifar10_dir):
    done = _run(tmp_path, cifar10_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["plugin_metrics"] == {"started_steps": 6.0, "epochs_seen": 1.0,  # 90 / 16
                                         "test_accuracy": 2.0}  # a plugin's number, apart
    # what reached behind the context changed nothing of the run: 1 epoch, as recipe.toml says
    assert summary["epochs_run"] == 1 and "epochs = 1" in (run_dir / "recipe.toml").read_text()
    assert summary["test_accuracy"] != 0.999 and "dense_units = 7" not in (
        run_dir / "recipe.toml").read_text()
    assert (run_dir / "notes" / "seen.txt").read_text() == "tensorflow airplane completed"


def test_replacing_the_model_is_one_line_naming_the_plugin(tmp_path, cifar10_dir):
    done = _run(tmp_path, cifar10_dir, env={"REPLACE": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "seen.py" in line and "run_start()" in line and "model cannot be set" in line


def test_the_context_refuses_what_is_not_a_plugins_to_write():
    from types import SimpleNamespace

    from cifarkit.errors import PluginError
    from cifarkit.runs.context import ContextFeed

    recipe = SimpleNamespace(data=SimpleNamespace(batch_size=4))
    context = ContextFeed(recipe=recipe, run_dir="/tmp/r", backend="tensorflow", model=None,
                          class_names=["a"], steps=1, replicas=1, callbacks=[]).context
    for bad in ("summary.json", ".signature", "../x", "/etc/x"):
        with pytest.raises(PluginError):
            context.artifact(bad)
    for name, value in (("x", float("nan")), ("x", True), ("", 1.0), ("x", "1")):
        with pytest.raises(PluginError):
            context.add_metric(name, value)
    with pytest.raises(PluginError, match="recipe cannot be set"):
        context.recipe = None
