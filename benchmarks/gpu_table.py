#!/usr/bin/env python3
"""One Markdown table from the runs benchmarks/gpu.sh made: python benchmarks/gpu_table.py OUT_DIR

One row per run directory (``runs-NAME/*/summary.json`` with ``runs-NAME.wall_s``
beside it), a mean row for the fast recipe's seeds, airbench94's recorded row,
and the overhead ratio from ``overhead.json`` where benchmarks/overhead.py wrote one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

#: airbench94 (PyTorch) on one H200 and the CIFAR-10 JPEG copy, 5 runs, 2026-11-26
#: (docs/benchmarks.md): mean test accuracy, training seconds.
AIRBENCH94 = ("airbench94 (PyTorch, recorded 2026-11-26, 5 runs)", "9.9", "90.53 % ± 0.14",
              "2.1–2.3", "–", "–", "–")


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


def runs(out: Path) -> list[tuple[str, dict, float]]:
    rows = []
    for folder in sorted(out.glob("runs-*"), key=lambda p: (not p.name.startswith("runs-fast"),
                                                           p.stat().st_mtime)):
        wall_file = folder.with_name(folder.name + ".wall_s")
        if not folder.is_dir() or not wall_file.exists():  # a run that failed
            continue
        (run_dir,) = folder.iterdir()
        summary = json.loads((run_dir / "summary.json").read_text())
        wall = float(wall_file.read_text())
        rows.append((folder.name.removeprefix("runs-"), summary, wall))
    return rows


def row(name: str, s: dict, wall: float) -> str:
    steady = s.get("steady_train_time_s")
    rate = f"{s['train_examples'] * s['epochs_run'] / steady:,.0f}" if steady else "?"
    return (f"| {name} | {s['epochs_run']} | {100 * s['test_accuracy']:.2f} % | "
            f"{steady:.2f} | {s.get('compile_time_s') or 0:.2f} | {rate} | {wall:.1f} |"
            if steady is not None else
            f"| {name} | {s['epochs_run']} | {100 * s['test_accuracy']:.2f} % | ? | ? | ? | "
            f"{wall:.1f} |")


def main(out: Path) -> None:
    rows = runs(out)
    versions = rows[0][1]["versions"]
    print(f"{device_name()}, JAX {versions.get('jax')}, Keras {versions['keras']}, "
          f"{date.today().isoformat()}, CIFAR-10 (JPEG copy)\n")
    print("| run | epochs | test accuracy | steady training s (compilation excluded) "
          "| compilation s | steady images/s | whole command s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, s, wall in rows:
        print(row(name, s, wall))
    fast = [s for name, s, _ in rows if name.startswith("fast")]
    if len(fast) > 1:
        mean = sum(s["test_accuracy"] for s in fast) / len(fast)
        steady = [s["steady_train_time_s"] for s in fast if s.get("steady_train_time_s")]
        print(f"| fast, mean of {len(fast)} seeds | {fast[0]['epochs_run']} | {100 * mean:.2f} % | "
              f"{sum(steady) / max(1, len(steady)):.2f} | | | |")
    print("| " + " | ".join(AIRBENCH94) + " |")
    overhead = out / "overhead.json"
    if overhead.exists():
        o = json.loads(overhead.read_text())
        print(f"\noverhead.py ({o['model']['plugin']}, batch {o['batch']}): cifarkit "
              f"{o['cifarkit_images_per_s']:,.0f} img/s, bare jitted loop "
              f"{o['bare_images_per_s']:,.0f} img/s, ratio {o['ratio']:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
