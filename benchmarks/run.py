"""cifarkit benchmarks: each figure against a baseline measured in the same run.

    pip install -e ".[bench]"
    python benchmarks/run.py --quick          # a few minutes
    python benchmarks/run.py                  # full: more steps, 3 repeats
    python benchmarks/run.py --json out.json

Measures, interleaving the variants and taking medians (these machines are
shared and noisy):

* training throughput (images/s, steady state) of the default recipe's model
  fed by cifarkit's tf.data pipeline with the default augmentation, against
  (a) the seed script's loop: the same model, ImageDataGenerator with the
  seed's settings, ``fit`` on its iterator, batch 64, and (b) the same model's
  ``fit`` on in-memory arrays without augmentation (the compute floor);
* augmentation throughput of the default augmentation pipeline alone against
  ImageDataGenerator with the same settings, and TensorFlow's resampling
  kernel alone (what one resampling pass costs, one batch at a time);
* share of the machine's peak: training FLOPs per image (counted from the
  layers) times images/s, over a 4096 x 4096 float32 matmul's FLOP/s (best of
  4); and the same for recipes/fast.toml's model and setup (bfloat16, batch
  1024) over a bfloat16 matmul;
* CLI start-up: ``cifarkit --help`` and ``cifarkit list-plugins`` against
  ``python -c "import tensorflow"``;
* peak memory (RSS) of a short ``cifarkit run`` of the default recipe;
* the default recipe on the JAX backend against the TensorFlow backend: two
  ``cifarkit run`` commands each (one_device, steady images/s from
  summary.json), interleaved (needs the jax extra).

Data: real CIFAR-10 (the JPEG copy in ../shared/data, converted once with
../shared/tools/cifar10_batches.py into a cache folder) when present, else
synthetic images of the same shape; the table says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CACHE = Path(os.environ.get("CIFARKIT_BENCH_CACHE", Path.home() / ".cache" / "cifarkit-bench"))
BATCH = 64


def load_data(limit: int) -> tuple[np.ndarray, np.ndarray, str]:
    from cifarkit.data import read_cifar10

    tool = SHARED / "tools" / "cifar10_batches.py"
    if (SHARED / "data" / "cifar10-jpeg.tar.gz").is_file() and tool.is_file():
        subprocess.run([sys.executable, str(tool), str(CACHE)], check=True, capture_output=True)
        splits = read_cifar10(CACHE / "cifar-10-batches-py")
        return splits.x_train[:limit], splits.y_train[:limit], "CIFAR-10 (JPEG copy)"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (limit, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, limit),
            "synthetic (../shared/data absent)")


def shipped_recipe(name: str):
    """Built-in plugins only, the recipe recipes/NAME.toml and its augmentation layers."""
    from cifarkit.core.recipe import load_recipe
    from cifarkit.core.registry import Registry

    registry = Registry()
    registry.load_entrypoints(only="")
    recipe = load_recipe(ROOT / "recipes" / f"{name}.toml", registry=registry)
    layers = [registry.call(a, seed=recipe.seed + i) for i, a in enumerate(recipe.augmentation)]
    return registry, recipe, layers


def default_augmentation():
    registry, recipe, layers = shipped_recipe("default")
    return registry, recipe, layers, recipe.model


def seed_generator():
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(rotation_range=15, width_shift_range=0.1, height_shift_range=0.1,
                              horizontal_flip=True)


def cifarkit_train_dataset(x, y, layers, seed=42, batch=BATCH):
    from cifarkit.backends import Stream, get
    from cifarkit.data import Prepared

    prepared = Prepared(x, y, None, None, x[:batch], y[:batch], [str(i) for i in range(10)])
    train, _ = get("tensorflow").datasets(prepared, layers, Stream(batch, 10, True, seed))
    return train


def time_augmentation(x, y, layers, batches: int) -> dict[str, float]:
    """Images/s of the augmentation alone: cifarkit's tf.data pipeline vs ImageDataGenerator."""
    ds = iter(cifarkit_train_dataset(x, y, layers))
    next(ds)  # build the pipeline
    start = time.perf_counter()
    for _ in range(batches):
        next(ds)
    ours = batches * BATCH / (time.perf_counter() - start)
    flow = seed_generator().flow(x.astype("float32"), np.eye(10)[y], batch_size=BATCH, seed=1)
    next(flow)
    start = time.perf_counter()
    for _ in range(batches):
        next(flow)
    theirs = batches * BATCH / (time.perf_counter() - start)
    return {"cifarkit": ours, "ImageDataGenerator": theirs, "kernel": resampling_kernel_rate(x, batches)}


