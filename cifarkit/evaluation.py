"""Test-split evaluation from one pass of predictions: accuracy, loss, per-class
accuracy, the confusion matrix (table and figure). Shared by ``cifarkit run``
and ``cifarkit evaluate`` so both report the same numbers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts


def make_loss(loss: str, label_smoothing: float = 0.0, reduction: str | None = "sum_over_batch_size"):
    """The Keras loss object for ``train.loss`` (and its label smoothing).

    ``reduction=None`` gives per-example losses (for a hand-written training loop).
    """
    import keras

    if loss == "categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing,
                                                    reduction=reduction)
    return keras.losses.SparseCategoricalCrossentropy(reduction=reduction)


def predict_tta(predict, x: np.ndarray, tta: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Probabilities for images ``x`` (n, h, w, c) under test-time augmentation ``tta``.

    ``predict`` maps an image array to probabilities. ``"flip"`` averages the
    probabilities of each image and its left-right mirror image.
    ``"flip_translate"`` (airbench's level 2) gives that average half the
    weight, and the other half to the same average over the image shifted by
    one pixel up-left and down-right (reflected at the border): six views.
    Returns ``(probabilities with tta, probabilities of the images alone)``.
    """
    def mirrored(images, first=None):
        first = predict(images) if first is None else first
        return (first + predict(np.ascontiguousarray(images[:, :, ::-1]))) / 2

    plain = predict(x)
    if tta == "none":
        return plain, plain
    if tta == "flip":
        return mirrored(x, plain), plain
    if tta == "flip_translate":
        h, w = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        shifted = [np.ascontiguousarray(padded[:, :h, :w]), np.ascontiguousarray(padded[:, 2:, 2:])]
        translated = sum(mirrored(v) for v in shifted) / len(shifted)
        return (mirrored(x, plain) + translated) / 2, plain
    raise ValueError(f"unknown tta {tta!r}")


def score(probs: np.ndarray, labels: np.ndarray, class_names: list[str], loss_fn,
          one_hot: bool, metrics: tuple[str, ...] = ("accuracy",)) -> dict[str, Any]:
    """Metrics of predicted probabilities ``probs`` (n, k) against integer ``labels``."""
    k = len(class_names)
    labels = labels.astype(np.int64)
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    targets = np.eye(k, dtype=np.float32)[labels] if one_hot else labels
    per_class = {}
    for i, name in enumerate(class_names):
        total = int(confusion[i].sum())
        per_class[name] = None if total == 0 else float(confusion[i, i] / total)
    out: dict[str, Any] = {
        "accuracy": float((predicted == labels).mean()),
        "loss": float(loss_fn(targets, probs.astype(np.float32))),
        "examples": int(len(labels)),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }
    if "top_5_accuracy" in metrics:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        out["top_5_accuracy"] = float((top5 == labels[:, None]).any(axis=1).mean())
    return out


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: Path,
                   title: str = "confusion matrix (test split)") -> None:
    """A confusion-matrix heat map: rows are true classes, columns predictions."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    artifacts.atomic_write(path, buf.getvalue())


def render(console, result: dict[str, Any], class_names: list[str], title: str) -> None:
    """Print accuracy, loss, per-class accuracy and the confusion matrix as rich tables."""
    from rich.table import Table

    console.print(f"[bold]{title}[/]: accuracy {100 * result['accuracy']:.2f} %, "
                  f"loss {result['loss']:.4f} on {result['examples']:,} examples", highlight=False)
    per = Table(title="per-class accuracy", title_justify="left")
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    per.add_column("examples", justify="right")
    for i, name in enumerate(class_names):
        acc = result["per_class_accuracy"][name]
        per.add_row(name, "-" if acc is None else f"{100 * acc:.1f} %",
                    str(sum(result["confusion_matrix"][i])))
    console.print(per)
    if len(class_names) <= 20:
        cm = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
        cm.add_column("")
        for name in class_names:
            cm.add_column(name[:6], justify="right")
        for name, row in zip(class_names, result["confusion_matrix"]):
            cm.add_row(name, *[str(v) for v in row])
        console.print(cm)
