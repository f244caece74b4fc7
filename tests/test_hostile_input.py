"""Hostile or odd input ends in seconds with one line, and errors name the right place."""

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from cifarkit.data import read_cifar10, read_image_folder, unpickle
from cifarkit.errors import DataError, RecipeError
from cifarkit.core.recipe import load_recipe
from cifarkit.testing import cifar10_files
from conftest import DEFAULT_RECIPE, cifarkit, cli, write_plugin


def one_line_error(result, *fragments, seconds=None):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_a_named_pipe_as_recipe_or_extends_does_not_hang(tmp_path):
    pipe = tmp_path / "pipe.toml"
    os.mkfifo(pipe)
    start = time.monotonic()
    one_line_error(cifarkit("run", str(pipe), timeout=30), f"{pipe}: not a regular file")
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{pipe}"\n')
    one_line_error(cifarkit("run", str(child), timeout=30), f"{pipe}: not a regular file")
    assert time.monotonic() - start < 30


def test_a_device_or_a_huge_file_is_not_read_whole(tmp_path, registry):
    with pytest.raises(RecipeError, match="/dev/zero: not a regular file"):
        load_recipe("/dev/zero", registry=registry)
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(RecipeError, match=r"big.toml: 2,000,000 bytes is too large for a recipe"):
        load_recipe(big, registry=registry)


@pytest.mark.parametrize("text", ["a = " + "[" * 5000 + "]" * 5000,
                                  "[" + ".".join(["t"] * 3000) + "]\nx = 1"])
def test_deep_nesting_in_a_file_is_one_line(tmp_path, registry, text):
    deep = tmp_path / "deep.toml"
    deep.write_text(text)
    with pytest.raises(RecipeError, match=r"deep.toml: tables or arrays nested more than 32"):
        load_recipe(deep, registry=registry)


def test_deep_nesting_in_a_set_value_is_one_line(registry):
    with pytest.raises(RecipeError, match=r"^--set model.x=\[\[\[.*nested more than 32"):
        load_recipe(DEFAULT_RECIPE, ["model.x=" + "[" * 3000 + "]" * 3000], registry)


def batch_with_labels(labels) -> bytes:
    return pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": labels}, protocol=4)


@pytest.mark.parametrize("labels", [[1.0, 2.0, 3.0], ["1", "2", "3"], [True, False, True],
                                    [[1], [2], [3]]])
def test_labels_that_are_not_integers_are_refused(tmp_path, labels):
    files = cifar10_files(20, 10)
    files["data_batch_1"] = batch_with_labels(labels)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    with pytest.raises(DataError, match="'labels' must be a list .* of integers"):
        read_cifar10(folder)


def test_a_crafted_nested_label_list_is_refused_at_once():
    row = [0] * 1000
    block = [row] * 1000  # shared references: a small pickle, a billion numbers to convert
    nested = [[block] * 1000, 0]
    raw = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": nested}, protocol=4)
    start = time.monotonic()
    from cifarkit.data import _batch_arrays

    with pytest.raises(DataError, match="must be a list"):
        _batch_arrays(unpickle(raw, "crafted"), "labels", "crafted")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_batches_python_3_pickled_with_any_protocol_load(protocol):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251
    raw = pickle.dumps({b"data": data, b"labels": [3, 7]}, protocol=protocol)
    got = unpickle(raw, "batch")
    np.testing.assert_array_equal(got["data"], data)
    assert got["labels"] == [3, 7]


class _Rot13:
    def __reduce__(self):
        import codecs

        return codecs.encode, ("hello", "rot13")


def test_protocol_2_codecs_trick_is_limited_to_latin1():
    payload = pickle.dumps({b"data": _Rot13()}, protocol=2)
    assert b"_codecs" in payload
    with pytest.raises(DataError, match="refusing _codecs.encode with encoding 'rot13'"):
        unpickle(payload, "evil")


def make_folder(root, size=(8, 8), names=("a", "b")):
    for split in ("train", "test"):
        for name in names:
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", size).save(root / split / name / "0.png")
    return root


