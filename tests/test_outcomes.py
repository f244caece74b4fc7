"""Honest outcomes: a diverged run fails, a plugin's sys.exit() is not a success, and
every JSON file cifarkit writes is strict JSON."""

import json
import math

import pytest

from conftest import cifarkit, write_tiny_recipe


def strict(path):
    """Parse ``path`` as strict JSON: NaN and Infinity are refused."""
    def refuse(name):
        raise AssertionError(f"{path} holds {name}, which strict JSON parsers reject")
    return json.loads(path.read_text(), parse_constant=refuse)


POISON = '''\
import cifarkit


def poison(at_epoch: int = 2):
    """Make the weights NaN during epoch ``at_epoch``'s first step (a diverging run)."""
    import keras

    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.now = epoch + 1 == at_epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.now and batch == 0:
                cifarkit.sync_weights(self.model)
                for v in self.model.trainable_variables:
                    v.assign(v * float("nan"))
                self.now = False

    return Poison()


def exits():
    """Call sys.exit(0) as epoch 1 begins."""
    import sys

    import keras

    class Exit(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            sys.exit(0)

    return Exit()


@cifarkit.hookimpl
def register_callbacks(register):
    register(poison)
    register(exits)
'''


def _recipe(tmp_path, data, callback, epochs=3):
    (tmp_path / "hostile.py").write_text(POISON)
    path = write_tiny_recipe(tmp_path / "r.toml", data, "r", 16,
                             f'[train]\nepochs = {epochs}\n[[callbacks]]\nplugin = "{callback}"\n')
    path.write_text(f'plugins = ["{tmp_path / "hostile.py"}"]\n' + path.read_text())
    return path


def _failed_run(tmp_path, data, callback):
    """``(the one line on stderr, run directory, its strict summary)`` of a run that fails."""
    runs = tmp_path / "runs"
    done = cifarkit("run", str(_recipe(tmp_path, data, callback)), "-o", str(runs))
    assert done.returncode == 2, done.stderr[-3000:]
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    (run_dir,) = runs.iterdir()
    s = strict(run_dir / "summary.json")
    assert s["status"] == "failed"
    return line, run_dir, s


@pytest.mark.slow
def test_a_diverged_run_fails_at_the_first_non_finite_loss(tmp_path, cifar10_dir):
    line, run_dir, s = _failed_run(tmp_path, cifar10_dir, "poison")
    assert "training diverged: the loss is nan by epoch 2, step" in line
    assert "training diverged" in s["error"]
    assert s["epochs_run"] == 1  # epoch 2 never completed
    state = strict(run_dir / "checkpoint" / "state.json")  # the last finite epoch's
    assert [r["epoch"] for r in state["rows"]] == [1]
    assert all(v is None or (isinstance(v, (int, float)) and math.isfinite(v))
               for v in state["rows"][0].values())  # the last checkpoint is a finite one
    assert "diverged" in (run_dir / "run.log").read_text()


@pytest.mark.slow
def test_a_plugin_s_sys_exit_is_a_failure_naming_the_plugin(tmp_path, cifar10_dir):
    line, _, s = _failed_run(tmp_path, cifar10_dir, "exits")
    assert "hostile.py" in line and "called sys.exit(0)" in line
    assert "sys.exit(0)" in s["error"]


def test_json_files_are_strict(tmp_path):
    from cifarkit.runs.artifacts import json_text, write_json

    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": "ok"})
    assert strict(tmp_path / "x.json") == {"a": None, "b": [None, 1.5], "c": "ok"}
    assert json_text({"v": float("-inf")}, indent=None) == '{"v": null}'
