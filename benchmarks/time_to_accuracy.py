"""Accuracy against wall time for finished cifarkit runs (the fast recipe's curve).

    python benchmarks/time_to_accuracy.py RUN_DIR [RUN_DIR ...] --out docs/fast-recipe.png \
        [--label "name of the first run" --label ...]

For each run: validation accuracy after each epoch, placed at the run's
cumulative epoch time (training plus validation, from timing.csv), and the
test accuracy from summary.json (with test-time augmentation when the recipe
used it) at the run's total wall time (which also counts loading the data,
building the model and scoring the test split). Prints the same figures as a
table.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def read_run(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = list(csv.DictReader((run_dir / "metrics.csv").open()))
    timing = list(csv.DictReader((run_dir / "timing.csv").open()))
    elapsed, points = 0.0, []
    for m, t in zip(metrics, timing):
        elapsed += float(t["epoch_time_s"])
        points.append((int(m["epoch"]), elapsed, float(m["val_accuracy"]) if m.get("val_accuracy") else None))
    return {"run_dir": str(run_dir), "label": f"{summary['recipe']} ({run_dir.name})", "points": points,
            "wall_time_s": summary.get("wall_time_s"), "test_accuracy": summary.get("test_accuracy"),
            "test_accuracy_without_tta": summary.get("test_accuracy_without_tta")}


def plot(runs: list[dict], out: Path, goal: float | None, budget_min: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=110)
    for run in runs:
        xs = [t / 60 for _, t, v in run["points"] if v is not None]
        ys = [100 * v for _, t, v in run["points"] if v is not None]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=f"{run['label']}: validation")
        if run["test_accuracy"] is not None and run["wall_time_s"]:
            ax.plot([run["wall_time_s"] / 60], [100 * run["test_accuracy"]], marker="*", markersize=12,
                    color=line.get_color(), linestyle="none",
                    label=f"test {100 * run['test_accuracy']:.2f} % at {run['wall_time_s'] / 60:.1f} min")
    if goal is not None:
        ax.axhline(100 * goal, color="grey", linestyle="--", linewidth=1, label=f"goal {100 * goal:g} %")
    if budget_min is not None:
        ax.axvline(budget_min, color="grey", linestyle=":", linewidth=1, label=f"{budget_min:g} min")
    ax.set_xlabel("minutes since the run started")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy against wall time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--goal", type=float, default=0.94, help="accuracy goal line (default 0.94)")
    parser.add_argument("--budget", type=float, default=30.0, help="time budget line, minutes (default 30)")
    parser.add_argument("--label", action="append", default=[],
                        help="legend label of the next run, in order (default: recipe and run directory)")
    args = parser.parse_args(argv)
    if len(args.label) > len(args.runs):
        parser.error(f"{len(args.label)} labels for {len(args.runs)} runs")
    runs = [read_run(r) for r in args.runs]
    for run, label in zip(runs, args.label):
        run["label"] = label
    for run in runs:
        print(run["label"])
        for epoch, t, v in run["points"]:
            print(f"  epoch {epoch:3d}  {t / 60:6.2f} min  val_accuracy {'-' if v is None else f'{v:.4f}'}")
        print(f"  test_accuracy {run['test_accuracy']}  (without tta: {run['test_accuracy_without_tta']})"
              f"  wall time {run['wall_time_s'] / 60:.2f} min")
    plot(runs, args.out, args.goal, args.budget)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
