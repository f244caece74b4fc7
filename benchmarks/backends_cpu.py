"""Which backend on a CPU: steady training images/s of TensorFlow and JAX, same run.

    python benchmarks/backends_cpu.py [--data DIR/cifar-10-batches-py] [--repeats 2]

For ``recipes/default.toml`` and ``recipes/fast.toml``: ``cifarkit run`` on each
backend (one_device, 2 epochs of ``--steps`` steps on ``--limit`` images; the
second epoch is the steady one, summary.json's ``train_images_per_s``), the
backends interleaved, ``--repeats`` times; prints the medians and JAX/TensorFlow.
Without ``--data``, synthetic images in the CIFAR-10 format (speed only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rates(recipe: str, data: Path, limit: int, steps: int, repeats: int) -> dict[str, list]:
    out: dict[str, list] = {"tensorflow": [], "jax": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for backend in out:
                runs = Path(tmp) / f"{backend}-{r}"
                subprocess.run([sys.executable, "-m", "cifarkit", "run", recipe, "--backend",
                                backend, "--set", f"data.path={data}", "--set",
                                f"data.limit={limit}", "--set", "train.epochs=2", "--set",
                                f"train.steps_per_epoch={steps}", "--set", "train.tta=none",
                                "--set", "strategy.plugin=one_device", "--output", str(runs)],
                               check=True, capture_output=True)
                (run_dir,) = runs.iterdir()
                summary = json.loads((run_dir / "summary.json").read_text())
                out[backend].append(summary["train_images_per_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a cifar-10-batches-py folder")
    parser.add_argument("--limit", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from cifarkit.testing import write_cifar10

            data = write_cifar10(Path(tmp), n_train=args.limit, n_test=256)
        print(f"{'recipe':<10} {'tensorflow':>14} {'jax':>14} {'jax/tf':>8}")
        for recipe, steps in (("default", 30), ("fast", 3)):
            got = rates(recipe, data, args.limit, steps, args.repeats)
            tf, jx = (statistics.median(got[b]) for b in ("tensorflow", "jax"))
            print(f"{recipe:<10} {tf:>10,.0f} img/s {jx:>10,.0f} img/s {jx / tf:>8.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
