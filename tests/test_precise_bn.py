"""Precise BatchNorm (issue 38): a short run's BatchNorm statistics are recomputed over
training batches before the test split; a run whose moving averages settled is left
as it was."""

import numpy as np
import pytest


def _model(momentum: float):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.BatchNormalization(momentum=momentum, name="bn0")(inputs)
    x = keras.layers.Conv2D(2, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(momentum=momentum, name="bn1")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    inner = keras.Model(inputs, outputs)
    return keras.Sequential([keras.Input((4, 4, 3)), inner])  # a nested model: found too


def test_the_statistics_become_the_mean_over_training_batches():
    from cifarkit.runs import precise_bn

    model = _model(0.99)
    x = np.random.default_rng(1).uniform(0, 255, (1024, 4, 4, 3)).astype(np.float32)
    done = precise_bn.recompute(model, x, batch_size=256, seed=3)
    assert done == {"batches": 4, "images": 1024, "layers": 2}
    order = np.random.default_rng(3).permutation(1024)
    batches = [x[order[i * 256:(i + 1) * 256]] for i in range(4)]
    bn0 = next(b for b in precise_bn.batch_norms(model) if b.name == "bn0")
    # the first layer sees the images themselves: its mean is the images' per-channel mean,
    # its variance the mean of the batches' (biased) variances
    np.testing.assert_allclose(np.asarray(bn0.moving_mean), x.mean(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(bn0.moving_variance),
                               np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0),
                               rtol=1e-3)
    assert bn0.momentum == 0.99  # put back


@pytest.mark.parametrize("setting, momentum, steps, expected", [
    ("auto", 0.99, 29, True),     # the default recipe after 2,048 images: 75 % still the start
    ("auto", 0.99, 35150, False),  # its full 50 epochs: settled
    ("auto", 0.6, 440, False),    # the fast recipe's 10 epochs
    ("on", 0.6, 440, True), ("off", 0.99, 1, False)])
def test_auto_recomputes_only_where_the_averages_have_not_settled(setting, momentum, steps,
                                                                  expected):
    from cifarkit.runs import precise_bn

    assert precise_bn.wanted(setting, _model(momentum), steps) is expected
    line = precise_bn.header(setting, _model(momentum), steps, 2048, 64)
    assert (line is not None) is expected
