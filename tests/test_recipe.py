"""Recipe loading: extends, --set, validation errors (no TensorFlow needed)."""

import tomllib
from pathlib import Path

import pytest

from cifarkit.errors import PluginError, RecipeError
from cifarkit.core.document import parse_value
from cifarkit.core.recipe import load_recipe
from conftest import DEFAULT_RECIPE

# The default recipe with the seed's augmentation as three separate plugins.
THREE_AUGMENTATIONS = f"""
extends = "{DEFAULT_RECIPE}"
[[augmentation]]
plugin = "random_rotation"
degrees = 15.0
[[augmentation]]
plugin = "random_translation"
[[augmentation]]
plugin = "random_flip"
mode = "horizontal"
"""


@pytest.fixture
def three(write):
    return write("three.toml", THREE_AUGMENTATIONS)


def test_default_recipe_is_the_seed_setup(registry):
    r = load_recipe(DEFAULT_RECIPE, registry=registry)
    assert r.name == "default"
    assert r.data.dataset.plugin == "cifar10"
    assert r.data.validation_split == 0.1 and r.data.batch_size == 64
    assert [a.plugin for a in r.augmentation] == ["random_affine"]
    assert r.augmentation[0].params == {
        "rotation": 15.0, "width_shift": 0.1, "height_shift": 0.1, "horizontal_flip": True,
        "fill_mode": "nearest", "interpolation": "bilinear"}
    assert r.model.plugin == "seed_cnn"
    assert r.strategy.plugin == "mirrored"
    assert (r.train.epochs, r.train.optimizer.plugin, r.train.learning_rate) == (50, "adam", 1e-3)
    assert r.train.loss == "categorical_crossentropy" and r.train.metrics == ("accuracy",)
    (es,) = r.callbacks
    assert es.plugin == "early_stopping"
    assert es.params["monitor"] == "val_loss" and es.params["patience"] == 10


def test_set_overrides_parse_toml_values(registry, three):
    r = load_recipe(three, ["data.limit=512", "train.epochs=1", "data.path=/x/y",
                                     "augmentation.0.degrees=5", "callbacks.early_stopping.patience=3",
                                     "augmentation[2].mode=vertical", "model.filters=[8, 16, 32]"],
                    registry=registry)
    assert r.data.limit == 512 and r.train.epochs == 1
    assert r.data.dataset.params["path"] == Path("/x/y")
    assert r.augmentation[0].params["degrees"] == 5.0
    assert r.callbacks[0].params["patience"] == 3
    assert r.augmentation[2].params["mode"] == "vertical"
    assert r.model.params["filters"] == [8, 16, 32]


def test_set_plugin_to_another_starts_afresh(registry, three):
    r = load_recipe(three, ["strategy.plugin=one_device", "strategy.device=/cpu:0",
                                     "augmentation.2.plugin=random_rotation"], registry=registry)
    assert r.strategy.params == {"device": "/cpu:0"}
    assert r.augmentation[2].params["degrees"] == 15.0 and "mode" not in r.augmentation[2].params
    same = load_recipe(DEFAULT_RECIPE, ["model.dense_units=8", "model.plugin=seed_cnn"], registry=registry)
    assert same.model.params["dense_units"] == 8


@pytest.mark.parametrize("text, value", [("1", 1), ("0.5", 0.5), ("true", True), ("[1, 2]", [1, 2]),
                                         ('"quoted"', "quoted"), ("plain/path", "plain/path"),
                                         ("adam", "adam")])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_extends_overrides_key_by_key(write, registry):
    write("base.toml", DEFAULT_RECIPE.read_text())
    child = write("variants/child.toml", """
        extends = "../base.toml"
        name = "child"
        [train]
        epochs = 3
        [model]
        dense_units = 32
    """)
    r = load_recipe(child, registry=registry)
    assert r.name == "child"
    assert r.train.epochs == 3 and r.train.learning_rate == 1e-3  # the rest is inherited
    assert r.model.params["dense_units"] == 32 and r.model.params["filters"] == [64, 128, 256]
    assert len(r.augmentation) == 1


def test_extends_with_other_plugin_replaces_the_table(write, registry):
    write("base.toml", '[model]\nplugin = "seed_cnn"\ndense_units = 32\n')
    child = write("child.toml", 'extends = "base.toml"\n[strategy]\nplugin = "one_device"\n'
                                '[model]\nplugin = "seed_cnn"\n')
    assert load_recipe(child, registry=registry).model.params["dense_units"] == 32
    write("base2.toml", '[strategy]\nplugin = "mirrored"\ncross_device_ops = "nccl"\n[model]\nplugin="seed_cnn"\n')
    child2 = write("child2.toml", 'extends = "base2.toml"\n[strategy]\nplugin = "one_device"\n')
    assert load_recipe(child2, registry=registry).strategy.params == {"device": "auto"}


