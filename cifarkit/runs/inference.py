"""Using a finished run's model.keras: evaluate it on a test split, predict images.

The engine behind ``cifarkit evaluate`` / ``predict`` and ``cifarkit.evaluate`` /
``RunInfo.predict``: each reads the run folder once
(:func:`cifarkit.runs.snapshot.open_run`) and loads the model from its checked
private copy. Nothing here prints; the commands render what these return."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.runs import artifacts, plots
from cifarkit.runs.folder import check_own_files, subfolder
from cifarkit.runs.snapshot import RunSnapshot, open_run
from cifarkit.runs.build import load_data
from cifarkit.data import read_images
from cifarkit.errors import DataError, OutputError, first_line, terminal_safe
from cifarkit.losses import make_loss
from cifarkit.runs.evaluation import TTA_VIEWS, probabilities, score
from cifarkit import backends
from cifarkit.backends import Backend
from cifarkit.core.recipe import FOREIGN_HINT, load_recipe
from cifarkit.core.registry import load_registry


def _path_keys(recipe, registry) -> list[str]:
    """The dataset plugin's path parameters (those typed ``pathlib.Path``)."""
    return [p.name for p in registry.get("dataset", recipe.data.dataset.plugin).params
            if p.is_path]


def _refuse_foreign_paths(recipe, registry, snapshot: RunSnapshot) -> None:
    """A foreign recipe's dataset paths (its plugin's ``Path`` parameters) are not read."""
    call = recipe.data.dataset
    chosen = [(name, call.params.get(name)) for name in _path_keys(recipe, registry)
              if call.params.get(name) not in (None, [], ())]
    if chosen:
        name, value = chosen[0]
        why = (f"{snapshot.foreign_file.name} {snapshot.why_foreign}"
               if snapshot.foreign_file is not None and snapshot.foreign_file.name
               != ".signature" else FOREIGN_HINT)
        raise DataError(f"{recipe.path}: data.{name}: {why}, and it would read "
                        f"{value}; pass --data PATH to choose the data, or --trust-run")


def summary_fields(summary: dict, run_dir: Path) -> tuple[str | None, list | None, str]:
    """``(backend, class names, test-time augmentation)`` from summary.json, checked:
    a field of the wrong kind is one line naming it."""
    from cifarkit.backends import BACKENDS

    where = run_dir / "summary.json"
    backend = summary.get("backend")
    if backend is not None and backend not in BACKENDS:
        raise OutputError(f"{where}: backend: {terminal_safe(repr(backend))} is not a backend "
                          f"({', '.join(BACKENDS)}); pass --backend")
    names = summary.get("class_names")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(n, str) for n in names)):
        raise OutputError(f"{where}: class_names: expected a list of strings, got "
                          f"{type(names).__name__}")
    tta = summary.get("test_tta", "none")
    if not isinstance(tta, str) or tta not in TTA_VIEWS:
        raise OutputError(f"{where}: test_tta: {terminal_safe(repr(tta))} is not one of "
                          f"{', '.join(map(repr, TTA_VIEWS))}")
    return backend, names, tta


