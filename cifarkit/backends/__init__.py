"""The backend seam: one module per Keras backend behind one small interface.

Keras picks one Trainer per backend (``keras/src/backend/<name>/trainer.py``);
cifarkit likewise picks one :class:`Backend` when a run is built
(:func:`get`) and passes it along: nothing reads the backend from global
state afterwards, and no code outside this package branches on it (a plugin
that exists for one backend declares which: ``register(f, backend="jax")``).

Everything that differs between TensorFlow and JAX lives in
:mod:`cifarkit.backends.tensorflow` and :mod:`cifarkit.backends.jax`:
starting Keras on the backend (seeds, determinism, versions), the input
pipeline, the native strategy type and how a strategy is entered, replicas
and worker roles, the step loop (``fit``, and the multi-worker loop),
predictions outside the replicas, the compilation cache and the timing of
compiles.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so the choice
is made before anything imports Keras: :func:`select` sets it (cheap, no
import); :meth:`Backend.start` imports Keras. A run on the JAX backend never
imports TensorFlow. Importing this package imports neither.
"""

from __future__ import annotations

import importlib
import os
import sys
from cifarkit.errors import CifarkitError, RecipeError, allowed, printable
from cifarkit.backends.base import (SEED_STRIDE, Backend, Role, Stream,  # noqa: F401
                                    augment_batch, mixes_labels, seed_states, steps_per_pass)

#: The backends cifarkit runs on; the first is the default (and the one that reads
#: and checks SavedModels).
BACKENDS = ("tensorflow", "jax")
DEFAULT = BACKENDS[0]


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


def get(name: str | None = None) -> "Backend":
    """The :class:`Backend` called ``name`` (see :func:`requested` when unset); imports
    only cifarkit's module for it, not the framework."""
    name = requested(name)
    if name not in BACKENDS:
        raise CifarkitError(f"backend {printable(name)!r} is not one cifarkit runs on "
                            f"({allowed(BACKENDS)})")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.BACKEND


def import_keras():
    """Keras, started on the backend this process selected for its run (Keras's own
    choice is per process: ``KERAS_BACKEND``, set by :meth:`Backend.select`), with the
    backend's start-up chatter hidden. For plugins that need Keras before the run's
    model exists (a dataset downloading through ``keras.datasets``)."""
    return get(None).start()  # select() set KERAS_BACKEND: the run's backend


def sync_weights(model) -> None:
    """Put the latest step's weights into the model's variables, where a backend's
    step loop keeps them outside the model during an epoch (JAX's ``fit``); a no-op
    elsewhere. Call it before reading or writing weights during an epoch."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
