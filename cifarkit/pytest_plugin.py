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
    ``run_recipe(recipe, *sets, backend=None) -> RunInfo``: validates and
    trains the recipe in-process against ``cifarkit_registry``, quietly,
    into a temporary output folder; returns ``.run_dir`` and ``.summary``.
    With a ``backend`` other than the one Keras runs on in this process, the
    run happens in a ``cifarkit run --backend`` subprocess (Keras picks its
    backend once per process) with the built-ins and the plugins under test.
``cifarkit_backend``
    Parametrized over ``"tensorflow"`` and ``"jax"`` (skipped where that
    backend is not installed): a test that takes it runs once per backend;
    pass it on as ``run_recipe(..., backend=cifarkit_backend)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifarkit.backends import BACKENDS

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


def _under_test(request) -> list[str | Path]:
    """The plugins under test (ini option, then markers): module names, or ``.py``
    files as absolute paths (given relative to the rootdir)."""
    refs = [str(r) for r in request.config.getini("cifarkit_plugins")]
    for marker in request.node.iter_markers("cifarkit_plugins"):
        refs.extend(str(r) for r in marker.args)
    root = Path(request.config.rootpath)
    return [root / ref if ref.endswith(".py") else ref for ref in refs]  # root / absolute = absolute


@pytest.fixture
def cifarkit_registry(request):
    """cifarkit's built-ins plus the plugins under test; nothing else from the environment."""
    from cifarkit.core.registry import Registry

    registry = Registry()
    registry.load_entrypoints(only="")  # built-ins only
    for ref in _under_test(request):
        if isinstance(ref, Path):
            registry.load_file(ref)
        else:
            registry.register(importlib.import_module(ref), f"{ref} (under test)",
                              name=f"under-test:{ref}")
    return registry


@pytest.fixture
def cifarkit_cli(cifarkit_registry):
    """Helper: ``cifarkit_cli(*args)`` runs ``cifarkit ARGS`` in this process, with the
    commands of the plugins under test; returns a ``subprocess.CompletedProcess``
    (``returncode``, ``stdout``, ``stderr``)."""
    from cifarkit.testing import run_cli

    def run(*args: str, env: dict | None = None):
        return run_cli(*args, registry=cifarkit_registry, env=env)

    return run


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory) -> Path:
    """A tiny ``cifar-10-batches-py`` folder (100 train, 40 test images)."""
    from cifarkit.testing import write_cifar10

    return write_cifar10(tmp_path_factory.mktemp("cifarkit-data"), n_train=100, n_test=40)


@pytest.fixture
def make_recipe(tmp_path, tiny_cifar10):
    """Factory: a smoke-sized recipe extending the default recipe, as a file."""
    import tomli_w

    from cifarkit.core.document import merge_tables
    from cifarkit.core.recipe import builtin_recipes

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


@pytest.fixture(params=list(BACKENDS))
def cifarkit_backend(request) -> str:
    """Each Keras backend cifarkit runs on, where it is installed."""
    if importlib.util.find_spec(request.param) is None:
        pytest.skip(f"the {request.param} backend is not installed")
    return request.param


def _plugin_files(request) -> list[str]:
    """The plugins under test as ``--plugin`` files, for a subprocess."""
    return [str(ref) if isinstance(ref, Path) else importlib.import_module(ref).__file__
            for ref in _under_test(request)]


def _run_in_subprocess(recipe, sets, backend: str, output: Path, plugin_files: list[str]):
    from cifarkit.errors import CifarkitError
    from cifarkit.runs.info import RunInfo

    args = [sys.executable, "-m", "cifarkit", "run", str(recipe), "--backend", backend,
            "--output", str(output)]
    for item in sets:
        args += ["--set", item]
    for file in plugin_files:
        args += ["--plugin", file]
    env = {**os.environ, "CIFARKIT_LOAD_PLUGINS": "", "KERAS_BACKEND": backend}
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode == 2:  # a one-line user error, raised here as in-process
        raise CifarkitError(done.stderr.strip().removeprefix("cifarkit: error: "))
    if done.returncode != 0:
        raise AssertionError(f"cifarkit run --backend {backend} failed:\n{done.stderr[-4000:]}")
    (run_dir,) = [d for d in output.iterdir() if d.is_dir()]
    return RunInfo(run_dir, json.loads((run_dir / "summary.json").read_text()))


@pytest.fixture
def run_recipe(request, tmp_path, cifarkit_registry):
    """Helper: train a recipe for a few steps (in-process, or on another backend in a
    subprocess); returns a RunInfo."""
    def run(recipe: str | Path, *sets: str, registry=None, backend: str | None = None):
        from rich.console import Console

        from cifarkit import backends
        from cifarkit.core.recipe import load_recipe
        from cifarkit.cli.reporter import Reporter
        from cifarkit.runs.runner import run as run_training

        if backend is not None and backend != (backends.active() or backends.requested(None)):
            return _run_in_subprocess(recipe, sets, backend, tmp_path / f"runs-{backend}",
                                      _plugin_files(request))
        registry = registry or cifarkit_registry
        sets = (*sets, f"train.backend={backend}") if backend else sets
        loaded = load_recipe(recipe, list(sets), registry)
        reporter = Reporter(Console(file=io.StringIO(), width=120))
        return run_training(loaded, registry, tmp_path / "runs", reporter)

    return run