def resampling_kernel_rate(x, batches: int) -> float:
    """Images/s of TensorFlow's resampling kernel alone (ImageProjectiveTransformV3,
    bilinear, float32, batches of 64, identity transform, one batch at a time):
    what resampling each image once costs, as random_affine does; the tf.data
    pipeline can beat it only by running batches side by side."""
    import tensorflow as tf

    images = tf.constant(x[:BATCH].astype("float32"))
    transforms = tf.tile(tf.constant([[1.0, 0, 0, 0, 1.0, 0, 0, 0]]), [BATCH, 1])
    resample = tf.function(lambda im: tf.raw_ops.ImageProjectiveTransformV3(
        images=im, transforms=transforms, output_shape=[images.shape[1], images.shape[2]],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST"))
    resample(images)
    start = time.perf_counter()
    for _ in range(batches):
        out = resample(images)
    out.numpy()
    return batches * BATCH / (time.perf_counter() - start)


class _StepTimer:
    def __init__(self, skip: int, batch: int = BATCH):
        import keras

        outer = self

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch + 1 == skip:
                    outer.start = time.perf_counter()
                outer.end = time.perf_counter()
                outer.steps = batch + 1 - skip

        self.callback = Timer()
        self.start = self.end = 0.0
        self.steps = 0
        self.batch = batch

    def images_per_s(self) -> float:
        return self.steps * self.batch / (self.end - self.start)


def build_model(registry, model_call):
    import keras

    keras.utils.set_random_seed(0)
    model = registry.call(model_call, input_shape=(32, 32, 3), num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def time_training(variant: str, x, y, layers, registry, model_call, steps: int, skip: int = 5) -> float:
    """Steady-state training images/s of one variant (the first ``skip`` steps excluded)."""
    model = build_model(registry, model_call)
    timer = _StepTimer(skip)
    total = steps + skip
    if variant == "floor":
        n = total * BATCH
        xs, ys = x[:n].astype("float32"), np.eye(10, dtype="float32")[y[:n]]
        model.fit(xs, ys, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[timer.callback])
    elif variant == "seed":
        flow = seed_generator().flow(x.astype("float32"), np.eye(10, dtype="float32")[y],
                                     batch_size=BATCH, seed=1)
        model.fit(flow, steps_per_epoch=total, epochs=1, verbose=0, callbacks=[timer.callback])
    else:
        ds = cifarkit_train_dataset(x, y, layers)
        model.fit(ds, steps_per_epoch=total, epochs=1, shuffle=False, verbose=0,
                  callbacks=[timer.callback])
    return timer.images_per_s()


def training_flops_per_image(model) -> float:
    """Forward multiply-adds of Conv2D and Dense layers x 2 (FLOPs) x 3 (forward + backward)."""
    import keras

    flops = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return 3 * flops


def matmul_flops(n: int = 4096, repeats: int = 4, dtype: str = "float32") -> float:
    """FLOP/s of an n x n matmul (the best of ``repeats``: the machine's attainable peak)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    tf.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def time_fast_training(x, y, steps: int, skip: int = 2) -> tuple[float, float]:
    """Steady-state images/s of recipes/fast.toml's model and training setup
    (bfloat16, batch 1024, its augmentation), and its training FLOPs per image."""
    import keras

    from cifarkit.runs.build import build_model as build_recipe_model
    from cifarkit.runs.build import compile_model

    registry, recipe, layers = shipped_recipe("fast")
    batch = recipe.data.batch_size
    keras.utils.set_random_seed(0)
    model = build_recipe_model(registry, recipe, (32, 32, 3), 10, x)
    compile_model(model, recipe, registry, recipe.train.learning_rate)
    timer = _StepTimer(skip, batch)
    model.fit(cifarkit_train_dataset(x, y, layers, batch=batch), steps_per_epoch=steps + skip,
              epochs=1, shuffle=False, verbose=0, callbacks=[timer.callback])
    return timer.images_per_s(), training_flops_per_image(model)


def time_command(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - start


def startup(repeats: int) -> dict[str, float]:
    exe = [sys.executable, "-m", "cifarkit"]
    runs: dict[str, list[float]] = {"cifarkit --help": [], "cifarkit list-plugins": [],
                                    "python -c 'import tensorflow'": []}
    for _ in range(repeats):  # interleaved
        runs["cifarkit --help"].append(time_command([*exe, "--help"]))
        runs["cifarkit list-plugins"].append(time_command([*exe, "list-plugins"]))
        runs["python -c 'import tensorflow'"].append(time_command([sys.executable, "-c", "import tensorflow"]))
    return {k: statistics.median(v) for k, v in runs.items()}


def peak_rss_mib(args: list[str]) -> float:
    """Run ``args`` (output captured) and return its peak RSS in MiB.

    The command is started by a small Python launcher that reports its own
    child's peak: a child forked straight from this (large) process would
    count this process's resident memory as its own (Linux keeps the forking
    parent's high-water mark across exec).
    """
    launcher = ("import resource, subprocess, sys; "
                "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", launcher, *args],
                          check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def peak_rss_of_run(data_path: Path | None, limit: int, steps: int) -> float:
    """Peak RSS (MiB) of ``cifarkit run recipes/default.toml`` for one short epoch."""
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        sets = ["--set", f"data.limit={limit}", "--set", "train.epochs=1",
                "--set", f"train.steps_per_epoch={steps}"]
        if data_path is not None:
            sets += ["--set", f"data.path={data_path}"]
        else:  # synthetic data in the real format
            from cifarkit.testing import write_cifar10

            sets += ["--set", f"data.path={write_cifar10(Path(out), n_train=limit, n_test=256)}"]
        return peak_rss_mib([sys.executable, "-m", "cifarkit", "run", str(ROOT / "recipes" / "default.toml"),
                             *sets, "--output", out])


def backend_rates(data_path: Path | None, limit: int, steps: int, repeats: int) -> dict[str, list]:
    """Steady training images/s of ``cifarkit run recipes/default.toml`` on each backend
    (one_device, ``steps`` steps per epoch, 2 epochs: the second is the steady one),
    interleaved; the figure is summary.json's ``train_images_per_s``."""
    import tempfile

    rates: dict[str, list] = {"tensorflow": [], "jax": []}
    with tempfile.TemporaryDirectory() as out:
        if data_path is None:
            from cifarkit.testing import write_cifar10

            data_path = write_cifar10(Path(out) / "data", n_train=limit, n_test=256)
        for r in range(repeats):
            for backend in rates:
                runs = Path(out) / f"{backend}-{r}"
                subprocess.run([sys.executable, "-m", "cifarkit", "run",
                                str(ROOT / "recipes" / "default.toml"), "--backend", backend,
                                "--set", f"data.path={data_path}", "--set", f"data.limit={limit}",
                                "--set", "train.epochs=2", "--set", f"train.steps_per_epoch={steps}",
                                "--set", "strategy.plugin=one_device", "--output", str(runs)],
                               check=True, capture_output=True)
                (run_dir,) = runs.iterdir()
                rates[backend].append(json.loads((run_dir / "summary.json").read_text())
                                      ["train_images_per_s"])
    return rates


def cpu_description() -> str:
    """The CPU's model name, family/model numbers and its wide-vector flags (Linux), or platform's guess.

    Two machines with one model name can differ almost twofold in speed (two
    2-core "AMD EPYC" machines here did), so results name the family too.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    flags = [f for f in fields.get("flags", "").split() if f in wanted]
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}; {' '.join(flags) or 'no AVX2'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, one repeat (a few minutes)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    repeats, steps, aug_batches = (1, 15, 40) if quick else (3, 60, 150)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from rich.console import Console
    from rich.table import Table

    from cifarkit.backends.tensorflow import import_framework

    console = Console(width=None if sys.stdout.isatty() else 120)
    started = time.perf_counter()
    x, y, source = load_data(limit=4096 if quick else 20000)
    tf, keras = import_framework()
    registry, recipe, layers, model_call = default_augmentation()

    cpu = cpu_description()
    console.print(f"data: {source}; mode: {'quick' if quick else 'full'}; repeats: {repeats}")
    console.print(f"machine: {os.cpu_count()} CPUs, {cpu}")
    train = {"cifarkit": [], "seed": [], "floor": []}
    augment = {"cifarkit": [], "ImageDataGenerator": [], "kernel": []}
    for r in range(repeats):  # interleave the variants within each repeat
        for variant in ("cifarkit", "seed", "floor"):
            train[variant].append(time_training(variant, x, y, layers, registry, model_call, steps))
            console.print(f"  repeat {r + 1}: training {variant}: {train[variant][-1]:,.0f} images/s")
        for k, v in time_augmentation(x, y, layers, aug_batches).items():
            augment[k].append(v)
    med = {k: statistics.median(v) for k, v in train.items()}
    aug = {k: statistics.median(v) for k, v in augment.items()}
    flops = training_flops_per_image(build_model(registry, model_call))
    fast = [time_fast_training(x, y, 4 if quick else 10) for _ in range(repeats)]
    fast_ips, fast_flops = statistics.median(f[0] for f in fast), fast[0][1]
    console.print(f"  fast recipe training: {', '.join(f'{f[0]:,.0f}' for f in fast)} images/s")
    peak = matmul_flops()
    peak_bf16 = matmul_flops(dtype="bfloat16")
    start = startup(3 if quick else 5)
    data_dir = CACHE / "cifar-10-batches-py" if source.startswith("CIFAR") else None
    rss = peak_rss_of_run(data_dir, 2048, 10 if quick else 40)
    by_backend = backend_rates(data_dir, 2048, 15 if quick else 40, repeats)
    backend = {k: statistics.median(v) for k, v in by_backend.items()}
    console.print("  default recipe by backend: " + ", ".join(
        f"{k} {', '.join(f'{r:,.0f}' for r in v)} images/s" for k, v in by_backend.items()))

    tf_import = start["python -c 'import tensorflow'"]
    rows = [
        ("training: cifarkit vs seed script (ImageDataGenerator loop)", f"{med['cifarkit']:,.0f} img/s",
         f"{med['seed']:,.0f} img/s", med["cifarkit"] / med["seed"], ">= 1"),
        ("training: cifarkit vs no-augmentation floor (in-memory fit)", f"{med['cifarkit']:,.0f} img/s",
         f"{med['floor']:,.0f} img/s", med["cifarkit"] / med["floor"], ">= 0.95"),
        ("augmentation alone: cifarkit vs ImageDataGenerator", f"{aug['cifarkit']:,.0f} img/s",
         f"{aug['ImageDataGenerator']:,.0f} img/s", aug["cifarkit"] / aug["ImageDataGenerator"], ">= 10"),
        ("augmentation: TensorFlow's resampling kernel alone, one batch at a time, vs ImageDataGenerator",
         f"{aug['kernel']:,.0f} img/s", f"{aug['ImageDataGenerator']:,.0f} img/s",
         aug["kernel"] / aug["ImageDataGenerator"], "-"),
        ("share of peak: FLOPs/img x img/s / float32 matmul FLOP/s",
         f"{flops * med['cifarkit'] / 1e9:,.1f} GFLOP/s", f"{peak / 1e9:,.1f} GFLOP/s",
         flops * med["cifarkit"] / peak, "-"),
        ("fast recipe (airbench, bfloat16, batch 1024): share of bfloat16 matmul peak",
         f"{fast_ips:,.0f} img/s = {fast_flops * fast_ips / 1e9:,.1f} GFLOP/s",
         f"{peak_bf16 / 1e9:,.1f} GFLOP/s", fast_flops * fast_ips / peak_bf16, "-"),
        ("start-up: cifarkit --help vs import tensorflow", f"{start['cifarkit --help']:.2f} s",
         f"{tf_import:.2f} s", start["cifarkit --help"] / tf_import, "< 0.1"),
        ("start-up: cifarkit list-plugins vs import tensorflow", f"{start['cifarkit list-plugins']:.2f} s",
         f"{tf_import:.2f} s", start["cifarkit list-plugins"] / tf_import, "< 0.1"),
        ("peak RSS of a short default-recipe run", f"{rss:,.0f} MiB", "-", None, "-"),
        ("default recipe on the JAX backend vs the TensorFlow backend (cifarkit run, steady)",
         f"{backend['jax']:,.0f} img/s", f"{backend['tensorflow']:,.0f} img/s",
         backend["jax"] / backend["tensorflow"], "-"),
    ]
    table = Table(title=f"cifarkit benchmarks ({'quick' if quick else 'full'}; data: {source})",
                  title_justify="left")
    for col in ("measurement", "cifarkit", "baseline", "ratio", "goal"):
        table.add_column(col, justify="left" if col == "measurement" else "right")
    for what, ours, base, ratio, goal in rows:
        table.add_row(what, ours, base, "-" if ratio is None else f"{ratio:.3f}", goal)
    console.print(table)
    console.print(f"model: {recipe.model.plugin}, {flops / 1e9:.2f} GFLOP per training image; "
                  f"batch {BATCH}; {steps} timed steps after 5 warm-up steps; wall time "
                  f"{time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "mode": "quick" if quick else "full", "data": source,
            "machine": {"cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
                        "python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__},
            "training_images_per_s": train, "augmentation_images_per_s": augment,
            "training_flops_per_image": flops, "matmul_flops_per_s": peak,
            "matmul_bfloat16_flops_per_s": peak_bf16, "fast_recipe_images_per_s": [f[0] for f in fast],
            "fast_recipe_training_flops_per_image": fast_flops, "startup_s": start,
            "peak_rss_mib": rss, "default_recipe_images_per_s_by_backend": by_backend,
            "rows": [{"measurement": w, "cifarkit": o, "baseline": b, "ratio": r, "goal": g}
                     for w, o, b, r, g in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
