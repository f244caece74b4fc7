"""Runs people can leave alone: kill -9 and resume, Ctrl-C, evaluate, predict,
image folders, determinism, concurrent runs, atomic writes, failures."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarkit import artifacts, checkpoint
from conftest import DEFAULT_RECIPE, cifarkit, write_tiny_recipe

SLOW_EPOCHS = """\
[strategy]
plugin = "one_device"
[train]
epochs = {epochs}
steps_per_epoch = {steps}
[[callbacks]]
plugin = "early_stopping"
patience = 10
restore_best_weights = true
[[callbacks]]
plugin = "reduce_lr_on_plateau"
patience = 0
factor = 0.5
min_delta = 100.0
"""


def write_recipe(tmp_path, data, name="r", epochs=4, steps=150):
    return write_tiny_recipe(tmp_path / f"{name}.toml", data, name, 16,
                             SLOW_EPOCHS.format(epochs=epochs, steps=steps))


def start(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.Popen([sys.executable, "-m", "cifarkit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running(*args):
    """A ``cifarkit`` process that is always killed and reaped, even when the test fails."""
    proc = start(*args)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_for_rows(runs: Path, n: int, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in runs.glob("*/metrics.csv"):
            if len(f.read_text().splitlines()) - 1 >= n:
                return f.parent
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    pytest.fail("timed out waiting for epochs")


def metrics(run_dir):
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_kill_9_during_epoch_3_then_resume(tmp_path, cifar10_dir):
    runs = tmp_path / "runs"
    with running("run", str(write_recipe(tmp_path, cifar10_dir)), "--output", str(runs)) as proc:
        run_dir = wait_for_rows(runs, 2, proc)
        proc.send_signal(signal.SIGKILL)
    assert len(metrics(run_dir)) == 2 and summary(run_dir)["status"] == "running"
    result = cifarkit("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming: after epoch 2 of 4" in result.stdout
    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    # reduce_lr_on_plateau's state survived: it halves the rate after every epoch but the first
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])
    s = summary(run_dir)
    assert s["status"] == "completed" and s["resumed"] is True and s["resumed_from_epoch"] == 2
    assert s["epochs_run"] == 4 and (run_dir / "model.keras").is_file()
    assert not (run_dir / "checkpoint").exists()
    again = cifarkit("run", "--resume", str(run_dir))
    assert again.returncode == 2 and "already completed" in again.stderr


@pytest.mark.slow
def test_ctrl_c_saves_and_resumes(tmp_path, cifar10_dir):
    runs = tmp_path / "runs"
    with running("run", str(write_recipe(tmp_path, cifar10_dir, epochs=3)), "--output", str(runs)) as proc:
        run_dir = wait_for_rows(runs, 1, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"cifarkit run --resume {run_dir}" in out
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["resume_command"] == f"cifarkit run --resume {run_dir}"
    assert (run_dir / "model.keras").is_file() and len(metrics(run_dir)) == 1
    result = cifarkit("run", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert [r["epoch"] for r in metrics(run_dir)] == ["1", "2", "3"]
    assert summary(run_dir)["status"] == "completed"


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once(tmp_path, cifar10_dir):
    runs = tmp_path / "runs"
    with running("run", str(write_recipe(tmp_path, cifar10_dir, epochs=3, steps=400)),
                 "--output", str(runs)) as proc:
        run_dir = wait_for_rows(runs, 1, proc)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 130
    assert summary(run_dir)["status"] == "interrupted"


@pytest.mark.slow
def test_evaluate_and_predict_a_finished_run(tmp_path, cifar10_dir):
    runs = tmp_path / "runs"
    done = cifarkit("run", str(write_recipe(tmp_path, cifar10_dir, epochs=3, steps=150)),
                    "--output", str(runs))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = runs.iterdir()
    s = summary(run_dir)
    assert (run_dir / "confusion_matrix.png").is_file()
    assert s["test_accuracy"] > 0.3  # the synthetic classes are learnable

    ev = cifarkit("evaluate", str(run_dir), "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout)
    assert result["accuracy"] == pytest.approx(s["test_accuracy"], abs=1e-9)
    assert result["loss"] == pytest.approx(s["test_loss"], rel=1e-5)
    assert result["per_class_accuracy"] == pytest.approx(s["per_class_accuracy"])
    assert np.array(result["confusion_matrix"]).sum() == s["test_examples"]
    assert (run_dir / "evaluation" / "confusion_matrix.png").is_file()
    table = cifarkit("evaluate", str(run_dir))
    assert "per-class accuracy" in table.stdout and "confusion matrix" in table.stdout

    images = []
    for name, size, colour in [("a.png", (64, 48), (250, 10, 10)), ("b.jpg", (20, 20), (10, 10, 250))]:
        Image.fromarray(np.full((size[1], size[0], 3), colour, np.uint8)).save(tmp_path / name)
        images.append(str(tmp_path / name))
    pr = cifarkit("predict", str(run_dir), *images, "--top", "3", "--json")
    assert pr.returncode == 0, pr.stderr[-2000:]
    preds = json.loads(pr.stdout)
    assert [p["image"] for p in preds] == images
    for p in preds:
        assert len(p["predictions"]) == 3
        assert all(q["class"] in s["class_names"] for q in p["predictions"])
        probs = [q["probability"] for q in p["predictions"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    plain = cifarkit("predict", str(run_dir), images[0])
    assert plain.stdout.startswith(images[0] + ": ")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = cifarkit("predict", str(run_dir), str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "unreadable image" in bad.stderr and "Traceback" not in bad.stderr


def make_image_folder(root: Path, classes=("cats", "dogs", "fish"), per_class=8):
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                size = (24 + 8 * (i % 3), 40 - 4 * (i % 2))  # any size
                pixels = np.clip(rng.normal(80 * c + 40, 20, (size[1], size[0], 3)), 0, 255)
                ext = ".jpg" if i % 2 else ".png"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}{ext}")
    return root


@pytest.mark.slow
def test_image_folder_trains_and_evaluates(tmp_path):
    folder = make_image_folder(tmp_path / "pets")
    result = cifarkit("run", str(DEFAULT_RECIPE), "--set", "data.dataset=image_folder",
                      "--set", f"data.path={folder}", "--set", "train.epochs=1",
                      "--set", "data.batch_size=8", "--set", "model.filters=[4, 8]",
                      "--set", "model.dropout=[0.1, 0.1]", "--output", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = summary(run_dir)
    assert s["class_names"] == ["cats", "dogs", "fish"] and s["test_examples"] == 12
    ev = cifarkit("evaluate", str(run_dir), "--json")
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(s["test_accuracy"])


@pytest.mark.parametrize("damage, fragment", [
    (lambda root: (root / "train" / "dogs" / "3.jpg").write_bytes(b"\xff\xd8broken"), "3.jpg: unreadable image"),
    (lambda root: [p.unlink() for p in (root / "train" / "fish").iterdir()], "fish: empty class folder"),
    (lambda root: (root / "test" / "birds").mkdir() or
     Image.new("RGB", (8, 8)).save(root / "test" / "birds" / "x.png"), "birds are not in"),
    (lambda root: __import__("shutil").rmtree(root / "test"), "test: missing"),
])
def test_broken_image_folders_are_one_line_errors(tmp_path, damage, fragment):
    folder = make_image_folder(tmp_path / "pets", per_class=4)
    damage(folder)
    out = tmp_path / "runs"
    result = cifarkit("run", str(DEFAULT_RECIPE), "--set", "data.dataset=image_folder",
                      "--set", f"data.path={folder}", "--output", str(out))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_deterministic_runs_have_identical_metrics(tmp_path, cifar10_dir):
    recipe = write_recipe(tmp_path, cifar10_dir, epochs=2, steps=10)
    texts = []
    for out in ("a", "b"):
        result = cifarkit("run", str(recipe), "--deterministic", "--output", str(tmp_path / out))
        assert result.returncode == 0, result.stderr[-2000:]
        (run_dir,) = (tmp_path / out).iterdir()
        assert summary(run_dir)["deterministic"] is True
        assert "deterministic = true" in (run_dir / "recipe.toml").read_text()
        texts.append((run_dir / "metrics.csv").read_text())
    assert texts[0] == texts[1]


def test_concurrent_runs_get_their_own_directories(tmp_path):
    made, barrier = [], threading.Barrier(8)

    def create():
        barrier.wait()
        made.append(artifacts.create_run_dir(tmp_path, "same"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)


@pytest.mark.slow
def test_two_processes_into_one_output(tmp_path, cifar10_dir):
    recipe = write_recipe(tmp_path, cifar10_dir, name="twin", epochs=1, steps=5)
    procs = [start("run", str(recipe), "--output", str(tmp_path / "runs")) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    dirs = list((tmp_path / "runs").iterdir())
    assert len(dirs) == 2
    for d in dirs:
        assert summary(d)["status"] == "completed" and summary(d)["run_dir"] == str(d)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    artifacts.atomic_write(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        artifacts.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_checkpoint_restores_callback_state(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.optimizer.build(model.trainable_variables)
    es = keras.callbacks.EarlyStopping(restore_best_weights=True)
    es.wait, es.best, es.best_epoch, es.best_weights = 2, 0.5, 3, [np.ones((3, 2)), np.zeros(2)]
    lr = keras.callbacks.ReduceLROnPlateau()
    lr.wait, lr.best, lr.cooldown_counter = 1, 0.25, 4

    class Custom(keras.callbacks.Callback):
        state = {"seen": 7}

        def get_state(self):
            return self.state

        def set_state(self, state):
            self.state = state

    checkpoint.save(tmp_path, model, [{"epoch": 1}], [es, lr, Custom()], stop_training=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    folder = checkpoint.find(tmp_path)
    state = checkpoint.load_state(folder)
    fresh = [keras.callbacks.EarlyStopping(restore_best_weights=True),
             keras.callbacks.ReduceLROnPlateau(), Custom()]
    fresh[2].state = None
    checkpoint.restore_callbacks(folder, state, fresh)
    assert (fresh[0].wait, fresh[0].best, fresh[0].best_epoch) == (2, 0.5, 3)
    np.testing.assert_array_equal(fresh[0].best_weights[0], np.ones((3, 2)))
    assert (fresh[1].wait, fresh[1].best, fresh[1].cooldown_counter) == (1, 0.25, 4)
    assert fresh[2].state == {"seen": 7}


@pytest.mark.slow
def test_a_crash_during_training_is_recorded(tmp_path, cifar10_dir):
    plugin = tmp_path / "crash.py"
    plugin.write_text(
        "import cifarkit\n"
        "def crash_after_one_epoch():\n"
        "    'Raise at the end of the first epoch.'\n"
        "    import keras\n"
        "    class Crash(keras.callbacks.Callback):\n"
        "        def on_epoch_end(self, epoch, logs=None):\n"
        "            raise RuntimeError('disk on fire')\n"
        "    return Crash()\n"
        "@cifarkit.hookimpl\n"
        "def register_callbacks(register):\n"
        "    register(crash_after_one_epoch)\n")
    recipe = write_recipe(tmp_path, cifar10_dir, epochs=2, steps=5)
    recipe.write_text(recipe.read_text() + '\n[[callbacks]]\nplugin = "crash_after_one_epoch"\n')
    result = cifarkit("run", str(recipe), "--plugin", str(plugin), "--output", str(tmp_path / "runs"))
    assert result.returncode == 1 and "Traceback" in result.stderr  # a bug, not a user error
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = summary(run_dir)
    assert s["status"] == "failed" and "disk on fire" in s["error"]
    log = (run_dir / "run.log").read_text()
    assert "Traceback" in log and "RuntimeError: disk on fire" in log
