"""Built-in experiment trackers: callback plugins that log a run elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

import cifarkit
from cifarkit import PluginError


def mlflow(run_dir: Path, experiment: str = "cifarkit"):
    """Log the run to MLflow: the resolved recipe as parameters, each epoch's metrics,
    the test figures, and model.keras, the plots, recipe.toml and summary.json as
    artifacts.

    It logs to ``MLFLOW_TRACKING_URI`` when that is set; else to a SQLite store
    beside the run directory (``mlflow.db`` and ``mlartifacts/`` in its parent:
    ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``). A resumed run
    continues the same MLflow run. Needs the extra: ``pip install -e ".[mlflow]"``.

    Args:
        experiment: the MLflow experiment the run is logged under.
    """
    try:
        import mlflow as _  # noqa: F401
    except ImportError:
        raise PluginError('mlflow: this callback needs MLflow: pip install -e ".[mlflow]"') \
            from None
    from cifarkit_plugins._mlflow import MlflowLogger, check_reachable

    logger = MlflowLogger(run_dir, experiment)
    check_reachable(logger.uri)  # before training, in seconds: not after minutes of retries
    return logger


@cifarkit.hookimpl
def register_callbacks(register):
    register(mlflow)


@cifarkit.hookimpl
def run_finish(run, status):
    """model.keras and the plots exist only once the run has finished: log them then."""
    module = sys.modules.get("cifarkit_plugins._mlflow")  # imported by a recipe that uses it
    if module is None:
        return
    for callback in run.callbacks:
        if isinstance(callback, module.MlflowLogger):
            callback.finish(run.run_dir, dict(run.summary), status)