def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 is then over twice the limit
    with pytest.raises(DataError, match="image too large to decode safely"):
        read_image_folder(root)


def test_escape_sequences_in_class_names_are_shown_escaped(tmp_path):
    root = make_folder(tmp_path / "imgs", names=("cat\x1b[31m", "dog"))
    splits = read_image_folder(root)
    assert splits.class_names == ["cat\\x1b[31m", "dog"]


@pytest.mark.slow
def test_evaluate_json_into_a_closed_pipe_and_a_corrupt_model(tmp_path, cifar10_dir):
    runs = tmp_path / "runs"
    done = cli("run", str(DEFAULT_RECIPE), "--set", f"data.path={cifar10_dir}",
               "--set", "train.epochs=1", "--set", "model.filters=[4, 8]",
               "--set", "model.dropout=[0.1, 0.1]", "--set", "model.dense_units=8",
               "--output", str(runs))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = runs.iterdir()
    piped = subprocess.run(f"{sys.executable} -m cifarkit evaluate --json {run_dir} | head -1",
                           shell=True, capture_output=True, text=True, timeout=300)
    assert piped.stdout.strip() == "{" and "Traceback" not in piped.stderr, piped.stderr[-2000:]
    model = run_dir / "model.keras"
    model.write_bytes(model.read_bytes()[:100])
    one_line_error(cli("evaluate", str(run_dir)),
                   f"{model}: not a Keras model file (damaged or truncated")
    json.loads((run_dir / "summary.json").read_text())  # untouched


def test_a_key_made_by_set_is_blamed_on_the_set(registry):
    with pytest.raises(RecipeError, match=r"^--set a\.b\.c\.d=1: a: unknown key"):
        load_recipe(DEFAULT_RECIPE, ["a.b.c.d=1"], registry)


def test_a_missing_dataset_parameter_is_blamed_on_the_recipe_that_chose_it(tmp_path, registry):
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "default"\n[data]\ndataset = "image_folder"\n')
    with pytest.raises(RecipeError, match=rf"^{mine}: data.dataset: dataset plugin 'image_folder' "
                                          r"needs parameter 'path'"):
        load_recipe(mine, registry=registry)


def test_optional_types_say_how_to_leave_them_unset(registry):
    with pytest.raises(RecipeError, match=r"expected int >= 1, or leave it unset, got string"):
        load_recipe(DEFAULT_RECIPE, ["data.limit=\"ten\""], registry)


def test_a_misspelt_load_plugins_name_is_reported():
    result = cifarkit("list-plugins", "--json", env={"CIFARKIT_LOAD_PLUGINS": "cifarkit-tutorail"})
    broken = json.loads(result.stdout)["broken"]
    assert any(b["source"] == "CIFARKIT_LOAD_PLUGINS" and "'cifarkit-tutorail'" in b["error"]
               for b in broken), broken


