"""cifarkit: train image classifiers from TOML recipes with pluggy plugins.

Importing this package is cheap: it never imports TensorFlow or Keras.
"""

from cifarkit.errors import (CifarkitError, DataError, OutputError, PluginError,
                     RecipeError, StrategyError)
from cifarkit.core.hookspecs import hookimpl
from cifarkit.core.params import Range
from cifarkit.version import __version__

__all__ = [
    "CifarkitError", "DataError", "OutputError", "PluginError", "RecipeError",
    "StrategyError", "Range", "RunInfo", "Splits", "create_model", "evaluate", "export",
    "hookimpl", "list_plugins", "list_runs", "load_run", "overfit", "predict", "run_file",
    "smoke", "sync_weights", "train", "__version__",
]


def __getattr__(name: str):
    if name == "Splits":  # what a dataset plugin returns; imported on first use (NumPy)
        from cifarkit.data import Splits

        return Splits
    if name == "run_file":  # where a callback plugin may write in the run directory
        from cifarkit.runs.folder import run_file

        return run_file
    if name in ("train", "load_run", "list_plugins", "RunInfo", "evaluate", "predict", "export",
                "create_model", "smoke", "overfit"):  # the Python API
        from cifarkit import api

        return getattr(api, name)
    if name == "list_runs":  # the run directories in a folder, as `cifarkit runs` reads them
        from cifarkit.runs.listing import list_runs

        return list_runs
    if name == "sync_weights":  # the step's weights into the model (JAX's fit keeps them out)
        from cifarkit.backends import sync_weights

        return sync_weights
    raise AttributeError(f"module 'cifarkit' has no attribute {name!r}")
