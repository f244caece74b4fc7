"""``cifarkit export``: a run's model.keras as ONNX or a TensorFlow SavedModel.

Keras's own ``model.export`` does the work. The model is loaded on the
TensorFlow backend by default, whichever backend trained it (a .keras file is
backend-independent); the whole inference path is in the model, pixel scaling
and normalisation included. Beside the export, a small JSON describes its
input and output. The export is written under a temporary name and renamed
into place: a failure leaves nothing half-written.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import backends
from cifarkit.runs.inference import load_model, summary_fields
from cifarkit.runs.snapshot import RunSnapshot, open_run
from cifarkit.errors import CifarkitError, OutputError, first_line, printable
from cifarkit.runs import artifacts

FORMATS = {"onnx": ("onnx", "model.onnx"), "saved_model": ("tf_saved_model", "saved_model")}
#: What each format needs besides cifarkit's own dependencies (module, pip name).
NEEDS = {"onnx": [("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx")],
         "saved_model": []}


def export_run(run_dir: Path, fmt: str, output: Path | None = None,
               backend: str | None = None) -> dict[str, Any]:
    """Export ``run_dir``'s model.keras; return the description written beside it."""
    missing = [pip for module, pip in NEEDS[fmt] if not _installed(module)]
    if missing:
        raise OutputError(f"--format {fmt} needs {', '.join(missing)}: "
                          "pip install -e \".[export]\"")
    snapshot = open_run(run_dir, model=True)  # read once: the model loads from its checked copy
    try:
        return _export(snapshot, fmt, output, backend)
    finally:
        snapshot.close()


def _export(snapshot: RunSnapshot, fmt: str, output: Path | None,
            backend: str | None) -> dict[str, Any]:
    run_dir = snapshot.path
    trained_on, class_names, tta = summary_fields(snapshot.summary, run_dir)
    keras_format, default_name = FORMATS[fmt]
    if output is None:  # inside the run directory: a real folder, never a link out of it
        from cifarkit.runs.folder import subfolder

        output = subfolder(run_dir, "export") / default_name
    wanted = Path(default_name).suffix
    suffix = output.suffix.lower()
    if (wanted and suffix != wanted) or (not wanted and suffix == ".json"):
        writes = f"a {wanted} file" if wanted else "a folder, not a .json file"
        raise OutputError(f"export --output: {printable(str(output))}: --format {fmt} writes "
                          f"{writes} (its JSON description goes beside it, under the same name)")
    target = output.absolute()
    description_path = target.with_name(target.name.split(".")[0] + ".json")
    for path in (target, description_path):
        if path.exists():
            raise OutputError(f"{path}: already exists; remove it or pass --output")
    chosen = backends.get(backend or backends.DEFAULT)
    trained = load_model(snapshot, chosen)
    model = portable(trained)  # float32, GELU through erf: what every runtime runs
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{target.parent}: cannot create the folder ({exc.strerror or exc})"
                          ) from None
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        # Keras's ONNX export wants a model that has been called once.
        model(np.zeros((1, *model.input_shape[1:]), np.float32), training=False)
        with warnings.catch_warnings():  # tf2onnx's FutureWarning is its own business
            warnings.filterwarnings("ignore", category=FutureWarning)
            model.export(str(partial), format=keras_format, verbose=False)
        description = _describe(model, fmt, target, partial, class_names, tta, run_dir,
                                trained_on or backends.DEFAULT, chosen.name)
        images, what = check_images(snapshot, tuple(model.input_shape[1:]))
        description["checked"] = check_artifact(fmt, partial, description["input"]["name"],
                                                model, trained, run_dir, images, what)
        artifacts.write_json(description_path, description)
        partial.rename(target)
    except BaseException as exc:
        _remove(partial)
        description_path.unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, OutputError):
            raise
        hint = (f"; export on the {backends.DEFAULT} backend (the default: leave out "
                "--backend)" if chosen.name != backends.DEFAULT else "")
        raise OutputError(f"{run_dir / 'model.keras'}: Keras on the {chosen.name} backend "
                          f"cannot export it as {fmt} ({first_line(exc)}){hint}") from None
    return description


