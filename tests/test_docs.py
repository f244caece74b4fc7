"""The code in the docs runs: extracted from the Markdown and used for real."""

import json
import re

import pytest

from conftest import ROOT, cifarkit, cli, tiny_overrides


def code_blocks(path, lang):
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


@pytest.fixture
def plugin_file(tmp_path):
    (python,) = code_blocks(ROOT / "docs" / "plugins.md", "python")
    path = tmp_path / "my_plugins.py"
    path.write_text(python)
    return path


def test_documented_plugin_file_lists_with_parameters(plugin_file):
    result = cifarkit("list-plugins", "--json", "--plugin", str(plugin_file))
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["tiny_cnn"]["source"] == str(plugin_file)
    assert [p["name"] for p in plugins["tiny_cnn"]["parameters"]] == ["width", "dropout"]
    assert plugins["random_contrast"]["kind"] == "augmentation"


@pytest.mark.slow
def test_documented_recipe_trains_with_the_documented_plugins(tmp_path, plugin_file, cifar10_dir):
    toml_blocks = code_blocks(ROOT / "docs" / "plugins.md", "toml")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(toml_blocks[0])  # as written: extends the shipped default recipe
    sets = [a for o in tiny_overrides(cifar10_dir) if not o.startswith("model.")
            for a in ("--set", o)]
    result = cli("run", str(recipe), *sets, "--output", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    resolved = (run_dir / "recipe.toml").read_text()
    assert 'plugin = "tiny_cnn"' in resolved and 'plugin = "random_contrast"' in resolved
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