def test_resolved_recipe_reproduces_itself(write, registry):
    r = load_recipe(DEFAULT_RECIPE, ["data.path=/data/c10", "train.epochs=2"], registry=registry)
    again = load_recipe(write("resolved.toml", r.dumps()), registry=registry)
    assert again.resolved() == r.resolved()
    assert "extends" not in tomllib.loads(r.dumps())


def one_line_error(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("body, expected", [
    ('[model]\nplugin = "seed_cn"\n', ["model.plugin", "unknown model plugin 'seed_cn'",
                                       "did you mean 'seed_cnn'"]),
    ('[model]\nplugin = "seed_cnn"\n[data]\nbatch_size = "64"\n',
     ["data.batch_size", "expected int", "string '64'"]),
    ('[model]\nplugin = "seed_cnn"\n[data]\nbatchsize = 64\n',
     ["data.batchsize", "did you mean 'batch_size'"]),
    ('[model]\nplugin = "seed_cnn"\n[train]\nepochs = 0\n', ["train.epochs", "out of range", "[1, 100000]"]),
    ('[model]\nplugin = "seed_cnn"\n[data]\nvalidation_split = 1.0\n', ["data.validation_split", "[0, 1)"]),
    ('[model]\nplugin = "seed_cnn"\ndense_unit = 3\n',
     ["model.dense_unit", "unknown parameter", "did you mean 'dense_units'"]),
    ('[model]\nplugin = "seed_cnn"\ndropout = [0.2, "x"]\n', ["model.dropout", "item 1"]),
    ('[model]\nplugin = "seed_cnn"\n[[augmentation]]\nplugin = "random_flip"\nmode = "diagonal"\n',
     ["augmentation[0].mode", "'horizontal'"]),
    ('[model]\nplugin = "seed_cnn"\n[train]\noptimizer = "adamm"\n',
     ["train.optimizer.plugin", "did you mean 'adam'"]),
    ('[model]\nplugin = "seed_cnn"\n[train]\nloss = "mse"\n', ["train.loss", "categorical_crossentropy"]),
    ('[model]\nplugin = "seed_cnn"\n[[callbacks]]\nplugin = "early_stopping"\npatience = -1\n',
     ["callbacks[0].patience", "out of range"]),
    ('[model]\nplugin = "seed_cnn"\nepochs = 3\n', ["model.epochs", "unknown parameter"]),
    ('epochs = 3\n[model]\nplugin = "seed_cnn"\n', ["epochs: unknown key"]),
    ('[data]\nbatch_size = 8\n', ["missing [model]", "seed_cnn"]),
    ('name = "a b"\n[model]\nplugin = "seed_cnn"\n', ["name", "run-directory name"]),
    ('[model]\nplugin = "seed_cnn"\n[train]\nlabel_smoothing = 0.1\nloss = "sparse_categorical_crossentropy"\n',
     ["train.label_smoothing", "categorical_crossentropy"]),
    ('[model\nplugin = "seed_cnn"\n', ["TOML syntax error", "line 1"]),
    ('[model]\nplugin = "seed_cnn"\n[[callbacks]]\nplugin = "early_stopping"\nmonitor = "val_los"\n',
     ["callbacks[0].monitor", "did you mean 'val_loss'", "val_accuracy"]),
    ('[model]\nplugin = "seed_cnn"\n[data]\nvalidation_split = 0.0\n[[callbacks]]\nplugin = "early_stopping"\n',
     ["callbacks[0].monitor", "needs validation data", "validation_split is 0"]),
])
def test_recipe_errors_name_file_key_and_allowed(write, registry, body, expected):
    path = write("bad.toml", body)
    with pytest.raises((RecipeError, PluginError)) as exc_info:
        load_recipe(path, registry=registry)
    text = one_line_error(exc_info)
    assert text.startswith(str(path))
    for fragment in expected:
        assert fragment in text


def test_error_names_the_file_that_set_the_key(write, registry):
    parent = write("parent.toml", '[model]\nplugin = "seed_cnn"\ndense_units = "wide"\n')
    child = write("child.toml", 'extends = "parent.toml"\nseed = 3\n')
    with pytest.raises(RecipeError) as exc_info:
        load_recipe(child, registry=registry)
    assert one_line_error(exc_info).startswith(f"{parent}: model.dense_units")


def test_error_names_the_set_option(registry):
    with pytest.raises(RecipeError) as exc_info:
        load_recipe(DEFAULT_RECIPE, ["train.epochs=many"], registry=registry)
    assert one_line_error(exc_info).startswith("--set train.epochs=many: train.epochs: expected int")


@pytest.mark.parametrize("option, fragment", [
    ("epochs", "expected KEY=VALUE"),
    ("augmentation.7.degrees=1", "has 1 entry, no position 7"),
    ("callbacks.tensorboard.log_dir=x", "0 entries using plugin 'tensorboard'"),
    ("seed.x=1", "is not a table"),
])
def test_bad_set_options(registry, option, fragment):
    with pytest.raises(RecipeError) as exc_info:
        load_recipe(DEFAULT_RECIPE, [option], registry=registry)
    assert fragment in one_line_error(exc_info)


def test_set_appends_to_and_removes_from_arrays_of_tables(registry):
    recipe = load_recipe(DEFAULT_RECIPE, [
        'callbacks+=[{plugin="csv_logger"}, {plugin="reduce_lr_on_plateau", patience=2}]',
        'augmentation+={plugin="grayscale", probability=0.1}',
        "~callbacks.early_stopping"], registry=registry)
    assert [c.plugin for c in recipe.callbacks] == ["csv_logger", "reduce_lr_on_plateau"]
    assert recipe.callbacks[1].params["patience"] == 2
    assert [a.plugin for a in recipe.augmentation] == ["random_affine", "grayscale"]
    assert load_recipe(DEFAULT_RECIPE, ["~augmentation.0"], registry=registry).augmentation == ()
    # an entry that moved up keeps its origin: its error names the option that added it
    with pytest.raises(RecipeError) as exc_info:
        load_recipe(DEFAULT_RECIPE, ['callbacks+={plugin="csv_logger", separator=1}',
                                     "~callbacks.0"], registry=registry)
    assert one_line_error(exc_info).startswith(
        '--set callbacks+={plugin="csv_logger", separator=1}: callbacks[0].separator')


@pytest.mark.parametrize("option, fragment", [
    ("train.epochs+=3", "train.epochs is not an array; += appends to an array"),
    ("~callbacks.4", "callbacks has 1 entry, no position 4"),
    ("~train.nothing", "train.nothing is not in the recipe; nothing to remove"),
    ("~callbacks.mlflow", "0 entries using plugin 'mlflow'"),
    ('callbacks+={plugin="nope"}', "callbacks[1].plugin: unknown callback plugin 'nope'"),
])
def test_bad_appends_and_removals(registry, option, fragment):
    with pytest.raises((RecipeError, PluginError)) as exc_info:
        load_recipe(DEFAULT_RECIPE, [option], registry=registry)
    assert fragment in one_line_error(exc_info)


def test_unreadable_recipes(tmp_path, write, registry):
    for path, fragment in [(tmp_path / "missing.toml", "not found"), (tmp_path, "is a directory")]:
        with pytest.raises(RecipeError, match=fragment):
            load_recipe(path, registry=registry)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"name = \xff\xfe")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(binary, registry=registry)
    a = write("a.toml", 'extends = "b.toml"\n')
    write("b.toml", 'extends = "a.toml"\n')
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(a, registry=registry)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(write("c.toml", 'extends = "nope.toml"\n'), registry=registry)


