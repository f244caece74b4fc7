"""The Keras callback behind the ``mlflow`` plugin (imports Keras and MLflow; loaded
only when a recipe asks for it)."""

from __future__ import annotations

import logging
import math
import os
import time
import tomllib
from pathlib import Path

import keras
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from cifarkit.errors import masked_url

#: MLflow's limits: entries per log_batch call, characters per parameter value.
BATCH, VALUE_CHARS = 100, 6000
#: A cifarkit status as an MLflow run status.
STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
#: What the run directory holds that is logged as artifacts at the end.
ARTIFACTS = ("model.keras", "recipe.toml", "summary.json", "metrics.csv", "accuracy.png",
             "loss.png", "learning_rate.png", "confusion_matrix.png",
             "confusion_matrix_normalized.png")


def _flat(doc, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:VALUE_CHARS]
    return out


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """One line, in seconds, when the tracking store cannot be used: an HTTP server that
    does not answer, or a SQLite path that is not a database."""
    import socket
    from urllib.parse import urlsplit

    from cifarkit import PluginError

    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
        except OSError as exc:
            raise PluginError(f"mlflow: the tracking server {masked_url(uri)} cannot be reached "
                              f"({exc.strerror or exc}); start it, or unset "
                              "MLFLOW_TRACKING_URI to log beside the run directory") from None
    elif parts.scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///")
                    else parts.path)
        if path.exists():
            try:
                with open(path, "rb") as f:
                    head = f.read(16) if path.is_file() else b""
            except OSError as exc:
                raise PluginError(f"mlflow: {path}: cannot be read ({exc.strerror or exc})"
                                  ) from None
            if head and head != b"SQLite format 3\x00" or not path.is_file():
                raise PluginError(f"mlflow: {path} is not an SQLite database; remove it or "
                                  "set MLFLOW_TRACKING_URI")


class MlflowLogger(keras.callbacks.Callback):
    """Logs to one MLflow run, created when training first begins; its id is kept in the
    checkpoint (``get_state``), so a resume logs on into the same run."""

    def __init__(self, run_dir: Path, experiment: str):
        super().__init__()
        self.run_dir, self.experiment = Path(run_dir), experiment
        local = self.run_dir.parent
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{local / 'mlflow.db'}"
        self.artifacts = None if os.environ.get("MLFLOW_TRACKING_URI") else (
            local / "mlartifacts").as_uri()
        self.run_id: str | None = None
        #: the run header's line: where this run is logged
        self.header = f"logs to {masked_url(self.uri)}, experiment {experiment!r}" + (
            f" (mlflow ui --backend-store-uri {self.uri})" if self.artifacts else "")
        # a server that stops answering fails a request in seconds, not after minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        for name in ("mlflow", "alembic"):  # their set-up notes would break the run's display
            logging.getLogger(name).setLevel(logging.WARNING)

    def _client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def on_train_begin(self, logs=None):
        if self.run_id is not None:  # resumed: the run and its parameters exist
            self._client().update_run(self.run_id, status="RUNNING")
            return
        client = self._client()
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = (found.experiment_id if found is not None else
                         client.create_experiment(self.experiment, self.artifacts))
        self.run_id = client.create_run(experiment_id, run_name=self.run_dir.name,
                                        tags={"cifarkit.run_dir": str(self.run_dir)}).info.run_id
        recipe = tomllib.loads((self.run_dir / "recipe.toml").read_text(encoding="utf-8"))
        params = [Param(k, v) for k, v in _flat(recipe).items()]
        for i in range(0, len(params), BATCH):
            client.log_batch(self.run_id, params=params[i:i + BATCH])

    def on_epoch_end(self, epoch, logs=None):
        self._metrics({k: v for k, v in (logs or {}).items()}, step=epoch + 1)

    def _metrics(self, values: dict, step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()
                   if isinstance(v, (int, float)) and math.isfinite(float(v))]
        if metrics and self.run_id is not None:
            self._client().log_batch(self.run_id, metrics=metrics)

    def finish(self, run_dir: Path, summary: dict, status: str) -> None:
        """The test figures and the run directory's files, then the run's status."""
        if self.run_id is None:
            return
        client = self._client()
        try:
            self._metrics({k: summary.get(k) for k in ("test_accuracy", "test_loss",
                                                      "test_accuracy_without_tta")},
                          step=int(summary.get("epochs_run") or 0))
            for name in ARTIFACTS:
                if (run_dir / name).is_file():
                    client.log_artifact(self.run_id, str(run_dir / name))
        except Exception as exc:
            try:  # the MLflow run says it failed, not RUNNING forever
                client.set_terminated(self.run_id, "FAILED")
            except Exception:
                pass
            from cifarkit import PluginError

            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PluginError(f"mlflow: logging the run's results to {masked_url(self.uri)} "
                              f"failed ({first[:300]}); the MLflow run is marked FAILED") from None
        client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))

    def get_state(self) -> dict:
        return {"run_id": self.run_id}

    def set_state(self, state: dict) -> None:
        self.run_id = state.get("run_id")
