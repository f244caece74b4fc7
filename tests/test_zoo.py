"""The CIFAR model zoo (plugins/zoo.py) and every other built-in model: the papers'
parameter counts, and every built-in model that no shipped recipe uses trains and
exports (a model plugin added to plugins/ joins without anyone editing this file; the
recipes' models go through every command in tests/test_matrix.py)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import ROOT, TINY_MODEL, builtin_registry, cli

pytestmark = pytest.mark.slow  # builds and trains models


def _models_outside_the_matrix():
    """The built-in models no shipped recipe uses (those go through every command in
    tests/test_matrix.py)."""
    import tomllib

    registry = builtin_registry()
    used = {tomllib.loads(p.read_text()).get("model", {}).get("plugin")
            for p in (ROOT / "recipes").glob("*.toml")}
    return sorted(set(registry.names("model")) - used - set(SAME_CODE))


#: Models whose code another trained and exported model runs with other sizes:
#: resnet56 is resnet20's network with 9 blocks a stage (resnet20 is a shipped
#: recipe's model), preact_resnet18 is made of wide_resnet's pre-activation blocks.
#: Both are built below (preact_resnet18 on JAX too).
SAME_CODE = {"resnet56": "resnet20", "preact_resnet18": "wide_resnet"}


#: How a model is made small enough for a CPU test; a model not named here trains as is.
SMALL = {"seed_cnn": TINY_MODEL, "airbench": ["model.widths=[8, 16, 16]"],
         "wide_resnet": ["model.depth=10", "model.width=1"]}


@pytest.mark.parametrize("model, sets, millions", [
    ("resnet20", [], 0.27), ("resnet56", [], 0.85), ("preact_resnet18", [], 11.17),
    ("wide_resnet", ["model.depth=16", "model.width=8"], 11.0),
    ("wide_resnet", [], 36.5),  # WRN-28-10, the default
])
def test_cifarkit_show_gives_the_papers_parameter_counts(model, sets, millions):
    args = [a for s in [f"model.plugin={model}", *sets] for a in ("--set", s)]
    shown = cli("show", "default", *args, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    trainable = json.loads(shown.stdout)["trainable_parameters"]
    digits = len(str(millions).split(".")[1])
    assert round(trainable / 1e6, digits) == millions
    text = cli("show", "default", *args)
    assert f"{trainable / 1e6:.2f}M" in text.stdout


@pytest.mark.parametrize("model", _models_outside_the_matrix())
def test_every_other_model_trains_and_exports(model, tmp_path, cifar10_dir):
    sets = [f"data.path={cifar10_dir}", "data.batch_size=16", "train.steps_per_epoch=2",
            "train.epochs=1", f"model.plugin={model}", *SMALL.get(model, [])]
    done = cli("run", "default", *[a for s in sets for a in ("--set", s)], "--output",
               str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    exported = cli("export", str(run_dir), "--format", "onnx", "--json")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout)["checked"]["max_abs_difference"] <= 1e-4


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="the jax extra")
def test_the_zoo_builds_and_predicts_on_jax(tmp_path):
    """Each zoo network on JAX (resnet56 is resnet20's code; on TensorFlow the show
    test above builds each, and the matrix and the test above train them)."""
    code = """
import numpy as np, keras
from cifarkit_plugins import zoo
sample = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
for name, kwargs in [("resnet20", {}), ("preact_resnet18", {}),
                     ("wide_resnet", {"depth": 10, "width": 2, "dropout": 0.3})]:
    model = getattr(zoo, name)((32, 32, 3), 10, sample, **kwargs)
    out = np.asarray(model.predict(sample.astype("float32"), verbose=0))
    assert out.shape == (8, 10) and np.allclose(out.sum(axis=1), 1, atol=1e-4), name
    print(name, keras.backend.backend())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600,
                          env={"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["resnet20", "jax", "preact_resnet18", "jax",
                                   "wide_resnet", "jax"]
