"""Using a finished run: evaluate, predict; image folders end to end and their errors."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DEFAULT_RECIPE, ROOT, cli, commands_on, summary, write_slow_recipe


@pytest.mark.slow  # trains 3 epochs
def test_evaluate_and_predict_a_finished_run(tmp_path, cifar10_dir):
    """In this process (cli): what is under test is the commands, not a process boundary."""
    runs = tmp_path / "runs"
    done = cli("run", str(write_slow_recipe(tmp_path, cifar10_dir, epochs=3, steps=150)),
               "--output", str(runs))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = runs.iterdir()
    s = summary(run_dir)
    assert (run_dir / "confusion_matrix.png").is_file()
    assert s["test_accuracy"] > 0.3  # the synthetic classes are learnable

    ev = cli("evaluate", str(run_dir), "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout)
    assert result["accuracy"] == pytest.approx(s["test_accuracy"], abs=1e-9)
    assert result["loss"] == pytest.approx(s["test_loss"], rel=1e-5)
    assert result["per_class_accuracy"] == pytest.approx(s["per_class_accuracy"])
    assert np.array(result["confusion_matrix"]).sum() == s["test_examples"]
    assert (run_dir / "evaluation" / "confusion_matrix.png").is_file()
    table = cli("evaluate", str(run_dir), env={"COLUMNS": "80"})
    assert "per-class accuracy" in table.stdout and "confusion matrix" in table.stdout
    # piped: the long path is one whole line, not hard-wrapped at 80 columns
    evaluation = run_dir / "evaluation"
    assert (f"wrote {evaluation / 'confusion_matrix.png'}, "
            f"{evaluation / 'confusion_matrix_normalized.png'} and") in table.stdout

    images = []
    for name, size, colour in [("a.png", (64, 48), (250, 10, 10)), ("b.jpg", (20, 20), (10, 10, 250))]:
        Image.fromarray(np.full((size[1], size[0], 3), colour, np.uint8)).save(tmp_path / name)
        images.append(str(tmp_path / name))
    pr = cli("predict", str(run_dir), *images, "--top", "3", "--json")
    assert pr.returncode == 0, pr.stderr[-2000:]
    preds = json.loads(pr.stdout)
    assert [p["image"] for p in preds] == images
    for p in preds:
        assert len(p["predictions"]) == 3
        assert all(q["class"] in s["class_names"] for q in p["predictions"])
        probs = [q["probability"] for q in p["predictions"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    plain = cli("predict", str(run_dir), images[0])
    assert plain.stdout.startswith(images[0] + ": ")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = cli("predict", str(run_dir), str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "unreadable image" in bad.stderr and "Traceback" not in bad.stderr


def make_image_folder(root: Path, classes=("cats", "dogs", "fish"), per_class=8):
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                size = (24 + 8 * (i % 3), 40 - 4 * (i % 2))  # any size
                pixels = np.clip(rng.normal(80 * c + 40, 20, (size[1], size[0], 3)), 0, 255)
                ext = ".jpg" if i % 2 else ".png"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}{ext}")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_image_folder_trains_and_evaluates(tmp_path, backend):
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        pytest.skip("the jax extra is not installed")
    folder = make_image_folder(tmp_path / "pets")
    # on JAX, with `import tensorflow` made to fail (tests/no_tensorflow)
    sets = ["data.dataset=image_folder", f"data.path={folder}", "train.epochs=1",
            "data.batch_size=8", "model.filters=[4, 8]", "model.dropout=[0.1, 0.1]",
            "strategy.plugin=one_device"]
    result, ev = commands_on(backend, [  # JAX: one process, `import tensorflow` made to fail
        (["run", DEFAULT_RECIPE, *[a for s in sets for a in ("--set", s)], "--backend",
          backend, "--output", tmp_path / "runs"], None),
        (["evaluate", f"{{only:{tmp_path / 'runs'}}}", "--json"], None)],
        env={"PYTHONPATH": str(ROOT / "tests" / "no_tensorflow")} if backend == "jax" else None)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = summary(run_dir)
    assert s["class_names"] == ["cats", "dogs", "fish"] and s["test_examples"] == 12
    assert s["backend"] == backend
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(s["test_accuracy"])


@pytest.mark.parametrize("damage, fragment", [
    (lambda root: (root / "train" / "dogs" / "3.jpg").write_bytes(b"\xff\xd8broken"), "3.jpg: unreadable image"),
    (lambda root: [p.unlink() for p in (root / "train" / "fish").iterdir()], "fish: empty class folder"),
    (lambda root: (root / "test" / "birds").mkdir() or
     Image.new("RGB", (8, 8)).save(root / "test" / "birds" / "x.png"), "birds are not in"),
    (lambda root: __import__("shutil").rmtree(root / "test"), "test: missing"),
])
def test_broken_image_folders_are_one_line_errors(tmp_path, damage, fragment):
    folder = make_image_folder(tmp_path / "pets", per_class=4)
    damage(folder)
    out = tmp_path / "runs"
    result = cli("run", str(DEFAULT_RECIPE), "--set", "data.dataset=image_folder",
                 "--set", f"data.path={folder}", "--output", str(out))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def hand_made_run(tmp_path_factory):
    """A run directory with a tiny model.keras (3 classes) and its summary.json."""
    keras = pytest.importorskip("keras")
    root = tmp_path_factory.mktemp("hand")

    def make(name, channels=3, **summary):
        run_dir = root / name
        run_dir.mkdir()
        model = keras.Sequential([keras.Input((8, 8, channels)), keras.layers.Flatten(),
                                  keras.layers.Dense(3, activation="softmax")])
        model.save(run_dir / "model.keras")
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": "completed", "backend": "tensorflow", **summary}))
        return run_dir
    return make


def _image(path):
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(path)
    return path


def test_predict_escapes_names_and_prints_whole_lines_when_piped(hand_made_run, tmp_path):
    run_dir = hand_made_run("escapes", class_names=["\x1b[31mred\x1b[0m", "line\nbreak", "ok"])
    folder = tmp_path / ("a_long_folder_name_" * 6)
    folder.mkdir()
    image = _image(folder / "bell\x07.png")
    out = cli("predict", str(run_dir), str(image), "--top", "3", env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    (line,) = out.stdout.splitlines()  # one whole line, however long
    assert line.startswith(str(folder)) and "\\x1b[31mred\\x1b[0m" in line and "line\\nbreak" in line


@pytest.mark.parametrize("field, value, fragment", [
    ("test_tta", 5, "summary.json: test_tta: expected text, got int"),
    ("test_tta", "x", "summary.json: test_tta: 'x' is not one of"),
    ("backend", 3, "summary.json: backend: expected text, got int"),
    ("backend", "x", "summary.json: backend: 'x' is not a backend"),
    ("class_names", "cat", "summary.json: class_names: expected a list of strings, got str"),
    ("class_names", [1, 2, 3], "summary.json: class_names: expected a list of strings"),
])
def test_predict_refuses_a_malformed_summary_in_one_line(hand_made_run, tmp_path, field, value,
                                                         fragment):
    run_dir = hand_made_run(f"bad-{field}-{type(value).__name__}", **{field: value})
    out = cli("predict", str(run_dir), str(_image(tmp_path / "x.png")))
    assert out.returncode == 2 and fragment in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_predict_feeds_a_grayscale_model_luminance(hand_made_run, tmp_path):
    run_dir = hand_made_run("gray", channels=1, class_names=["a", "b", "c"])
    out = cli("predict", str(run_dir), str(_image(tmp_path / "x.png")), "--json")
    assert out.returncode == 0, out.stderr
    (item,) = json.loads(out.stdout)
    assert {p["class"] for p in item["predictions"]} == {"a", "b", "c"}
