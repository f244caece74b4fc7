"""cifarkit export: ONNX and SavedModel from a run trained on either backend, checked
against Keras's own predictions (onnxruntime / TensorFlow), with the JSON that
describes the input; clear one-line errors; nothing half-written."""

import importlib.util
import json

import numpy as np
import pytest

from cifarkit.testing import write_cifar10
from conftest import ROOT, cifarkit, cli


needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "tf2onnx")),
    reason="the export extra is not installed")


@pytest.fixture(scope="module")
def data_200(tmp_path_factory):
    """A cifar-10-batches-py folder with 200 test images."""
    return write_cifar10(tmp_path_factory.mktemp("data"), n_train=100, n_test=200, seed=3)


@pytest.fixture
def trained(run_copy):
    """A copy of the session's tiny trained run (TensorFlow; the contract matrix in
    test_matrix.py exports a run of every recipe from each backend)."""
    return run_copy


def keras_predictions(run_dir, x):
    import keras

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    return model.predict(x, verbose=0), model


def first_test_images(data):
    from cifarkit.data import read_cifar10

    return read_cifar10(data).x_test[:200].astype(np.float32)


def check_onnx_matches_keras(run_dir, images, tmp_path) -> dict:
    """Export as ONNX; onnxruntime's probabilities equal Keras's predict within 1e-4 and
    the argmax agrees on every image. Returns the description."""
    import onnxruntime

    target = tmp_path / "m.onnx"
    result = cli("export", str(run_dir), "--format", "onnx", "--output", str(target))
    assert result.returncode == 0, result.stderr[-2000:]
    description = json.loads((tmp_path / "m.json").read_text())
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.name == description["input"]["name"] and given.shape[1:] == [32, 32, 3]
    assert description["input"]["dtype"] == "float32" and description["input"]["layout"] == "NHWC"
    onnx_probs = session.run(None, {given.name: images})[0]
    keras_probs, _ = keras_predictions(run_dir, images)
    assert onnx_probs.shape == keras_probs.shape == (len(images), 10)
    np.testing.assert_allclose(onnx_probs, keras_probs, atol=1e-4, rtol=0)
    assert (onnx_probs.argmax(1) == keras_probs.argmax(1)).all()
    return description


@needs_onnx
def test_onnx_export_equals_keras_predict(trained, data_200, tmp_path):
    description = check_onnx_matches_keras(trained, first_test_images(data_200), tmp_path)
    assert description["class_names"][:2] == ["airplane", "automobile"]
    assert description["output"]["shape"] == [None, 10]


def test_saved_model_export_equals_keras_predict(trained, data_200, tmp_path):
    import tensorflow as tf

    images = first_test_images(data_200)
    result = cli("export", str(trained), "--format", "saved_model")
    assert result.returncode == 0, result.stderr[-2000:]
    target = trained / "export" / "saved_model"
    description = json.loads((trained / "export" / "saved_model.json").read_text())
    serve = tf.saved_model.load(str(target)).signatures["serving_default"]
    out = serve(**{description["input"]["name"]: tf.constant(images)})
    probs = np.asarray(out[description["output"]["name"]])
    keras_probs, _ = keras_predictions(trained, images)
    np.testing.assert_allclose(probs, keras_probs, atol=1e-4, rtol=0)
    checked = description["checked"]  # on the run's own test images, as the output says
    assert checked["on"].endswith("images of the run's test split") and checked["images"] > 8
    assert checked["same_class_as_trained"] == 1.0 and checked["max_abs_difference"] <= 1e-4
    assert "the same class for 100.0 % of them" in result.stdout
    again = cli("export", str(trained), "--format", "saved_model")
    assert again.returncode == 2 and again.stderr.strip().endswith(
        "already exists; remove it or pass --output")


@pytest.mark.slow  # the blocked-extra case runs in a subprocess
def test_export_errors_are_one_line_and_leave_nothing(trained, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    missing = cli("export", str(out), "--format", "saved_model")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    # the export extra missing (its modules hidden): what to install, nothing written
    blocked = cifarkit("export", str(trained), "--format", "onnx", "--output",
                       str(out / "x.onnx"),
                       env={"PYTHONPATH": str(ROOT / "tests" / "no_tensorflow"),
                            "CIFARKIT_BLOCK_ALSO": "tf2onnx,onnxruntime"})
    assert blocked.returncode == 2, blocked.stderr[-2000:]
    (line,) = blocked.stderr.strip().splitlines()
    assert "needs" in line and 'pip install -e ".[export]"' in line
    assert list(out.iterdir()) == []



def test_an_export_its_runtime_disagrees_with_is_one_line_and_leaves_nothing(
        trained, tmp_path, monkeypatch):
    from cifarkit.runs import export

    monkeypatch.setattr(export, "CHECK_TOLERANCE", -1.0)  # any difference is too much
    out = tmp_path / "out"
    out.mkdir()
    for fmt, target in (("saved_model", out / "sm"), ("onnx", out / "m.onnx")):
        if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            continue
        result = cli("export", str(trained), "--format", fmt, "--output", str(target))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "disagrees with Keras on " in result.stderr
        assert "images of the run's test split" in result.stderr  # real images, not noise
        assert list(out.iterdir()) == []
