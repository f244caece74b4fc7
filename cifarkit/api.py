"""cifarkit from Python, for notebooks and scripts: every command's operation as a function.

``train`` (``cifarkit run``), ``load_run`` and ``list_runs`` (``cifarkit runs``),
``evaluate``, ``predict``, ``export``, ``list_plugins`` and ``create_model`` (a
plain Keras model from any model plugin, as timm's ``create_model``). The
commands parse their arguments, call one of these and render what it returns.

A mistake in what they are given (a bad recipe key, a missing data path, a foreign
run directory, an argument of the wrong type) raises :class:`cifarkit.CifarkitError`
with the same one-line message the command prints. See docs/api.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from cifarkit.arguments import choice as _choice, path as _path, paths as _paths, strings as _strings
from cifarkit.errors import CifarkitError
from cifarkit.runs.info import RunInfo
from cifarkit.runs.report import Report

__all__ = ["RunInfo", "create_model", "evaluate", "export", "list_plugins", "load_run",
           "overfit", "predict", "smoke", "train"]

PathLike = str | os.PathLike


# -- training ------------------------------------------------------------------------

def train(recipe: PathLike | None = None, overrides: Sequence[str] = (),
          output: PathLike = "runs", *, plugins: Sequence[PathLike] = (),
          report: Report | None = None, resume: PathLike | None = None,
          trust_run: bool = False, run_dir: PathLike | None = None) -> RunInfo:
    """Train a recipe and evaluate it once on the test split, as ``cifarkit run`` does.

    Args:
        recipe: a recipe file, or the name of a shipped recipe ("default", "fast").
        overrides: a list of ``KEY=VALUE`` strings, as ``--set`` takes them.
        output: the folder the run directory goes in.
        plugins: a list of local plugin files to load (trusted code).
        report: what hears of the run's progress (a
            :class:`cifarkit.runs.report.Report`; default: nothing is printed).
        resume: a run directory to continue instead (``recipe`` left out); with
            ``overrides=["train.epochs=N"]`` a completed run trains on.
        trust_run: resume a run directory another user's cifarkit made.
        run_dir: the run directory itself (created; an existing one must be empty)
            instead of a new, time-stamped one in ``output``.

    Returns the finished run (also when it was interrupted or failed: see ``status``).
    """
    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry
    from cifarkit.runs.runner import run

    overrides = _strings("overrides", overrides)
    plugin_files = _paths("plugins", plugins)
    output = _path("output", output)
    _choice("trust_run", trust_run, bool, optional=False)
    if report is not None and not isinstance(report, Report):
        raise CifarkitError(f"report: expected a cifarkit.runs.report.Report, got "
                            f"{type(report).__name__}")
    registry = load_registry(tuple(str(p) for p in plugin_files))
    if resume is not None:
        if recipe is not None:
            raise CifarkitError("run --resume RUN_DIR takes no RECIPE: a resumed run uses the "
                                "recipe.toml in its run directory (--set may change the keys "
                                "a resume can honour, such as train.epochs)")
        return _resume(_path("resume", resume).absolute(), overrides, registry, report,
                       trust_run)
    if recipe is None:
        raise CifarkitError("run: give a RECIPE, or --resume RUN_DIR")
    loaded = load_recipe(locate_recipe(str(_path("recipe", recipe))), overrides, registry)
    if run_dir is not None:
        exact = _path("run_dir", run_dir).absolute()
        return run(loaded, registry, exact.parent, report, name=exact.name)
    return run(loaded, registry, output, report)


def _resume(run_dir: Path, overrides: list[str], registry, report, trust_run: bool) -> RunInfo:
    """Lock the run directory, read it once (recipe, summary, checkpoint: a checked
    snapshot), refuse a foreign one unless ``trust_run``, and train on from the snapshot."""
    from cifarkit.errors import OutputError
    from cifarkit.runs.folder import check_own_files, is_folder, is_regular
    from cifarkit.runs.lock import RunLock
    from cifarkit.runs.snapshot import open_run

    if not run_dir.is_dir():
        why = "a file, not a folder" if os.path.lexists(run_dir) else "not found"
        raise OutputError(f"{run_dir}: not a run directory ({why})")
    if not os.path.lexists(run_dir / "summary.json") and not is_regular(run_dir / "recipe.toml"):
        raise OutputError(f"{run_dir}: not a run directory (no summary.json)")
    if not is_folder(run_dir) and os.path.islink(run_dir):
        run_dir = run_dir.resolve()  # the folder itself; what lies in it is read without links
    with RunLock(run_dir) as lock:
        check_own_files(run_dir)  # before anything is read or written: no file leads out
        with open_run(run_dir, checkpoint=True, resumable=True) as snapshot:
            return _resume_from(snapshot, lock, overrides, registry, report, trust_run)


def _resume_from(snapshot, lock, overrides: list[str], registry, report,
                 trust_run: bool) -> RunInfo:
    """Train on from a run folder read once: its recipe from the bytes read, its
    checkpoint from the checked private copy."""
    from cifarkit.core.recipe import load_recipe
    from cifarkit.errors import OutputError
    from cifarkit.runs.runner import run
    from cifarkit.runs.trust import check_resumable

    check_resumable(snapshot, trust_run)
    if snapshot.checkpoint_problem is not None:
        raise OutputError(snapshot.checkpoint_problem)
    if snapshot.recipe_doc is None:
        raise OutputError(f"{snapshot.path}: not a run directory (no recipe.toml)")
    loaded = load_recipe(snapshot.path / "recipe.toml", overrides, registry,
                         document=snapshot.recipe_doc)
    return run(loaded, registry, snapshot.path.parent, report, resume=snapshot, lock=lock)


#: What a smoke run overrides: a few steps on a few images, no test-time augmentation.
SMOKE = ("data.limit=256", "train.steps_per_epoch=2", "train.tta=none")


def smoke(recipe: PathLike, overrides: Sequence[str] = (), output: PathLike = "runs", *,
          plugins: Sequence[PathLike] = (), report: Report | None = None) -> RunInfo:
    """The whole chain of a recipe in seconds, as ``cifarkit run RECIPE --smoke`` runs it:
    one epoch of 2 steps on the first 256 examples (validation included), its
    checkpoint, a resume that trains a second epoch from it, the test split, and
    model.keras loaded back and predicting. The run directory is named
    ``<recipe>-smoke-<time>``; its accuracy means nothing. Returns the finished run
    (see ``status``: a step that failed stops there)."""
    import numpy as np

    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry

    overrides = _strings("overrides", overrides)
    files = tuple(str(p) for p in _paths("plugins", plugins))
    name = load_recipe(locate_recipe(str(_path("recipe", recipe))), overrides,
                       load_registry(files)).name
    first = train(recipe, [*overrides, *SMOKE, "train.epochs=1", f"name={name}-smoke"],
                  output, plugins=files, report=report)
    if first.status != "completed":
        return first
    second = train(resume=first.run_dir, overrides=["train.epochs=2"], plugins=files,
                   report=report)
    if second.status == "completed":
        model = second.model()
        second.predict(np.zeros((2, *model.input_shape[1:]), np.uint8))
    return second


def overfit(recipe: PathLike, batches: int, overrides: Sequence[str] = (),
            output: PathLike = "runs", *, epochs: int = 30, plugins: Sequence[PathLike] = (),
            report: Report | None = None) -> tuple[RunInfo, float | None, float | None]:
    """Whether a recipe's model can drive its training loss down: ``epochs`` epochs on
    the same ``batches`` batches (Lightning's ``overfit_batches``), without augmentation,
    validation or callbacks, as ``cifarkit run RECIPE --overfit-batches N`` runs it.
    Returns the run and its first and last epochs' training loss."""
    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry

    batches = _choice("batches", batches, int, optional=False)
    if batches < 1:
        raise CifarkitError(f"--overfit-batches: at least 1 batch, got {batches}")
    overrides = _strings("overrides", overrides)
    files = tuple(str(p) for p in _paths("plugins", plugins))
    loaded = load_recipe(locate_recipe(str(_path("recipe", recipe))), overrides,
                         load_registry(files))
    sets = [*overrides, f"data.limit={batches * loaded.data.batch_size}",
            "data.validation_split=0", "augmentation=[]", "callbacks=[]", "train.tta=none",
            f"train.steps_per_epoch={batches}", f"train.epochs={epochs}",
            f"name={loaded.name}-overfit"]
    run = train(recipe, sets, output, plugins=files, report=report)
    losses = [r.get("loss") for r in run.metrics()] if run.status == "completed" else []
    return run, (losses[0] if losses else None), (losses[-1] if losses else None)


# -- reading and using runs ----------------------------------------------------------

def load_run(run_dir: PathLike) -> RunInfo:
    """A finished (or interrupted) run directory, read as data: its summary.json,
    checked, and its metrics on demand. Nothing in it is run."""
    from cifarkit.runs.snapshot import open_run

    with open_run(_path("run_dir", run_dir)) as snapshot:
        return RunInfo(snapshot.path, snapshot.summary)


def evaluate(run_dir: PathLike, *, data: PathLike | None = None,
             output: PathLike | None = None, backend: str | None = None,
             trust_run: bool = False, plugins: Sequence[PathLike] = ()) -> dict[str, Any]:
    """Evaluate a run's model.keras on its test split (or ``data``'s), as ``cifarkit
    evaluate`` does: accuracy, loss, per-class accuracy, the confusion matrix. Writes
    evaluation.json and the confusion matrices into ``output`` (default
    RUN_DIR/evaluation) and returns evaluation.json's content plus ``written``."""
    from cifarkit.runs.inference import evaluate_run

    return evaluate_run(_path("run_dir", run_dir).absolute(),
                        str(_path("data", data)) if data is not None else None,
                        _path("output", output) if output is not None else None,
                        backend=_choice("backend", backend, str),
                        trust_run=_choice("trust_run", trust_run, bool, optional=False),
                        plugin_files=tuple(str(p) for p in _paths("plugins", plugins)))


def predict(run_dir: PathLike, images: Sequence[PathLike], *, top: int = 3,
            backend: str | None = None) -> list[dict[str, Any]]:
    """The ``top`` classes and probabilities for each image file, as ``cifarkit predict
    --json`` gives them (for an array of images, use ``load_run(d).predict(array)``)."""
    from cifarkit.runs.inference import predict_images

    return predict_images(_path("run_dir", run_dir).absolute(), _paths("images", images),
                          _choice("top", top, int, optional=False),
                          backend=_choice("backend", backend, str))


def export(run_dir: PathLike, format: str = "onnx", output: PathLike | None = None, *,
           backend: str | None = None) -> dict[str, Any]:
    """Export a run's model as ``format`` ("onnx" or "saved_model") to ``output`` (default
    RUN_DIR/export/...), checked against Keras before it is written, as ``cifarkit
    export`` does; returns the description written beside it."""
    from cifarkit.runs.export import FORMATS, export_run

    if format not in FORMATS:
        raise CifarkitError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
    return export_run(_path("run_dir", run_dir).absolute(), format,
                      _path("output", output) if output is not None else None,
                      _choice("backend", backend, str))


# -- plugins ---------------------------------------------------------------------------

def list_plugins(kind: str | None = None,
                 plugins: Sequence[PathLike] = ()) -> list[dict[str, Any]]:
    """Every registered plugin (of ``kind``: "model", "augmentation", ...) as
    ``cifarkit list-plugins --json`` gives it: ``kind``, ``name``, ``source``,
    ``summary``, ``parameters``, ..."""
    from cifarkit.core.hookspecs import KINDS
    from cifarkit.core.registry import load_registry

    if kind is not None and kind not in KINDS:
        raise CifarkitError(f"kind: {kind!r} is not a plugin kind ({', '.join(KINDS)})")
    registry = load_registry(tuple(str(p) for p in _paths("plugins", plugins)))
    return [p.to_json() for p in registry.all() if kind is None or p.kind == kind]


def create_model(name: str, input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
                 *, backend: str | None = None, plugins: Sequence[PathLike] = (),
                 sample_images=None, **params: Any):
    """A plain Keras model from the model plugin ``name`` with ``params`` (checked as a
    recipe's ``[model]`` table is), built for ``input_shape`` images and ``num_classes``
    classes, on ``backend`` (default: TensorFlow, or Keras's if already running).
    ``sample_images``: the training images a plugin initialises from (the zoo's
    normalisation, airbench's whitening); by default 256 images of uniform noise in
    0-255, so the model takes raw pixels at about zero mean and unit variance (pass
    your training images for their real statistics). Example::

        model = cifarkit.create_model("resnet20")
        model.summary()
    """
    from cifarkit import backends
    from cifarkit.core.recipe import plugin_call
    from cifarkit.core.registry import load_registry

    registry = load_registry(tuple(str(p) for p in _paths("plugins", plugins)))
    call = plugin_call("model", {"plugin": _choice("name", name, str, optional=False),
                                 **params}, registry, "create_model()")
    shape = tuple(_strings_of_ints("input_shape", input_shape))
    if sample_images is None:
        import numpy as np

        sample_images = np.random.default_rng(0).uniform(0, 255, (256, *shape)).astype("float32")
    chosen = backends.get(_choice("backend", backend, str) or backends.active())
    chosen.start()
    model = registry.call(call, backend=chosen, input_shape=shape,
                          num_classes=_choice("num_classes", num_classes, int, optional=False),
                          sample_images=sample_images)
    if not model.built:
        import numpy as np

        model(np.zeros((1, *shape), np.float32), training=False)
    return model


def _strings_of_ints(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise CifarkitError(f"{name}: expected a tuple of positive integers, got {value!r}"[:300])
    return list(value)
