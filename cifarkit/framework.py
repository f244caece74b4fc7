"""The Keras backend (TensorFlow or JAX), chosen per run and started only when a run needs it.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so the choice
is made before anything imports Keras: :func:`select` sets it (cheap, no
import), :func:`start` imports Keras (and TensorFlow, quietly, on the
TensorFlow backend). A run on the JAX backend never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile

from .errors import CifarkitError, RecipeError

#: The backends cifarkit runs on; the first is the default.
BACKENDS = ("tensorflow", "jax")


def requested(backend: str | None) -> str:
    """The backend a run uses: ``backend`` (``--backend``, ``train.backend``) if set,
    else the ``KERAS_BACKEND`` environment variable, else TensorFlow."""
    if backend:
        return backend
    name = os.environ.get("KERAS_BACKEND", "").strip().lower() or BACKENDS[0]
    if name not in BACKENDS:
        raise RecipeError(f"KERAS_BACKEND={name}: cifarkit runs on the "
                          f"{' or '.join(BACKENDS)} backend; set train.backend or --backend, "
                          "or unset KERAS_BACKEND")
    return name


def active() -> str | None:
    """The backend Keras runs on in this process, or None if Keras is not imported yet."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None and hasattr(keras, "backend") else None


def select(backend: str, deterministic: bool = False) -> None:
    """Make ``backend`` the one Keras starts with (before Keras is imported)."""
    running = active()
    if running is not None and running != backend:
        raise CifarkitError(f"Keras is already running on the {running} backend in this process "
                            f"and cannot switch to {backend}; start a new process (the "
                            "cifarkit command does)")
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        raise CifarkitError("the jax backend needs JAX: pip install -e \".[jax]\" (CPU), or "
                            "JAX's CUDA build on a GPU machine (see docs/backends.md)")
    if backend == "jax" and deterministic and running is None:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:  # read when JAX starts
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()
    os.environ["KERAS_BACKEND"] = backend


def start(backend: str, deterministic: bool = False):
    """Select ``backend``, import Keras on it and return the ``keras`` module."""
    select(backend, deterministic)
    if backend == "tensorflow":
        return import_framework()[1]
    import keras

    return keras


def import_keras():
    """Keras on the selected backend (``KERAS_BACKEND``, set by :func:`select` for a run),
    with TensorFlow's start-up chatter hidden."""
    return start(requested(None))


def versions(backend: str) -> dict[str, str]:
    """Versions of Keras and the backend's framework (without importing another one)."""
    import keras

    out = {"keras": keras.__version__}
    if backend == "jax":
        import jax

        out["jax"] = jax.__version__
    else:
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    return out


def set_random_seed(keras, seed: int) -> None:
    """``keras.utils.set_random_seed``, which on the JAX backend would import TensorFlow
    (only to seed it, when it is installed): that import is refused for the call."""
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # `import tensorflow` fails
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del sys.modules["tensorflow"]


def sync_weights(model) -> None:
    """On JAX, put the latest step's weights back into the model's variables (``fit``
    keeps them outside the model until the epoch ends; the next step then starts from
    the variables). Call it before reading or writing weights during an epoch."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide what native code writes to fd 2; replay it if the block fails."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # pytest capture, notebooks
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        except BaseException:
            os.dup2(saved, fd)
            sink.seek(0)
            os.write(fd, sink.read())
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def import_framework():
    """Import and return ``(tensorflow, keras)`` (the TensorFlow backend's parts).

    TensorFlow's C++ start-up chatter (oneDNN notices, CUDA probes on machines
    without a GPU) is hidden; set ``TF_CPP_MIN_LOG_LEVEL=0`` to see TensorFlow's
    own logs during training.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _quiet_native_stderr():
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe; leaves logical devices configurable
    import keras
    import tensorflow as tf

    return tf, keras