#: The most test images the export is checked on, and how far the runtime may differ
#: from Keras (in float32).
CHECK_IMAGES, CHECK_TOLERANCE = 256, 1e-4


def check_images(snapshot: RunSnapshot, shape: tuple) -> tuple[np.ndarray, str]:
    """What the export is checked on: the first :data:`CHECK_IMAGES` images of the run's
    test split where its recipe is the user's own (a foreign one's data path is not
    read), else uniform noise; and a few words saying which."""
    why = "the run folder is not yours, so its data path is not read"
    if snapshot.own and snapshot.recipe_doc is not None:
        from cifarkit.core.recipe import load_recipe
        from cifarkit.core.registry import load_registry
        from cifarkit.runs.build import load_data

        try:
            registry = load_registry()
            recipe = load_recipe(snapshot.path / "recipe.toml", [], registry,
                                 document=snapshot.recipe_doc)
            x = load_data(recipe, registry).x_test[:CHECK_IMAGES]
            if tuple(x.shape[1:]) == shape and len(x):
                return np.asarray(x, np.float32), f"{len(x)} images of the run's test split"
            why = f"its test images are {tuple(x.shape[1:])}, the model takes {shape}"
        except CifarkitError as exc:
            why = f"its data cannot be read ({first_line(exc)[:200]})"
    x = np.random.default_rng(0).uniform(0, 255, (8, *shape)).astype(np.float32)
    return x, f"8 images of uniform noise ({why})"


def _gelu_erf():
    """GELU as ``0.5 x (1 + erf(x / sqrt 2))``: exactly Keras's GELU, through the Erf
    operator that ONNX has (TensorFlow's own GELU goes through Erfc, which it lacks)."""
    import keras

    name = "cifarkit_export>gelu_erf"
    if keras.saving.get_registered_object(name) is None:
        @keras.saving.register_keras_serializable(package="cifarkit_export", name="gelu_erf")
        def gelu_erf(x):
            return 0.5 * x * (1.0 + keras.ops.erf(x / np.float32(np.sqrt(2.0))))
    # an activation named by a plain string is looked up among Keras's own only
    return keras.saving.serialize_keras_object(keras.saving.get_registered_object(name))


def _float32_config(node: Any, gelu: Any) -> Any:
    """A model config with every dtype policy float32 and every ``gelu`` activation
    written through erf."""
    if isinstance(node, list):
        return [_float32_config(v, gelu) for v in node]
    if not isinstance(node, dict):
        return node
    if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") \
            and isinstance(node.get("config"), dict):
        return {**node, "config": {**node["config"], "name": "float32"}}
    if node.get("class_name") == "Normalization" and isinstance(node.get("config"), dict):
        node = {**node, **_normalization_as_rescaling(node["config"])}
    out = {}
    for key, value in node.items():
        if key == "activation" and value == "gelu":
            out[key] = gelu
        elif key == "dtype" and isinstance(value, str) and value.startswith("mixed_"):
            out[key] = "float32"
        else:
            out[key] = _float32_config(value, gelu)
    return out


def _normalization_as_rescaling(config: dict) -> dict:
    """A Normalization layer given its mean and variance, as the Rescaling that computes
    the same ``(x - mean) / sqrt(variance)``: Normalization keeps them as tensors made
    before tracing, which tf2onnx turns into extra graph inputs; Rescaling's constants
    land inside the graph. Anything else (adapted statistics, inverted) stays as it is."""
    mean, variance = config.get("mean"), config.get("variance")
    axis = config.get("axis")
    if mean is None or variance is None or config.get("invert") \
            or (list(axis) if isinstance(axis, (list, tuple)) else [axis]) != [-1]:
        return {}
    std = np.maximum(np.sqrt(np.asarray(variance, np.float64)), 1e-7)
    scale, offset = 1.0 / std, -np.asarray(mean, np.float64) / std
    return {"class_name": "Rescaling", "module": "keras.layers",
            "config": {"name": config.get("name"), "dtype": config.get("dtype"),
                       "trainable": False, "scale": scale.astype(np.float32).tolist(),
                       "offset": offset.astype(np.float32).tolist()}}