def test_paths_resolve_relative_to_the_recipe_that_sets_them(write, registry):
    path = write("sub/r.toml", '[model]\nplugin = "seed_cnn"\n[data]\npath = "../data/c10"\n')
    r = load_recipe(path, registry=registry)
    assert r.data.dataset.params["path"] == (path.parent / "../data/c10").absolute()


def test_extends_a_shipped_recipe_by_name_from_any_folder(write, registry):
    child = write("elsewhere/variant.toml", 'extends = "default"\nname = "variant"\n[train]\nepochs = 2\n')
    r = load_recipe(child, registry=registry)
    assert (r.name, r.train.epochs, r.model.plugin, len(r.augmentation)) == ("variant", 2, "seed_cnn", 1)


def test_extends_cycles_are_found_by_resolved_path(tmp_path, registry):
    import os

    from cifarkit.errors import RecipeError

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "r.toml").write_text('extends = "../a/r.toml"\n')
    with pytest.raises(RecipeError, match=r"r.toml: extends: recipes extend each other in a cycle"):
        load_recipe(tmp_path / "a" / "r.toml", [], registry)
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    (tmp_path / "s.toml").write_text('extends = "loop1"\n')
    with pytest.raises(RecipeError, match=r"s.toml: extends: .*loop1 is a symlink loop"):
        load_recipe(tmp_path / "s.toml", [], registry)
    os.symlink(tmp_path / "a", tmp_path / "link")  # the same file through a symlinked folder
    (tmp_path / "a" / "r.toml").write_text(f'extends = "{tmp_path / "link" / "r.toml"}"\n')
    with pytest.raises(RecipeError, match=r"in a cycle"):
        load_recipe(tmp_path / "a" / "r.toml", [], registry)


def test_an_endless_extends_chain_is_one_line(tmp_path, registry):
    from cifarkit.errors import RecipeError

    for i in range(40):
        (tmp_path / f"r{i}.toml").write_text(f'extends = "r{i + 1}.toml"\n')
    with pytest.raises(RecipeError, match=r"extends: a chain of more than 32 recipes"):
        load_recipe(tmp_path / "r0.toml", [], registry)
