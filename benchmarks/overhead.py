#!/usr/bin/env python3
"""cifarkit's training loop against a bare jitted loop: what the framework costs per step.

    python benchmarks/overhead.py --backend jax --data DIR --json FILE [--model NAME]

In one run, with the same model, data, batch and optimizer (Adam 1e-3,
categorical cross-entropy, no augmentation, no validation), it times:

* cifarkit: ``cifarkit run`` (the code path users run) in a subprocess on the
  backend, steady training images/s from its timing.csv (epochs after the
  first, compilation removed);
* bare: one ``jax.jit``-compiled stateless train step (``model.stateless_call``
  plus ``optimizer.stateless_apply``) over batches already on the device.

It writes ``{"ratio": cifarkit img/s / bare img/s, ...}``. With no
``--model`` it uses a tiny seed_cnn (filters 4 and 8), where per-step
overhead dominates; ``--model airbench`` measures the fast recipe's network.
DIR is a ``cifar-10-batches-py`` folder; without ``--data``, synthetic images
of the same shape.
"""

from __future__ import annotations

import argparse
import functools
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TINY = {"plugin": "seed_cnn", "filters": [4, 8], "dropout": [0.1, 0.1], "dense_units": 8}


def model_table(name: str | None) -> dict:
    return dict(TINY) if name is None else {"plugin": name}


def recipe_text(model: dict, data: str, batch: int, epochs: int, steps: int, limit: int,
                steps_per_execution: int | str = "auto") -> str:
    """A recipe: the model alone, nothing else per step (no augmentation, no callbacks)."""
    import tomli_w

    return tomli_w.dumps({
        "name": "overhead", "seed": 0,
        "data": {"dataset": "cifar10", "path": data, "batch_size": batch, "limit": limit,
                 "validation_split": 0.0},
        "model": model, "strategy": {"plugin": "one_device"},
        "train": {"epochs": epochs, "steps_per_epoch": steps, "optimizer": "adam",
                  "learning_rate": 1e-3, "compilation_cache": "off",
                  "steps_per_execution": steps_per_execution},
    })


def time_cifarkit(backend: str, model: dict, data: str, batch: int, epochs: int, steps: int,
                  limit: int, steps_per_execution: int | str = "auto") -> float:
    """Steady training images/s of ``cifarkit run`` (epochs after the first)."""
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "overhead.toml"
        recipe.write_text(recipe_text(model, data, batch, epochs, steps, limit,
                                      steps_per_execution))
        env = {**os.environ, "KERAS_BACKEND": backend, "CIFARKIT_LOAD_PLUGINS": ""}
        done = subprocess.run([sys.executable, "-m", "cifarkit", "run", str(recipe),
                               "--backend", backend, "-o", str(Path(tmp) / "runs")],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"cifarkit run failed:\n{done.stderr[-3000:]}")
        (run_dir,) = (Path(tmp) / "runs").iterdir()
        rows = list(csv.DictReader((run_dir / "timing.csv").open()))[1:]
        seconds = sum(float(r["steady_train_time_s"]) for r in rows)
        return len(rows) * steps * batch / seconds


def time_bare(model_call: dict, x: np.ndarray, y: np.ndarray, batch: int, steps: int,
              repeats: int) -> float:
    """Images/s of a bare jitted stateless step over batches already on the device."""
    import jax

    from cifarkit.backends import get
    from cifarkit.core.registry import Registry
    from cifarkit.core.schema import PluginCall

    registry = Registry()
    registry.load_entrypoints(only="")
    info = registry.get("model", model_call["plugin"])
    params = {p.name: p.default for p in info.params if not p.required}
    params.update({k: v for k, v in model_call.items() if k != "plugin"})
    keras = get("jax").start(seed=0)  # (Keras's own seeding would import TensorFlow)
    model = registry.call(PluginCall("model", model_call["plugin"], params, "model"),
                          input_shape=x.shape[1:], num_classes=10, sample_images=x[:5000])
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.CategoricalCrossentropy()

    def loss(trainable, fixed, images, labels):
        probs, fixed = model.stateless_call(trainable, fixed, images, training=True)
        return loss_fn(labels, probs), fixed

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))  # state updated in place, as Keras does
    def step(trainable, fixed, opt, images, labels):
        (value, fixed), grads = jax.value_and_grad(loss, has_aux=True)(trainable, fixed,
                                                                        images, labels)
        trainable, opt = optimizer.stateless_apply(opt, grads, trainable)
        return trainable, fixed, opt, value

    n = steps * batch
    images = [jax.device_put(b) for b in x[:n].astype(np.float32).reshape(steps, batch, *x.shape[1:])]
    labels = [jax.device_put(b) for b in np.eye(10, dtype=np.float32)[y[:n]].reshape(steps, batch, 10)]
    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    rates = []
    for repeat in range(repeats + 1):  # the first pass compiles
        started = time.perf_counter()
        for i in range(steps):
            *state, value = step(*state, images[i], labels[i])
        jax.block_until_ready(value)
        if repeat:
            rates.append(n / (time.perf_counter() - started))
    return float(np.median(rates))


def load(data: str | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if data:
        from cifarkit.data import read_cifar10

        splits = read_cifar10(Path(data))
        return splits.x_train[:n], splits.y_train[:n], data
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n),
            "synthetic")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax", choices=["jax"])
    parser.add_argument("--data", help="a cifar-10-batches-py folder (default: synthetic)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--model", help="a model plugin (default: a tiny seed_cnn)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-execution", default="auto",
                        type=lambda v: v if v == "auto" else int(v),
                        help="cifarkit's train.steps_per_execution (default: auto)")
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    n = args.steps * args.batch
    x, y, source = load(args.data, n)
    data = args.data
    if data is None:  # cifarkit reads files: write the synthetic set in the CIFAR format
        from cifarkit.testing import write_cifar10

        data = str(write_cifar10(Path(tempfile.mkdtemp()), n_train=n, n_test=args.batch))
        x, y, _ = load(data, n)
    model = model_table(args.model)
    ours = time_cifarkit(args.backend, model, data, args.batch, args.epochs, args.steps, n,
                         args.steps_per_execution)
    bare = time_bare(model, x, y, args.batch, args.steps, repeats=args.epochs - 1)
    result = {"ratio": ours / bare, "cifarkit_images_per_s": ours, "bare_images_per_s": bare,
              "model": model, "batch": args.batch, "steps_per_epoch": args.steps,
              "epochs": args.epochs, "steps_per_execution": args.steps_per_execution,
              "backend": args.backend, "data": source}
    print(f"{model['plugin']} batch {args.batch}, steps_per_execution "
          f"{args.steps_per_execution}: cifarkit {ours:,.0f} img/s, bare jitted loop "
          f"{bare:,.0f} img/s, ratio {ours / bare:.3f} ({source})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
