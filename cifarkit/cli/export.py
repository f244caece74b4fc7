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
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import backends
from cifarkit.cli.inference import _load_model, _summary_fields
from cifarkit.errors import OutputError, first_line, printable
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
    summary = artifacts.read_summary(run_dir)
    trained_on, class_names, tta = _summary_fields(summary, run_dir)
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
    chosen = backends.get(backend or "tensorflow")
    model = _load_model(run_dir, chosen)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{target.parent}: cannot create the folder ({exc.strerror or exc})"
                          ) from None
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        # Keras's ONNX export wants a model that has been called once.
        model(np.zeros((1, *model.input_shape[1:]), np.float32), training=False)
        model.export(str(partial), format=keras_format, verbose=False)
        description = _describe(model, fmt, target, partial, class_names, tta, run_dir,
                                trained_on or "tensorflow", chosen.name)
        artifacts.write_json(description_path, description)
        partial.rename(target)
    except BaseException as exc:
        _remove(partial)
        description_path.unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, OutputError):
            raise
        hint = ("; export on the tensorflow backend (the default: leave out --backend)"
                if chosen.name != "tensorflow" else "")
        raise OutputError(f"{run_dir / 'model.keras'}: Keras on the {chosen.name} backend "
                          f"cannot export it as {fmt} ({first_line(exc)}){hint}") from None
    return description


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
    from cifarkit.backends.tensorflow import saved_model_names

    return saved_model_names(written)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
