"""A run's plots: accuracy.png and loss.png (the curves, the best epoch marked) and
confusion_matrix.png, written atomically (matplotlib's Agg backend, never a display)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

from cifarkit.runs.artifacts import atomic_write


def plot_curves(rows: list[dict[str, Any]], run_dir: Path, best_epoch: int | None = None,
                metrics: Iterable[str] = ("accuracy", "loss"), best_by: str = "") -> list[Path]:
    """``<metric>.png``: training and validation curves per epoch, like the seed's figures."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    written = []
    epochs = [r["epoch"] for r in rows]
    for metric in metrics:
        if not any(r.get(metric) is not None for r in rows):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [r.get(key) for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1,
                       label=f"best epoch ({best_epoch}" + (f", by {best_by})" if best_by else ")"))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch")
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        out = run_dir / f"{metric}.png"
        save_png(fig, out)
        written.append(out)
    return written


def save_png(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: Path,
                   title: str = "confusion matrix (test split)") -> None:
    """A confusion-matrix heat map: rows are true classes, columns predictions."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    matrix = np.asarray(confusion)
    k = len(class_names)
    side = min(max(4.5, 0.45 * k + 2.5), 24)
    fig, ax = plt.subplots(figsize=(side, side * 0.9), dpi=110)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > threshold else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    save_png(fig, path)
