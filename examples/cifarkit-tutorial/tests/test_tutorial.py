import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cifarkit_tutorial.split_cpu


def test_plugins_are_registered_with_parameters(cifarkit_registry):
    for kind, name in [("model", "small_resnet"), ("augmentation", "cutout"),
                       ("callback", "lr_logger"), ("strategy", "split_cpu")]:
        info = cifarkit_registry.get(kind, name)
        assert info.summary and info.params
    assert [p.name for p in cifarkit_registry.get("model", "small_resnet").params] == ["widths", "blocks"]


def test_small_resnet_trains(make_recipe, run_recipe):
    result = run_recipe(make_recipe({"model": {"plugin": "small_resnet", "widths": [8, 16]}}))
    assert result.summary["status"] == "completed"
    assert result.summary["model"] == "small_resnet"
    assert (result.run_dir / "model.keras").is_file()


def test_cutout_blanks_a_patch(cifarkit_registry):
    info = cifarkit_registry.get("augmentation", "cutout")
    layer = info.factory(size=0.5, probability=1.0, fill=0.0, seed=1)
    images = np.full((4, 32, 32, 3), 200.0, np.float32)
    out = np.asarray(layer(images, training=True))
    assert out.shape == images.shape
    blank = (out == 0.0).all(axis=-1).mean(axis=(1, 2))
    assert blank == pytest.approx([0.25] * 4, abs=0.02)  # a quarter of every image


def test_lr_logger_writes_one_row_per_epoch(make_recipe, run_recipe):
    recipe = make_recipe({"train": {"epochs": 2}, "callbacks": [{"plugin": "lr_logger"}]})
    result = run_recipe(recipe)
    rows = list(csv.DictReader((result.run_dir / "learning_rate.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["learning_rate"]) == pytest.approx(1e-3)


def test_split_cpu_trains_on_two_replicas(make_recipe, tmp_path):
    # A fresh process: logical devices must be configured before TensorFlow starts.
    recipe = make_recipe({"strategy": {"plugin": "split_cpu", "replicas": 2}})
    env = {**os.environ, "CIFARKIT_LOAD_PLUGINS": ""}  # only the file below, not the installed copy
    result = subprocess.run(
        [sys.executable, "-m", "cifarkit", "run", str(recipe), "--output", str(tmp_path / "runs"),
         "--plugin", cifarkit_tutorial.split_cpu.__file__],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["replicas"] == 2


def test_npz_dataset_and_lion_train_together(tmp_path, make_recipe, run_recipe):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(64) % 2, x_test=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(16) % 2, class_names=np.array(["left", "right"]))
    recipe = make_recipe({"data": {"dataset": "npz_arrays", "path": str(path)},
                          "train": {"optimizer": "lion", "learning_rate": 1e-4}})
    result = run_recipe(recipe)
    assert result.summary["status"] == "completed"
    assert result.summary["class_names"] == ["left", "right"]
    assert result.summary["test_examples"] == 16


def test_the_fit_timer_wraps_training_and_the_tracer_wraps_it(make_recipe, run_recipe):
    result = run_recipe(make_recipe({"train": {"epochs": 2}}))
    timed = json.loads((result.run_dir / "fit_time.json").read_text())
    assert timed["epochs"] == 2 and timed["fit_seconds"] > 0
    lines = [line.split(" ", 1)[1] for line in
             (result.run_dir / "hooks.log").read_text().splitlines()]
    assert lines == [f"run_start {result.summary['recipe']} on {timed['backend']}",
                     "run_fit begins", "run_fit ends after 2 epoch(s)", "run_finish completed"]


def test_split_cpu_exists_for_tensorflow_only(cifarkit_registry):
    assert cifarkit_registry.get("strategy", "split_cpu").backends == ("tensorflow",)


def test_best_run_is_a_command(cifarkit_cli, make_recipe, run_recipe, tmp_path):
    empty = cifarkit_cli("best-run", str(tmp_path))
    assert empty.returncode == 2 and "no completed run" in empty.stderr
    result = run_recipe(make_recipe({}))
    best = cifarkit_cli("best-run", str(result.run_dir.parent))
    assert best.returncode == 0 and str(result.run_dir) in best.stdout
    assert "best-run" in cifarkit_cli("--help").stdout
