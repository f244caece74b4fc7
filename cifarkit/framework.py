"""Importing TensorFlow and Keras quietly, only when a run needs them."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


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
    """Import and return ``(tensorflow, keras)``.

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
