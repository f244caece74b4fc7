"""Test-split evaluation from one pass of predictions: accuracy, loss, per-class
accuracy, the confusion matrix. Shared by ``cifarkit run`` and ``cifarkit
evaluate`` so both report the same numbers."""

from __future__ import annotations

from typing import Any

import numpy as np



#: How many views of each image :func:`predict_tta` predicts, by its ``tta``.
TTA_VIEWS = {"none": 1, "flip": 2, "flip_translate": 6}


def probabilities(backend, model, x: np.ndarray, batch_size: int, tta: str = "none", *,
                  outside_replicas: bool = False, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """The one prediction path of ``run``, ``evaluate`` and ``predict``: class
    probabilities for images ``x`` under test-time augmentation ``tta``
    (:func:`predict_tta`), through ``backend``'s prediction in chunks of whole
    batches. ``outside_replicas``: on this process alone (a run over several
    replicas); ``progress(done, total)`` after each chunk (and once before)."""
    predict_on = backend.predict if outside_replicas else backend.predict_keras
    total, done = TTA_VIEWS[tta] * len(x), [0]
    # progress about 8 times a pass, in whole batches of at most 2,048 images
    chunk = batch_size * max(1, min(2048, -(-len(x) // 8)) // batch_size)

    def predict(images):
        out = []
        for i in range(0, len(images), chunk):
            out.append(np.asarray(predict_on(model, images[i:i + chunk], batch_size), np.float32))
            done[0] += len(out[-1])
            if progress is not None:
                progress(done[0], total)
        return np.concatenate(out)

    if progress is not None:
        progress(0, total)
    return predict_tta(predict, np.asarray(x, np.float32), tta)


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


def numpy_loss(loss_fn, targets: np.ndarray, probs: np.ndarray) -> float:
    """The mean of Keras's cross-entropy ``loss_fn`` (a loss from :func:`cifarkit.losses.make_loss`, on
    probabilities) computed in NumPy: the same number, with no framework op to run or
    compile. ``targets`` are one-hot rows or class indices, as the loss takes them."""
    probs = np.asarray(probs, np.float64)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    probs = np.clip(probs, 1e-7, 1 - 1e-7)  # Keras's epsilon, as its cross-entropy clips
    k = probs.shape[-1]
    if targets.ndim == 1:  # sparse labels: no label smoothing
        return float(-np.log(probs[np.arange(len(targets)), targets.astype(np.int64)]).mean())
    smoothing = float(loss_fn.get_config().get("label_smoothing") or 0.0)
    targets = targets.astype(np.float64) * (1 - smoothing) + smoothing / k
    return float(-(targets * np.log(probs)).sum(axis=-1).mean())


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
        "loss": numpy_loss(loss_fn, targets, probs),
        "examples": int(len(labels)),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }
    if "top_5_accuracy" in metrics:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        out["top_5_accuracy"] = float((top5 == labels[:, None]).any(axis=1).mean())
    return out
