"""One run directory as Python sees it: :class:`RunInfo`, what ``cifarkit.train`` returns
and ``cifarkit.load_run`` reads, with the operations the commands offer on a run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class RunInfo:
    """A run directory and its summary.json (``status``, ``test_accuracy``,
    ``epochs_run``, ``best_epoch``, ...).

    Example::

        run = cifarkit.load_run("runs/fast-20261208-101500")
        model = run.model()                      # a plain Keras model
        probs = run.predict(images)              # (n, 10) for a uint8 array (n, 32, 32, 3)
        run.export("model.onnx", format="onnx")  # checked against Keras on real images
    """

    run_dir: Path
    summary: Mapping[str, Any] = field(repr=False)

    @property
    def status(self) -> str | None:
        return self.summary.get("status")

    @property
    def test_accuracy(self) -> float | None:
        return self.summary.get("test_accuracy")

    def metrics(self) -> list[dict[str, float | int | None]]:
        """metrics.csv: one dict per epoch (``epoch`` an int; ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``, ``lr``, ...)."""
        from cifarkit.runs.listing import read_metrics

        rows = read_metrics(self.run_dir)
        return [{**r, "epoch": int(r["epoch"])} if isinstance(r.get("epoch"), float)
                and r["epoch"].is_integer() else r for r in rows]

    def model(self, backend: str | None = None):
        """The run's model.keras as a Keras model (read once and checked before Keras
        loads it), on ``backend`` (default: the backend the run trained on)."""
        from cifarkit.runs.inference import load_run_model

        return load_run_model(self.run_dir, backend).model

    def predict(self, images, top: int = 3, backend: str | None = None):
        """Class probabilities: for an array of images (n, h, w, c; raw 0-255 values) an
        (n, classes) array, with the run's test-time augmentation; for a list of image
        files, each file's ``top`` classes as ``cifarkit predict --json`` gives them."""
        from cifarkit.arguments import paths
        from cifarkit.runs.inference import load_run_model, predict_images

        if hasattr(images, "shape"):
            return load_run_model(self.run_dir, backend).probabilities(images)
        return predict_images(self.run_dir, paths("images", images), top, backend)

    def evaluate(self, data: str | os.PathLike | None = None, backend: str | None = None,
                 trust_run: bool = False) -> dict[str, Any]:
        """``cifarkit evaluate`` for this run: its test split (or ``data``'s); the
        files go to RUN_DIR/evaluation."""
        from cifarkit.runs.inference import evaluate_run

        return evaluate_run(self.run_dir, None if data is None else str(data),
                            backend=backend, trust_run=trust_run)

    def export(self, path: str | os.PathLike | None = None, format: str = "onnx",
               backend: str | None = None) -> dict[str, Any]:
        """``cifarkit export`` for this run: the model as ``format`` ("onnx" or
        "saved_model") at ``path`` (default RUN_DIR/export/...)."""
        from cifarkit.runs.export import export_run

        return export_run(self.run_dir, format, None if path is None else Path(path), backend)



