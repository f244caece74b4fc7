"""pytest fixtures for plugin authors, shipped through the ``pytest11`` entry point.

Installing cifarkit makes these fixtures available in every test session:

``cifarkit_registry``
    An isolated plugin registry: cifarkit's built-ins plus the plugins under
    test, and nothing else installed in the environment. The plugins under
    test are named by the ``cifarkit_plugins`` ini option (module names or
    ``.py`` paths relative to the rootdir) and by the
    ``@pytest.mark.cifarkit_plugins(...)`` marker.
``tiny_cifar10``
    A ``cifar-10-batches-py`` folder with 100 training and 40 test images in
    the real CIFAR-10 file format (session-scoped, read-only by convention).
``make_recipe``
    ``make_recipe(overrides=None, *, name="test") -> Path``: writes a recipe
    that extends cifarkit's default recipe, shrunk for smoke tests (the tiny
    dataset, a small ``seed_cnn``, batch 16, one epoch, ``one_device``),
    with ``overrides`` (a dict shaped like the TOML) merged on top by the
    same rules as ``extends``.
``run_recipe``
    ``run_recipe(recipe, *sets) -> RunResult``: validates and trains the
    recipe in-process against ``cifarkit_registry``, quietly, into a
    temporary output folder; returns ``.run_dir`` and ``.summary``.
"""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import pytest

SMOKE = {
    "data": {"batch_size": 16, "validation_split": 0.2},
    "model": {"plugin": "seed_cnn", "filters": [4, 8], "dropout": [0.1, 0.1], "dense_units": 8},
    "strategy": {"plugin": "one_device"},
    "train": {"epochs": 1},
}


def pytest_addoption(parser):
    parser.addini("cifarkit_plugins", type="linelist", default=[],
                  help="cifarkit plugins under test: module names or .py paths (rootdir-relative)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cifarkit_plugins(*modules): extra cifarkit plugins for cifarkit_registry")


def _register(registry, ref: str, rootdir: Path) -> None:
    if ref.endswith(".py"):
        path = Path(ref)
        registry.load_file(path if path.is_absolute() else rootdir / path)
        return
    module = importlib.import_module(ref)
    registry.register(module, f"{ref} (under test)", name=f"under-test:{ref}")


@pytest.fixture
def cifarkit_registry(request):
    """cifarkit's built-ins plus the plugins under test; nothing else from the environment."""
    from cifarkit.registry import Registry

    registry = Registry()
    registry.load_entrypoints(only="")  # built-ins only
    refs = list(request.config.getini("cifarkit_plugins"))
    for marker in request.node.iter_markers("cifarkit_plugins"):
        refs.extend(marker.args)
    for ref in refs:
        _register(registry, str(ref), Path(request.config.rootpath))
    return registry


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory) -> Path:
    """A tiny ``cifar-10-batches-py`` folder (100 train, 40 test images)."""
    from cifarkit.testing import write_cifar10

    return write_cifar10(tmp_path_factory.mktemp("cifarkit-data"), n_train=100, n_test=40)


@pytest.fixture
def make_recipe(tmp_path, tiny_cifar10):
    """Factory: a smoke-sized recipe extending the default recipe, as a file."""
    import tomli_w

    from cifarkit.recipe import builtin_recipes, merge_tables

    default = builtin_recipes()["default"]
    counter = iter(range(1, 10_000))

    def make(overrides: dict | None = None, *, name: str = "test") -> Path:
        overrides = overrides or {}
        smoke = {**SMOKE, "data": dict(SMOKE["data"])}
        if overrides.get("data", {}).get("dataset", "cifar10") == "cifar10":
            smoke["data"]["path"] = str(tiny_cifar10)
        doc = merge_tables({"extends": str(default), "name": name, **smoke}, overrides)
        path = tmp_path / f"recipe-{next(counter)}.toml"
        path.write_text(tomli_w.dumps(doc))
        return path

    return make


@pytest.fixture
def run_recipe(tmp_path, cifarkit_registry):
    """Helper: train a recipe in-process for a few steps; returns a RunResult."""
    def run(recipe: str | Path, *sets: str, registry=None):
        from rich.console import Console

        from cifarkit.recipe import load_recipe
        from cifarkit.reporter import Reporter
        from cifarkit.runner import run as run_training

        registry = registry or cifarkit_registry
        loaded = load_recipe(recipe, list(sets), registry)
        reporter = Reporter(Console(file=io.StringIO(), width=120))
        return run_training(loaded, registry, tmp_path / "runs", reporter)

    return run