def _channels(x: np.ndarray, channels: int, run_dir: Path) -> np.ndarray:
    """RGB images as the model's input takes them: 3 channels as they are, 1 as luminance."""
    if channels == 3:
        return x
    if channels == 1:
        return (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    raise DataError(f"{run_dir / 'model.keras'}: takes images with {channels} channels; "
                    "predict reads RGB or grayscale images (3 or 1 channels)")


def _finite(probs: np.ndarray, run_dir: Path, what: str) -> np.ndarray:
    """Probabilities, or one line saying the model's weights are not finite."""
    if not np.isfinite(probs).all():
        raise OutputError(f"{run_dir / 'model.keras'}: outputs non-finite probabilities (NaN) "
                          f"for {what}: its weights diverged in training; retrain with a lower "
                          "train.learning_rate")
    return probs


def load_model(snapshot: RunSnapshot, backend: Backend):
    """The snapshot's model.keras (its checked private copy) as a Keras model on ``backend``."""
    path = snapshot.path / "model.keras"
    keras = backend.start()
    try:
        # Only predictions are needed: skip the optimizer, which may be a plugin's own class.
        return keras.models.load_model(snapshot.model_path, compile=False)
    except Exception as exc:
        raise OutputError(f"{path}: cannot load ({first_line(exc)})") from None


def evaluate_run(run_dir: Path, data_path: str | None = None, output: Path | None = None,
                 backend: str | None = None, trust_run: bool = False,
                 plugin_files: tuple[str, ...] = ()) -> dict[str, Any]:
    """Evaluate RUN_DIR/model.keras on the recipe's test split (same limit) or ``data_path``'s,
    on ``backend`` (else the backend the run trained on).

    The run directory is read once (:func:`cifarkit.runs.snapshot.open_run`). One this
    user's cifarkit did not make, or whose files differ from its signed manifest, runs
    none of its plugin files and reads no data path of its choosing, unless
    ``trust_run``; ``plugin_files`` are files the user vouches for. Returns
    evaluation.json's content, with ``written``: the files written (in ``output``,
    default RUN_DIR/evaluation).
    """
    run_dir = run_dir.absolute()
    registry = load_registry(tuple(plugin_files))
    with open_run(run_dir, model=True) as snapshot:
        if snapshot.recipe_doc is None:
            raise OutputError(f"{run_dir}: no recipe.toml (not a complete run directory)")
        trusted = trust_run or snapshot.own
        recipe = load_recipe(run_dir / "recipe.toml", [], registry, trusted=trusted,
                             document=snapshot.recipe_doc)
        if data_path:  # into the dataset's own path parameter (data.path for the built-ins)
            call = recipe.data.dataset
            key = (_path_keys(recipe, registry) or ["path"])[0]
            call = replace(call, params={**call.params, key: Path(data_path).absolute()})
            recipe = replace(recipe, data=replace(recipe.data, dataset=call))
        if not trusted and not data_path:
            _refuse_foreign_paths(recipe, registry, snapshot)
        chosen = backends.get(backend or recipe.train.backend)  # --backend, else the run's
        chosen.select()  # before anything imports Keras (a dataset downloading through it)
        recipe = recipe.with_backend(chosen.name)
        data = load_data(recipe, registry)
        model = load_model(snapshot, chosen)
        summary = snapshot.summary
    classes = model.output_shape[-1]
    if classes != len(data.class_names):
        raise DataError(f"{data_path or recipe.path}: the data has {len(data.class_names)} classes "
                        f"but the model predicts {classes}")
    if tuple(model.input_shape[1:]) != data.input_shape:
        raise DataError(f"{data_path or recipe.path}: images are {data.input_shape} but the model "
                        f"takes {tuple(model.input_shape[1:])}")
    probs, _ = probabilities(chosen, model, data.x_test, recipe.data.batch_size, recipe.train.tta)
    _finite(probs, run_dir, "the test split")
    result = score(probs, data.y_test, data.class_names,
                   make_loss(recipe.train.loss, recipe.train.label_smoothing), recipe.train.one_hot,
                   recipe.train.metrics)
    paths = [recipe.data.dataset.params.get(k) for k in _path_keys(recipe, registry)]
    result = {"run_dir": str(run_dir), "data": str(data_path or next((p for p in paths if p), None)
                                                   or recipe.data.dataset.plugin),
              "class_names": data.class_names, **result,
              "run_test_accuracy": summary.get("test_accuracy")}
    written = _write_evaluation(run_dir, output, result, data.class_names)
    return {**result, "written": [str(p) for p in written]}


def _write_evaluation(run_dir: Path, output: Path | None, result: dict[str, Any],
                      class_names: list[str]) -> list[Path]:
    """The confusion matrices and evaluation.json into ``output`` (default: the run
    directory's evaluation/); the paths written."""
    if output is None:  # inside the run directory: a real folder, never a link out of it
        output = subfolder(run_dir, "evaluation")
        check_own_files(run_dir, ("evaluation",))
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{output}: cannot create ({exc.strerror or exc})") from None
    accuracy = f"{100 * result['accuracy']:.2f} %"
    pngs = plots.plot_confusion(result["confusion_matrix"], class_names,
                                output / "confusion_matrix.png",
                                f"{run_dir.name} on {Path(str(result['data'])).name}, "
                                f"accuracy {accuracy}")
    artifacts.write_json(output / "evaluation.json", result)
    return [*pngs, output / "evaluation.json"]


@dataclass(frozen=True)
class RunModel:
    """A run's model, loaded from its checked copy, with what predicting needs: its class
    names, the run's test-time augmentation, a batch size and the backend it runs on."""

    run_dir: Path
    model: Any
    class_names: list[str]
    tta: str
    batch_size: int
    backend: Backend

    def probabilities(self, x: np.ndarray, what: str = "these images") -> np.ndarray:
        """Class probabilities (n, k) for images ``x`` (n, h, w, c; raw 0-255 values)."""
        x = np.asarray(x, np.float32)
        expected = tuple(self.model.input_shape[1:])
        if x.ndim != 4 or tuple(x.shape[1:3]) != expected[:2]:
            raise DataError(f"{self.run_dir}: the model takes images of shape (N, "
                            f"{', '.join(map(str, expected))}), got an array of shape {x.shape}")
        x = _channels(x, expected[-1], self.run_dir) if x.shape[-1] != expected[-1] else x
        probs, _ = probabilities(self.backend, self.model, x,
                                 max(1, min(self.batch_size, len(x))), self.tta)
        return _finite(probs, self.run_dir, what)


def load_run_model(run_dir: Path, backend: str | None = None) -> RunModel:
    """``run_dir``'s model.keras, read once and checked, on ``backend`` (else the run's)."""
    with open_run(run_dir, model=True) as snapshot:
        summary = snapshot.summary
        run_backend, class_names, tta = summary_fields(summary, snapshot.path)
        chosen = backends.get(backend or run_backend)  # --backend, else the run's
        model = load_model(snapshot, chosen)
    classes = model.output_shape[-1]
    if not class_names or len(class_names) != classes:
        class_names = [str(i) for i in range(classes)]
    batch = summary.get("batch_size") if isinstance(summary.get("batch_size"), int) else 64
    return RunModel(snapshot.path, model, list(class_names), tta, max(1, batch), chosen)


def predict_images(run_dir: Path, images: list[Path], top: int = 3,
                   backend: str | None = None) -> list[dict[str, Any]]:
    """Top-``top`` classes and probabilities for each image file (on ``backend``, else
    the run's)."""
    if top < 1:
        raise DataError(f"--top must be at least 1, got {top}")
    for path in images:
        if not path.is_file():
            raise DataError(f"{path}: image not found")
    loaded = load_run_model(run_dir, backend)
    height, width, _ = loaded.model.input_shape[1:]
    if height != width:
        raise DataError(f"{run_dir}: model takes {height}x{width} images; only square inputs "
                        "are supported")
    x = _channels(read_images(images, height).astype(np.float32),
                  loaded.model.input_shape[-1], loaded.run_dir)
    probs = loaded.probabilities(x)
    out = []
    for path, p in zip(images, probs):
        order = np.argsort(-p)[:top]
        out.append({"image": str(path), "predictions": [
            {"class": loaded.class_names[i], "probability": float(p[i])} for i in order]})
    return out
