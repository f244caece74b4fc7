"""The contract matrix: every recipe in recipes/ through every command, on both backends,
on tiny data. A recipe added to recipes/ joins it without anyone editing this file
(a model plugin this file does not know how to shrink trains at its default size).

Per recipe and backend: a run interrupted at its first step (tests/stop_at.py), its
resume, the completed run trained on with more epochs, evaluate and predict (on the
backend that trained it), export to ONNX and to SavedModel (each checked by its
runtime before it is written), show, runs and compare. TensorFlow's commands run in
this process (conftest.cli); JAX's training and inference commands together in one new
process (conftest.cli_session: Keras picks its backend once per process), without
test-time augmentation (each view is a compilation of its own). Every recipe sweeps
on TensorFlow; tests/test_history.py's sweeps run on JAX (a sweep passes --backend on
to its trials, each a process of its own).
"""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY_MODEL, cli, commands_on, metrics, stop_at, summary

pytestmark = pytest.mark.slow

RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.toml"))
BACKENDS = ["tensorflow"] + (["jax"] if importlib.util.find_spec("jax") else [])
#: How each built-in model is made small for the matrix; others keep their defaults.
SHRINK = {"seed_cnn": TINY_MODEL, "airbench": ["model.widths=[8, 16, 16]"]}


def recipe_sets(recipe: str, data, trained_run, registry) -> list[str]:
    """``--set`` values that make ``recipe`` tiny: the tiny dataset, 2 steps of batch 16,
    one epoch, a small model; a recipe that starts from other weights starts from the
    session's trained run."""
    from cifarkit.core.recipe import load_recipe

    loaded = load_recipe(ROOT / "recipes" / f"{recipe}.toml", registry=registry)
    sets = [f"data.path={data}", "data.batch_size=16", "train.steps_per_epoch=2",
            "train.epochs=1", *SHRINK.get(loaded.model.plugin, [])]
    if loaded.train.init_from is not None or loaded.train.freeze:
        sets.append(f"train.init_from={trained_run}")
    return sets


def as_args(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_through_every_command(recipe, backend, tmp_path, cifar10_dir,
                                            trained_run, registry):
    sets = recipe_sets(recipe, cifar10_dir, trained_run, registry)
    if backend == "jax":  # test-time augmentation's views cost a JAX compilation each
        sets.append("train.tta=none")
    runs = tmp_path / "runs"
    run_dir = f"{{only:{runs}}}"
    image = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    extra, env = stop_at(1, 1, "int")
    stopped, resumed, more, evaluated, predicted = commands_on(backend, [
        # run, interrupted at its first step: exit 130, resumable
        (["run", recipe, *as_args(sets), "--backend", backend, "--output", runs, *extra], env),
        (["run", "--resume", run_dir], None),  # resume of an interrupted run
        # resume of a completed run with more epochs
        (["run", "--resume", run_dir, "--set", "train.epochs=2"], None),
        # evaluate (on the backend that trained it) and predict
        (["evaluate", run_dir, "--json"], None),
        (["predict", run_dir, image, "--json"], None),
    ])
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted after 0 completed epoch(s)" in " ".join(stopped.stdout.split())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert more.returncode == 0, more.stderr[-3000:]
    (run_dir,) = runs.iterdir()
    s = summary(run_dir)
    assert s["status"] == "completed" and s["epochs_run"] == 2 and s["backend"] == backend
    assert [r["epoch"] for r in metrics(run_dir)] == ["1", "2"]
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(s["test_accuracy"],
                                                                     abs=1e-6)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert json.loads(predicted.stdout)[0]["predictions"]
    # export, each checked by the runtime a user deploys with before it is written
    for fmt, name in (("onnx", "model.onnx"), ("saved_model", "saved_model")):
        exported = cli("export", str(run_dir), "--format", fmt)
        assert exported.returncode == 0, exported.stderr[-3000:]
        described = json.loads((run_dir / "export" / f"{name.split('.')[0]}.json").read_text())
        assert described["checked"]["max_abs_difference"] <= 1e-4
        assert described["trained_on"] == backend
    # show, runs, compare
    shown = cli("show", recipe, *as_args(sets), "--backend", backend, "--no-model")
    assert shown.returncode == 0, shown.stderr[-3000:]
    listed = cli("runs", str(runs), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["status"] == "completed"
    compared = cli("compare", str(run_dir), str(trained_run), "--plot", str(tmp_path / "c.png"))
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("recipe, backend", [(r, "tensorflow") for r in RECIPES])
def test_every_recipe_sweeps(recipe, backend, tmp_path, cifar10_dir, trained_run, registry):
    """The sweep itself runs here (it starts no Keras); its trial is a process of its own,
    a ``cifarkit run`` given the sweep's ``--backend``. Every recipe sweeps on
    TensorFlow; test_history.py's grid and search sweeps run on JAX (and every recipe's
    JAX run is the test above)."""
    sets = recipe_sets(recipe, cifar10_dir, trained_run, registry)
    if backend == "jax":
        sets.append("train.tta=none")
    done = cli("sweep", recipe, *as_args(sets), "--backend", backend, "--grid",
                    "seed=7", "-o", str(tmp_path / "runs"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads(done.stdout)
    assert [t["status"] for t in table["trials"]] == ["completed"]


def test_a_combination_that_is_not_meaningful_is_refused_in_one_line(tmp_path, cifar10_dir,
                                                                    trained_run, registry):
    """finetune freezes layers of the seed CNN: with another model they do not exist."""
    sets = recipe_sets("finetune", cifar10_dir, trained_run, registry)
    refused = cli("run", "finetune", *as_args(sets), "--set", "model.plugin=airbench",
                  "--set", "model.widths=[8, 16, 16]", "--output", str(tmp_path / "runs"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