def test_list_plugins_shows_both_sides_of_a_clash_and_never_cuts_a_name(tmp_path):
    plugin = write_plugin(tmp_path / "shadow.py", "register_optimizers", """
def adamw(learning_rate, a_very_long_parameter_name_indeed: int = 1234567):
    \"\"\"My AdamW.\"\"\"
""")
    result = cifarkit("list-plugins", "--plugin", str(plugin), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("adamw (clash)") == 2
    assert "a_very_long_parameter_name_indeed=1234567" in result.stdout
    assert f"two optimizer plugins are named 'adamw': built-in and {plugin}" in result.stdout


def test_new_plugin_refuses_a_name_that_exists(tmp_path):
    one_line_error(cifarkit("new-plugin", "adamw", "--kind", "optimizer", "--dir", str(tmp_path)),
                   "an optimizer plugin named 'adamw' already exists (built-in)")
    assert not list(tmp_path.iterdir())


def test_a_slow_plugin_import_gets_a_hint(tmp_path):
    plugin = tmp_path / "slow_import.py"
    plugin.write_text("import time\ntime.sleep(1.2)\n")
    result = cifarkit("list-plugins", "--plugin", str(plugin))
    assert "slow" in result.stdout and "import heavy libraries" in result.stdout


def test_run_help_lists_the_run_directory_and_a_working_example():
    result = cifarkit("run", "--help")
    for name in ("timing.csv", "confusion_matrix.png", "augmentation.0.rotation"):
        assert name in result.stdout


CROP = """
def crop(seed: int | None = None):
    \"\"\"Crops.\"\"\"
    import keras
    return keras.layers.CenterCrop(24, 24)
"""
MNIST_MLP = """
def mnist_mlp(input_shape, num_classes):
    \"\"\"Built for 28x28.\"\"\"
    import keras
    return keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes, activation="softmax")])
"""


@pytest.mark.parametrize("hook, source, choose, expected", [
    ("register_augmentations", CROP, 'augmentation=[{plugin = "crop"}]',
     "augmentation[0]: augmentation 'crop' turns images of shape (32, 32, 3) into (24, 24, 3)"),
    ("register_models", MNIST_MLP, "model.plugin=mnist_mlp",
     "model: model 'mnist_mlp' does not take the data's images of shape (32, 32, 3) "
     "(it takes (28, 28, 3))"),
])
def test_a_plugin_that_does_not_fit_the_images_is_named(tmp_path, cifar10_dir, hook, source,
                                                        choose, expected):
    plugin = write_plugin(tmp_path / "plugin.py", hook, source)
    result = cli("run", str(DEFAULT_RECIPE), "--plugin", str(plugin),
                 "--set", f"data.path={cifar10_dir}", "--set", choose,
                 "--output", str(tmp_path / "runs"))
    one_line_error(result, expected)
    assert not (tmp_path / "runs").exists()


def test_the_best_epoch_is_the_one_early_stopping_chose():
    pytest.importorskip("keras")
    from cifarkit_plugins._callbacks import EarlyStopping, ReduceLROnPlateau  # noqa: F401
    from cifarkit.runs.loop import best_epoch

    es = EarlyStopping(monitor="val_loss", min_delta=0.5)
    es.best, es.best_epoch = 1.0, 0  # epoch 2's 0.9 did not beat 1.0 by min_delta
    rows = [{"epoch": 1, "val_loss": 1.0}, {"epoch": 2, "val_loss": 0.9}]
    assert best_epoch(rows, [es]) == ("val_loss", 1, 1.0)
    assert best_epoch(rows, []) == ("val_loss", 2, 0.9)  # no early stopping: the lowest


def test_markup_in_class_names_is_printed_as_text():
    from rich.console import Console

    from cifarkit.cli.reporter import render_evaluation

    console = Console(record=True, width=120, color_system=None)
    names = ["[bold]cat[/]", "dog"]
    result = {"accuracy": 0.5, "loss": 1.0, "examples": 2,
              "per_class_accuracy": {"[bold]cat[/]": 1.0, "dog": 0.0},
              "confusion_matrix": [[1, 0], [1, 0]]}
    render_evaluation(console, result, names, "run on [red]data[/]")
    text = console.export_text()
    assert "[bold]cat[/]" in text and "run on [red]data[/]" in text


def test_escape_sequences_in_a_plugin_error_reach_the_terminal_escaped(tmp_path, cifar10_dir):
    plugin = write_plugin(tmp_path / "loud.py", "register_augmentations", """
def loud(seed: int | None = None):
    \"\"\"Refuses, colourfully.\"\"\"
    raise cifarkit.PluginError("bad \\x1b[31mvalue\\x1b[0m\\rover")
""")
    result = cli("run", str(DEFAULT_RECIPE), "--plugin", str(plugin),
                 "--set", f"data.path={cifar10_dir}", "--set", 'augmentation=[{plugin = "loud"}]',
                 "--output", str(tmp_path / "runs"))
    one_line_error(result, "bad \\x1b[31mvalue\\x1b[0m\\rover")
    assert "\x1b" not in result.stderr and "\r" not in result.stderr


def test_counts_are_spelt_right():
    from cifarkit.errors import plural

    assert (plural(1, "epoch"), plural(2, "epoch"), plural(0, "block")) == ("1 epoch", "2 epochs",
                                                                          "0 blocks")
