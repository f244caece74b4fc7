"""The benchmark's pieces that can be checked without timing anything."""

import importlib.util

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "run.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_flop_count_of_the_seed_model():
    keras = pytest.importorskip("keras")
    registry, recipe, layers, model_call = bench.default_augmentation()
    model = bench.build_model(registry, model_call)
    # forward multiply-adds of the six convolutions and two dense layers, x2 x3
    convs = [(32, 3, 64), (32, 64, 64), (16, 64, 128), (16, 128, 128), (8, 128, 256), (8, 256, 256)]
    forward = sum(2 * s * s * 9 * cin * cout for s, cin, cout in convs) + 2 * (4096 * 256 + 256 * 10)
    assert bench.training_flops_per_image(model) == 3 * forward
    assert 0.9e9 < 3 * forward < 0.95e9  # "about 0.93 GFLOP per training image"
    assert [type(layer).__name__ for layer in layers] == ["RandomAffine"]
    assert isinstance(model, keras.Model)


def _fake_run(run_dir, accuracies, seconds):
    import json

    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps(
        {"recipe": "fast", "wall_time_s": sum(seconds) + 30, "test_accuracy": 0.9,
         "test_accuracy_without_tta": 0.89}))
    rows = [f"{i},{a}" for i, a in enumerate(accuracies, 1)]
    (run_dir / "metrics.csv").write_text("epoch,val_accuracy\n" + "\n".join(rows) + "\n")
    rows = [f"{i},{s}" for i, s in enumerate(seconds, 1)]
    (run_dir / "timing.csv").write_text("epoch,epoch_time_s\n" + "\n".join(rows) + "\n")
    return run_dir


def test_time_to_accuracy_curve(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("tta_plot", ROOT / "benchmarks" / "time_to_accuracy.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    run = _fake_run(tmp_path / "a", [0.5, 0.8], [60, 120])
    points = plot.read_run(run)["points"]
    assert points == [(1, 60.0, 0.5), (2, 180.0, 0.8)]  # cumulative epoch time
    out = tmp_path / "curve.png"
    assert plot.main([str(run), "--out", str(out), "--label", "shipped"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert printed.startswith("shipped\n") and "3.50 min" in printed
    with pytest.raises(SystemExit):
        plot.main([str(run), "--out", str(out), "--label", "one", "--label", "two"])


def test_peak_rss_is_the_commands_own_not_this_processs():
    import sys

    import numpy as np

    held = np.ones(1 << 27)  # 1 GiB resident in this process
    used = bench.peak_rss_mib([sys.executable, "-c", "x = bytearray(300 << 20)"])
    assert held.sum() == 1 << 27
    assert 300 < used < 700  # the child's 300 MiB plus Python, not this process's 1 GiB


def test_gpu_table_reads_the_runs_gpu_sh_made(tmp_path, capsys, monkeypatch):
    import json

    spec = importlib.util.spec_from_file_location("gpu_table", ROOT / "benchmarks" / "gpu_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    monkeypatch.setattr(table, "device_name", lambda: "NVIDIA H200")
    for name, accuracy, steady, compile_s, wall in (("fast", 0.9061, 1.83, 21.0, 35.2),
                                                    ("default", 0.71, 6.75, 9.0, 60.0)):
        run_dir = tmp_path / f"runs-{name}" / f"{name}-20261127-000000"
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({
            "test_accuracy": accuracy, "steady_train_time_s": steady, "compile_time_s": compile_s,
            "train_examples": 45000, "epochs_run": 3, "versions": {"jax": "0.11.2", "keras": "3.15.1"}}))
        (tmp_path / f"runs-{name}.wall_s").write_text(str(wall))
    table.main(tmp_path)
    out = capsys.readouterr().out
    assert out.startswith("NVIDIA H200, JAX 0.11.2, Keras 3.15.1, ")
    assert "| fast | 3 | 90.61 % | 1.83 | 21.00 | 73,770 | 35.2 |" in out
    assert "| default | 3 | 71.00 % | 6.75 | 9.00 | 20,000 | 60.0 |" in out
    assert out.index("| fast |") < out.index("| default |") < out.index("| airbench94")


def test_the_overhead_benchmark_s_recipe_is_a_valid_one(registry, tmp_path):
    """benchmarks/overhead.py times `cifarkit run` on a recipe it writes: it must load, and
    hold nothing per step but the model (no augmentation, callbacks or validation)."""
    from cifarkit.core.recipe import load_recipe

    spec = importlib.util.spec_from_file_location("overhead", ROOT / "benchmarks" / "overhead.py")
    overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overhead)
    path = tmp_path / "r.toml"
    path.write_text(overhead.recipe_text(overhead.model_table(None), str(tmp_path), 64, 3, 10, 640))
    recipe = load_recipe(path, [], registry)
    assert recipe.augmentation == () and recipe.callbacks == ()
    assert recipe.data.validation_split == 0.0 and recipe.model.params["filters"] == [4, 8]
    assert recipe.train.steps_per_epoch == 10 and recipe.train.compilation_cache == "off"
