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