def portable(model):
    """``model`` rebuilt as a float32 graph whose GELUs go through erf, with its weights:
    the same function up to float32 rounding, in operators ONNX runtimes have. A model
    whose config cannot be rebuilt is returned as it is (the check after export says
    whether that runs)."""
    try:
        clone = type(model).from_config(_float32_config(model.get_config(), _gelu_erf()))
        clone.set_weights([np.asarray(w, np.float32) if np.asarray(w).dtype.kind == "f"
                           else np.asarray(w) for w in model.get_weights()])
    except Exception:  # a subclassed model without a full config, say
        return model
    return clone


def check_artifact(fmt: str, written: Path, input_name: str, graph, trained,
                   run_dir: Path, x: np.ndarray, what: str) -> dict[str, Any]:
    """Load the exported file with the runtime a user deploys with (onnxruntime; for a
    SavedModel, TensorFlow), run it on images ``x`` (``what`` they are) and compare: with
    Keras in float32 (a difference over :data:`CHECK_TOLERANCE` is one line,
    :class:`OutputError`), and with the model at the precision it trained in (the
    largest difference and the share of images given the same class are recorded)."""
    want = np.asarray(graph.predict(x, verbose=0), np.float32)
    as_trained = np.asarray(trained.predict(x, verbose=0), np.float32)
    try:
        if fmt == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(written),
                                                   providers=["CPUExecutionProvider"])
            got, runtime = session.run(None, {input_name: x})[0], \
                f"onnxruntime {onnxruntime.__version__}"
        else:
            got, runtime = backends.get(backends.DEFAULT).saved_model_predict(written, x)
    except Exception as exc:
        raise OutputError(f"{run_dir / 'model.keras'}: the exported {fmt} does not run "
                          f"({first_line(exc)[:300]}); nothing was written") from None
    got = np.asarray(got, np.float32)
    difference = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not difference <= CHECK_TOLERANCE:
        raise OutputError(f"{run_dir / 'model.keras'}: the exported {fmt} disagrees with Keras "
                          f"on {what} (largest difference {difference:.3g}, allowed "
                          f"{CHECK_TOLERANCE:g}); nothing was written")
    same = int((got.argmax(axis=1) == as_trained.argmax(axis=1)).sum())
    return {"runtime": runtime, "on": what, "images": int(len(x)),
            "max_abs_difference": difference,
            "max_abs_difference_vs_trained_precision": float(np.abs(got - as_trained).max()),
            "same_class_as_trained": same / len(x)}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that refuses it
        return False


def _describe(model, fmt: str, target: Path, written: Path, class_names, tta: str,
              run_dir: Path, trained_on: str, exported_on: str) -> dict[str, Any]:
    height, width, channels = model.input_shape[1:]
    classes = model.output_shape[-1]
    names = class_names if class_names and len(class_names) == classes else \
        [str(i) for i in range(classes)]
    input_name, output_name = _io_names(fmt, written)
    return {
        "format": fmt,
        "path": target.name,
        "input": {"name": input_name, "dtype": "float32", "layout": "NHWC",
                  "shape": [None, height, width, channels], "range": [0, 255],
                  "note": "raw pixel values (uint8 images cast to float32); the model scales "
                          "and normalises them itself"},
        "output": {"name": output_name, "dtype": "float32", "shape": [None, classes],
                   "meaning": "class probabilities (softmax), in class_names order"},
        "class_names": names,
        "test_time_augmentation": (f"not included: the run's test figures average {tta} views"
                                   if tta != "none" else "none"),
        "run": str(run_dir.resolve()),
        "trained_on": trained_on,
        "exported_on": exported_on,
    }


def _io_names(fmt: str, written: Path) -> tuple[str, str]:
    """The exported graph's input and output names, read back from it."""
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(written), load_external_data=False).graph
        return graph.input[0].name, graph.output[0].name
    return backends.get(backends.DEFAULT).saved_model_names(written)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
