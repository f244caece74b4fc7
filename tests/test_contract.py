"""The plugin contract: one place per kind, one check of what a factory returns,
pluggy's own validation turned into one-line errors, and the recipe schema."""

import dataclasses
import importlib.util
import sys
import types

import pytest

import cifarkit
from cifarkit.errors import PluginError
from cifarkit.core.hookspecs import DATA_KEYS, KINDS
from cifarkit.core.recipe import DataConfig, PluginCall, Recipe, TrainConfig, load_recipe
from cifarkit.core.registry import Registry
from cifarkit.cli.scaffold import KIND_CHOICES, plugin_files
from conftest import DEFAULT_RECIPE, write_plugin
from conftest import cifarkit as run_cli

HOOK_OF = {kind.name: kind.hook for kind in KINDS.values()}


def registry_with(kind: str, factory, name: str = "odd") -> Registry:
    """cifarkit's built-ins plus one plugin of ``kind`` made from ``factory``."""
    registry = Registry()
    registry.load_entrypoints(only="")
    module = types.ModuleType(f"plugin_{kind}")

    def hook(register):
        register(factory, name)

    hook.__name__ = HOOK_OF[kind]
    setattr(module, HOOK_OF[kind], cifarkit.hookimpl(hook))
    registry.register(module, "test-plugin 1.0")
    return registry


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("result", [None, "adam", 42])
def test_a_factory_that_returns_the_wrong_thing_is_one_line(kind, result):
    def odd():
        """Returns what it should not."""
        return result

    registry = registry_with(kind, odd)
    call = PluginCall(kind, "odd", {}, "somewhere", "my.toml")
    with pytest.raises(PluginError) as info:
        registry.call(call)
    message = str(info.value)
    assert message.startswith(f"my.toml: somewhere: {kind} plugin 'odd' (test-plugin 1.0) returned "
                              f"{type(result).__name__} ")
    assert message.endswith(f"not {KINDS[kind].returns}") and "\n" not in message


def test_an_optimizer_named_by_a_string_is_refused_end_to_end(tmp_path, cifar10_dir):
    plugin = write_plugin(tmp_path / "opt.py", "register_optimizers", """
def lazy_adam(learning_rate):
    \"\"\"Adam by name.\"\"\"
    return "adam"
""")
    out = tmp_path / "runs"
    result = run_cli("run", str(DEFAULT_RECIPE), "--plugin", str(plugin), "--output", str(out),
                     "--set", f"data.path={cifar10_dir}", "--set", "train.optimizer=lazy_adam")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert (f"train.optimizer: optimizer plugin 'lazy_adam' ({plugin}) returned str 'adam', "
            "not a keras.optimizers.Optimizer") in result.stderr
    assert not out.exists()


def write_module(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


WRONG_SIGNATURE = ("import cifarkit\n\n"
                   "@cifarkit.hookimpl\n"
                   "def register_models(register, extra):\n"
                   "    pass\n")


def test_a_hook_of_the_wrong_signature_in_a_package_is_recorded_as_broken(tmp_path):
    _, module = write_module(tmp_path, "wrong_sig", WRONG_SIGNATURE)
    registry = Registry()
    registry.load_entrypoints(only="")
    registry.register(module, "cifarkit-wrong 0.1")
    (broken,) = registry.broken
    assert broken.source == "cifarkit-wrong 0.1"
    assert broken.error.startswith("hook register_models does not match its specification: ")
    assert "extra" in broken.error and "\n" not in broken.error
    assert "seed_cnn" in registry.names("model")  # the others still work


def test_a_hook_of_the_wrong_signature_in_a_local_file_is_one_line(tmp_path, cifar10_dir):
    path, _ = write_module(tmp_path, "wrong_sig_file", WRONG_SIGNATURE)
    result = run_cli("run", str(DEFAULT_RECIPE), "--plugin", str(path),
                     "--set", f"data.path={cifar10_dir}", "--output", str(tmp_path / "runs"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"cifarkit: error: {path}: hook register_models does not match")
    listed = run_cli("list-plugins", "--plugin", str(path))
    assert listed.returncode == 2 and listed.stderr.count("\n") == 1


def test_unknown_hook_is_refused_with_a_suggestion(tmp_path):
    _, module = write_module(tmp_path, "typo_hook", "import cifarkit\n\n@cifarkit.hookimpl\n"
                                                    "def register_modles(register):\n    pass\n")
    registry = Registry()
    registry.register(module, "typo")
    assert registry.broken[0].error.startswith(
        "unknown hook 'register_modles'; did you mean 'register_models'?")


def test_hookimpl_specname_is_a_known_hook(tmp_path):
    _, module = write_module(tmp_path, "specname_hook", (
        "import cifarkit\n\n"
        "def tiny(input_shape, num_classes):\n    \"\"\"A model.\"\"\"\n\n"
        "@cifarkit.hookimpl(specname='register_models')\n"
        "def add_my_models(register):\n    register(tiny)\n"))
    registry = Registry()
    registry.register(module, "specname")
    assert registry.broken == [] and registry.names("model") == ["tiny"]


@pytest.mark.parametrize("reserved", sorted(DATA_KEYS - {"dataset"}))
def test_a_dataset_plugin_may_not_declare_the_data_tables_own_keys(reserved):
    namespace: dict = {}
    exec(f"def greedy(path: str = 'x', {reserved}: int = 1):\n    '''A dataset.'''\n", namespace)
    registry = registry_with("dataset", namespace["greedy"], "greedy")
    assert "greedy" not in registry.names("dataset")
    (broken,) = registry.broken
    assert f"declares parameter(s) {reserved}, reserved" in broken.error


def test_the_data_tables_keys_are_the_reserved_dataset_names():
    assert {f.name for f in dataclasses.fields(DataConfig)} == DATA_KEYS


def test_every_schema_field_is_in_the_resolved_recipe(registry):
    recipe = load_recipe(DEFAULT_RECIPE, ["data.limit=10", "train.steps_per_epoch=3",
                                          "data.path=/data/cifar", "train.init_from=/runs/x",
                                          "train.ema_momentum=0.99"], registry)
    assert "backend" not in recipe.resolved()["train"]  # unset until a run chooses one
    resolved = recipe.with_backend("jax").resolved()  # as a run directory's recipe.toml
    keys = {f.name for f in dataclasses.fields(Recipe) if f.metadata.get("key", True)}
    assert set(resolved) == keys
    assert set(resolved["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(resolved["data"]) == DATA_KEYS | {"path"}  # the cifar10 plugin's parameter


@pytest.mark.parametrize("kind", KIND_CHOICES)
def test_scaffold_templates_render_to_importable_plugins(kind, tmp_path):
    files = plugin_files(f"my_{kind}", kind)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    registry = Registry()
    registry.load_file(tmp_path / f"cifarkit_my_{kind}" / "__init__.py")
    info = registry.get(kind, f"my_{kind}")
    assert info.summary and registry.broken == []
    compile(files["tests/test_plugin.py"], "test_plugin.py", "exec")
    assert f'name = "cifarkit-my-{kind}"' in files["pyproject.toml"]
    assert sys.modules.get("cifarkit_my_" + kind) is None  # the file import stays private


def test_steps_per_execution_reaches_keras(registry):
    keras = pytest.importorskip("keras")
    from cifarkit.core.recipe import load_recipe
    from cifarkit.runs.build import compile_model

    from conftest import DEFAULT_RECIPE

    recipe = load_recipe(DEFAULT_RECIPE, ["train.steps_per_execution=8"], registry)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    compile_model(model, recipe, registry, 1e-3)
    assert model.steps_per_execution == 8
