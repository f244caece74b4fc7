"""Real CIFAR-10 (the JPEG copy in ../shared/data), when present; skipped otherwise."""

import json
import os
import subprocess
import sys

import pytest

from cifarkit.data import read_cifar10
from conftest import DEFAULT_RECIPE, ROOT, cli
from test_export import check_onnx_matches_keras, needs_onnx

SHARED = ROOT.parent / "shared"
ARCHIVE = SHARED / "data" / "cifar10-jpeg.tar.gz"
TOOL = SHARED / "tools" / "cifar10_batches.py"

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not (ARCHIVE.is_file() and TOOL.is_file()),
                       reason="real CIFAR-10 (../shared/data) not present"),
]


@pytest.fixture(scope="module")
def real_cifar10(tmp_path_factory):
    """The JPEG copy converted once per test session, whichever pytest-xdist worker
    asks first (the others wait for it): 60,000 JPEGs take half a minute."""
    import fcntl

    base = tmp_path_factory.getbasetemp()  # a worker's own folder under the session's
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "real-cifar10"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / ".done").exists():
            subprocess.run([sys.executable, str(TOOL), str(shared)], check=True,
                           capture_output=True, timeout=600)
            (shared / ".done").touch()
    return shared / "cifar-10-batches-py"


def test_real_batches_read_with_the_restricted_unpickler(real_cifar10):
    s = read_cifar10(real_cifar10)
    assert s.x_train.shape == (50000, 32, 32, 3) and s.x_test.shape == (10000, 32, 32, 3)
    assert s.class_names[:3] == ["airplane", "automobile", "bird"]
    assert sorted(set(s.y_train.tolist())) == list(range(10))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, real_cifar10):
    """The default recipe, one epoch on 512 real images."""
    out = tmp_path_factory.mktemp("runs")
    result = cli("run", str(DEFAULT_RECIPE), "--set", f"data.path={real_cifar10}",
                 "--set", "data.limit=512", "--set", "train.epochs=1", "--output", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.mark.slow
def test_default_recipe_on_real_data_smoke(real_run):
    run_dir = real_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["parameters"] == 2_201_418 and summary["test_examples"] == 512
    # the summary's accuracy is what its own per-class figures and evaluate say
    evaluated = cli("evaluate", str(run_dir), "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = json.loads(evaluated.stdout)
    confusion = result["confusion_matrix"]
    correct = sum(confusion[i][i] for i in range(10))
    assert summary["test_accuracy"] == result["accuracy"] == correct / 512


@pytest.mark.slow
@needs_onnx
def test_onnx_export_agrees_with_keras_on_200_real_test_images(real_run, real_cifar10, tmp_path):
    x = read_cifar10(real_cifar10).x_test[:200].astype("float32")
    check_onnx_matches_keras(real_run, x, tmp_path)
