"""A run directory is data: one another user's cifarkit made runs none of its code
and reads no data path of its choosing unless the user says so."""

import json
import os

import pytest

from conftest import cifarkit, cli, write_tiny_recipe

PLUGIN = '''\
import os
from pathlib import Path

import cifarkit

Path(os.environ["MARKER"]).write_text("ran")  # what an attacker's code would do


def noop():
    """A callback that does nothing."""
    import keras

    return keras.callbacks.Callback()


@cifarkit.hookimpl
def register_callbacks(register):
    register(noop)
'''


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cifar10_dir):
    """A finished one-epoch run whose recipe names a local plugin file."""
    root = tmp_path_factory.mktemp("trust")
    (root / "evil.py").write_text(PLUGIN)
    recipe = write_tiny_recipe(root / "r.toml", cifar10_dir, "r", 16,
                               '[[callbacks]]\nplugin = "noop"\n')
    recipe.write_text('plugins = ["evil.py"]\n' + recipe.read_text())  # before the tables
    env = {"MARKER": str(root / "marker-run"), "XDG_CONFIG_HOME": str(root / "me")}
    done = cli("run", str(recipe), "--set", "train.epochs=1", "--set",
               "train.steps_per_epoch=2", "--output", str(root / "runs"), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (root / "runs").iterdir()
    return root, run_dir


def _env(root, who, marker):
    return {"MARKER": str(root / marker), "XDG_CONFIG_HOME": str(root / who)}


@pytest.mark.slow
def test_a_foreign_run_directory_runs_none_of_its_plugin_files(finished, cifar10_dir):
    root, run_dir = finished
    assert (run_dir / ".signature").is_file()
    assert not (root / "them").exists()

    refused = cli("evaluate", str(run_dir), "--json", env=_env(root, "them", "m1"))
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert str(root / "evil.py") in line and "--trust-run" in line and "--plugin" in line
    assert not (root / "m1").exists()  # nothing ran

    resume = cli("run", "--resume", str(run_dir), env=_env(root, "them", "m2"))
    assert resume.returncode == 2 and "evil.py" in resume.stderr
    assert not (root / "m2").exists()

    # vouching for the file is not vouching for the data path the recipe chose
    data = cli("evaluate", str(run_dir), "--json", "--plugin", str(root / "evil.py"),
                    env=_env(root, "them", "m3"))
    assert data.returncode == 2 and "data.path" in data.stderr and "--data" in data.stderr
    both = cli("evaluate", str(run_dir), "--json", "--plugin", str(root / "evil.py"),
                    "--data", str(cifar10_dir), env=_env(root, "them", "m4"))
    assert both.returncode == 0, both.stderr[-2000:]
    assert json.loads(both.stdout)["accuracy"] >= 0

    trusted = cli("evaluate", str(run_dir), "--json", "--trust-run",
                       env=_env(root, "them", "m5"))
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert (root / "m5").read_text() == "ran"

    own = cli("evaluate", str(run_dir), "--json", env=_env(root, "me", "m6"))
    assert own.returncode == 0, own.stderr[-2000:]

    # predict reads no recipe at all: it runs nothing, whoever made the run
    from PIL import Image
    import numpy as np

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "x.png")
    pr = cli("predict", str(run_dir), str(root / "x.png"), env=_env(root, "them", "m7"))
    assert pr.returncode == 0, pr.stderr[-2000:]
    assert not (root / "m7").exists()


@pytest.mark.slow
def test_an_edited_plugins_extends_or_data_is_foreign_again(finished, tmp_path):
    root, run_dir = finished
    import shutil

    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    recipe = copy / "recipe.toml"
    recipe.write_text(f'extends = "{root / "r.toml"}"\n' + recipe.read_text())
    out = cifarkit("evaluate", str(copy), env=_env(root, "me", "m8"))
    assert out.returncode == 2 and "extends" in out.stderr and "--trust-run" in out.stderr
    assert not (root / "m8").exists()


def test_the_run_key_is_private_and_made_once(tmp_path, monkeypatch):
    from cifarkit.errors import OutputError
    from cifarkit.runs import manifest, trust
    from cifarkit.runs.snapshot import open_run

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    key = trust.run_key(create=True)
    assert trust.run_key(create=True) == key
    first = trust.recipe_digest(key, 'plugins = ["a.py"]\n')
    assert trust.recipe_digest(key, 'plugins = ["b.py"]\n') != first
    assert trust.recipe_digest(key, 'plugins = ["a.py"]\nseed = 3\n') == first  # a number
    assert (trust.key_path().stat().st_mode & 0o777) == 0o600
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.toml").write_text('plugins = ["a.py"]\n')
    (run / "summary.json").write_text('{"status": "completed"}')
    manifest.Manifest(run, key, {"recipe.toml": [first], "summary.json": [
        manifest.sha256(b'{"status": "completed"}')]}).flush()

    def own():
        with open_run(run) as snapshot:
            return snapshot.own

    assert own()
    (run / "recipe.toml").write_text('plugins = ["a.py"]\n[data]\npath = "/elsewhere"\n')
    assert not own()
    (run / "recipe.toml").write_text('plugins = ["a.py"]\n')
    (run / "summary.json").write_text('{"status": "completed" }')  # any other byte
    assert not own()
    (run / "summary.json").write_text('{"status": "completed"}')
    assert own()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other"))
    assert not own()
    os.mkfifo(run / "fifo")
    (run / ".signature").unlink()
    (run / ".signature").symlink_to(run / "fifo")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(OutputError, match="symbolic link"):
        own()  # a FIFO is not read (it would hang): one line
