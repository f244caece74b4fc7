#!/usr/bin/env python3
"""One Markdown table from the runs benchmarks/gpu.sh made: python benchmarks/gpu_table.py OUT_DIR"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path


def device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    if out:
        return out.splitlines()[0]
    import jax

    return f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind})"


def main(out: Path) -> None:
    rows = []
    for name in ("fast", "default"):
        (run_dir,) = (out / f"runs-{name}").iterdir()
        s = json.loads((run_dir / "summary.json").read_text())
        wall = float((out / f"runs-{name}.wall_s").read_text())
        rows.append((name, s, wall))
    versions = rows[0][1]["versions"]
    print(f"{device_name()}, JAX {versions.get('jax')}, Keras {versions['keras']}, "
          f"{date.today().isoformat()}, CIFAR-10 (JPEG copy)\n")
    print("| recipe | epochs | test accuracy | training s (compilation excluded) | compilation s "
          "| steady images/s | whole command s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, s, wall in rows:
        steady = s.get("steady_train_time_s")
        rate = s["train_examples"] * s["epochs_run"] / steady if steady else None
        print(f"| {name} | {s['epochs_run']} | {100 * s['test_accuracy']:.2f} % | "
              f"{steady:.2f} | {s.get('compile_time_s') or 0:.2f} | "
              f"{rate:,.0f} | {wall:.1f} |" if steady is not None else
              f"| {name} | {s['epochs_run']} | {100 * s['test_accuracy']:.2f} % | ? | ? | ? | {wall:.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
