"""A run's plots: accuracy.png, loss.png and learning_rate.png (the curves, the best
epoch marked), confusion_matrix.png and confusion_matrix_normalized.png, titled with
the run's name (and test accuracy), written atomically (matplotlib's Agg backend, never
a display)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

from cifarkit.runs.artifacts import atomic_write


#: The curves a run draws, and each one's y-axis label.
CURVES = {"accuracy": "accuracy", "loss": "loss",
          "learning_rate": "learning rate (the epoch's mean)"}


def plot_curves(rows: list[dict[str, Any]], run_dir: Path, best_epoch: int | None = None,
                metrics: Iterable[str] = tuple(CURVES), best_by: str = "",
                title: str = "") -> list[Path]:
    """``<metric>.png``: training and validation curves per epoch, like the seed's figures,
    titled ``title: <metric> per epoch``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    written = []
    epochs = [r["epoch"] for r in rows]
    for metric in metrics:
        if not any(r.get(metric) is not None for r in rows):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        pairs = ((metric, "train"), (f"val_{metric}", "validation")) if metric != \
            "learning_rate" else ((metric, "learning rate"),)
        for key, label in pairs:
            values = [r.get(key) for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1,
                       label=f"best epoch ({best_epoch}" + (f", by {best_by})" if best_by else ")"))
        ax.set_xlabel("epoch")
        ax.set_ylabel(CURVES.get(metric, metric))
        what = f"{metric.replace('_', ' ')} per epoch"
        ax.set_title(f"{title}\n{what}" if title else what, fontsize=10)
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
                   title: str = "") -> list[Path]:
    """Two confusion-matrix heat maps, rows true classes and columns predictions: ``path``
    with the counts, and ``<path stem>_normalized.png`` with each row divided by its
    total (each class's share of predictions: the diagonal is its recall); ``title``
    (the run, its accuracy) above what each shows."""
    import numpy as np

    counts = np.asarray(confusion, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    normalized = path.with_name(f"{path.stem}_normalized{path.suffix}")
    head = f"{title}\n" if title else ""
    _heat_map(counts, class_names, path, f"{head}confusion matrix (test split)",
              lambda v: f"{int(v)}")
    _heat_map(shares, class_names, normalized,
              f"{head}confusion matrix, each row divided by its total",
              lambda v: "1" if v >= 1 else "0" if v == 0 else f"{v:.2f}".lstrip("0"),
              vmax=1.0)
    return [path, normalized]


def _heat_map(matrix, class_names: list[str], path: Path, title: str, text,
              vmax: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    k = len(class_names)
    side = min(max(4.5, 0.45 * k + 2.5), 24)
    fig, ax = plt.subplots(figsize=(side, side * 0.9), dpi=110)
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        threshold = (vmax or (matrix.max() if matrix.size else 0)) / 2
        for i in range(k):
            for j in range(k):
                ax.text(j, i, text(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > threshold else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
