"""Hook specifications: the contract between cifarkit and its plugins.

A plugin is a Python module (or any object) with hook implementations. Each
hook receives a ``register`` callback; the plugin calls it once per factory::

    import cifarkit

    @cifarkit.hookimpl
    def register_models(register):
        register(tiny_cnn)            # name defaults to the function's name

    def tiny_cnn(input_shape, num_classes, width: int = 32):
        \"\"\"A two-layer CNN for smoke tests.\"\"\"
        import keras                  # import Keras inside the factory
        ...

``register(factory, name=None, backend=None)``: ``name`` (default: the
factory's ``__name__``) is what recipes write after ``plugin =``;
``backend`` ("tensorflow" or "jax") declares a factory that exists for one
backend only (register one per backend under the same name, with the same
parameters, for a plugin that needs backend code, as strategies do). The factory's
docstring gives the one-line summary (first line) and parameter
descriptions (a Google-style ``Args:`` section).

Parameters. Every parameter of the factory is a recipe parameter, except the
*injected* names listed per hook below, which cifarkit supplies. Recipe
parameters are keyword parameters with a type annotation (``int``, ``float``,
``bool``, ``str``, ``pathlib.Path``, ``Literal[...]``, ``list[T]``,
``T | None``, ``Annotated[T, cifarkit.Range(min, max)]``) and, unless
required, a default. cifarkit checks a recipe's table against this
declaration before anything heavy starts: unknown keys, wrong types, values
out of range and missing required parameters are user errors (exit status
2). Defaults are filled in and written to the run directory's resolved
``recipe.toml``. A factory may also raise :class:`cifarkit.PluginError` for a
combination of values it cannot accept.

Import-light. ``cifarkit list-plugins`` imports plugin modules to read their
metadata, so a plugin module must not import TensorFlow or Keras at its top
level: import them inside the factory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pluggy

from cifarkit.core.schema import DataConfig, _schema

hookspec = pluggy.HookspecMarker("cifarkit")
hookimpl = pluggy.HookimplMarker("cifarkit")


@hookspec
def register_augmentations(register):
    """Register augmentation factories.

    A factory returns one Keras 3 layer (``keras.layers.*``, or a
    ``keras.layers.Pipeline`` of them) that takes a batch of images, float32,
    shape ``(batch, height, width, channels)``, pixel values 0-255, and
    returns a batch of the same shape and range. cifarkit applies the
    recipe's ``[[augmentation]]`` entries in order, batch-wise on the
    training split only (never on validation or test data), calling each
    layer with ``training=True``: inside the tf.data pipeline on the
    TensorFlow backend, in one ``jax.jit``-compiled function on the JAX
    backend (so the layer must trace: plain ``keras.ops`` and
    ``keras.random`` with a ``SeedGenerator``).

    Injected: ``seed`` (int: the recipe's seed plus the entry's position, for
    reproducible randomness).
    """


@hookspec
def register_models(register):
    """Register model factories.

    A factory returns an unbuilt-or-built ``keras.Model`` whose input is a
    batch of raw images, float32, shape ``(batch, *input_shape)``, pixel
    values 0-255 (any scaling happens inside the model), and whose output is
    ``num_classes`` probabilities (softmax). It must use only layers that
    ship with Keras, so that the saved ``model.keras`` loads with plain
    ``keras.models.load_model``. cifarkit calls it inside the strategy's
    scope.

    Injected: ``input_shape`` (tuple ``(height, width, channels)``),
    ``num_classes`` (int), ``sample_images`` (uint8 NumPy array ``(n,
    height, width, channels)`` of up to 5,000 training images, never
    validation or test images, for data-dependent initialisation; declare
    the parameter only if the factory uses it).
    """


@hookspec
def register_strategies(register):
    """Register distribution-strategy factories.

    A factory returns a ``tf.distribute.Strategy`` on the TensorFlow backend
    and a keras.distribution ``DataParallel`` or ``ModelParallel`` on the JAX
    backend. Strategies are one of the two places where backend code belongs,
    so a strategy is usually registered once per backend under one name,
    each form declaring its backend and the same parameters, so that a recipe
    means the same on both::

        register(mirrored_tf, name="mirrored", backend="tensorflow")
        register(mirrored_jax, name="mirrored", backend="jax")

    cifarkit calls the form for the run's backend; a strategy with no form
    for it is a one-line error naming the backends it has. If the hardware
    it asks for is not present, a factory raises
    :class:`cifarkit.StrategyError` naming what it tried and what to use.

    Injected: none.
    """


@hookspec
def register_callbacks(register):
    """Register training-callback factories.

    A factory returns a ``keras.callbacks.Callback``; cifarkit passes the
    recipe's ``[[callbacks]]`` to ``Model.fit`` in order, after its own
    metrics logger and before its reporter.

    Injected: ``run_dir`` (``pathlib.Path`` of this run's directory; write
    files only inside it, at paths from ``cifarkit.run_file(run_dir, name,
    what)``, which refuses a name that escapes it or is one of cifarkit's
    own files, in one line), ``learning_rate`` (float: the optimizer's base
    learning rate, after ``train.learning_rate_scaling``; for schedules).
    """


@hookspec
def register_datasets(register):
    """Register dataset factories.

    A factory returns a :class:`cifarkit.data.Splits`: ``x_train`` and
    ``x_test`` as uint8 NumPy arrays of shape ``(n, height, width,
    channels)``, ``y_train`` and ``y_test`` as integer arrays of shape
    ``(n,)`` with values in ``[0, len(class_names))``, and ``class_names``.
    It must not import TensorFlow. Missing, unreadable or malformed data is
    a :class:`cifarkit.DataError` naming the file. The recipe's ``[data]``
    table holds the factory's parameters beside cifarkit's own keys
    (``dataset``, ``validation_split``, ``batch_size``, ``limit``).

    Injected: none.
    """


@hookspec
def register_optimizers(register):
    """Register optimizer factories.

    A factory returns a ``keras.optimizers.Optimizer``. The recipe names it
    with ``train.optimizer = "name"`` or ``train.optimizer = {plugin =
    "name", ...parameters}``.

    Injected: ``learning_rate`` (float, from ``train.learning_rate``).
    """


@hookspec
def register_commands(register):
    """Register commands of the ``cifarkit`` command line (as simonw/llm's plugins do).

    ``register(name, handler, *, help, arguments=None, description=None)``:
    ``handler(args)`` runs the command (``args``: the parsed ``argparse.Namespace``)
    and returns its exit status (None: 0); ``arguments(parser)`` adds its arguments
    to its ``argparse`` parser; ``help`` is the line ``cifarkit --help`` and
    ``list-plugins`` show. A :class:`cifarkit.CifarkitError` from the handler is
    one line, exit status 2, as for every command. A name that a built-in command
    (or an earlier plugin's) has is refused as a clash. Import heavy libraries inside
    the handler: every ``cifarkit`` start reads the commands.
    """


# -- the run's lifecycle ------------------------------------------------------

@hookspec
def run_start(run):
    """Called once per run, after the run is built and its directory written, just
    before training.

    ``run`` is a read-only :class:`cifarkit.runs.context.RunContext`:
    ``run.recipe``, ``run.run_dir``, ``run.backend`` (its name), ``run.model``,
    ``run.class_names``, ``run.steps``, ``run.replicas``, ``run.batch_size``,
    ``run.callbacks``, ``run.rows``, ``run.summary``; a plugin adds a callback
    with ``run.add_callback(callback)`` (here only), a file with
    ``run.artifact(NAME)`` (a path to write) and a number to summary.json with
    ``run.add_metric(NAME, VALUE)``. Setting an attribute (replacing the model,
    say) is one line naming the plugin. An exception stops the run (status
    ``failed``); a :class:`cifarkit.CifarkitError` is one line naming the plugin.
    """


@hookspec(firstresult=True)
def run_fit(run):
    """Train the run's remaining epochs.

    ``run``: the run's read-only context (see ``run_start``). cifarkit's own
    implementation runs last (``trylast``): Keras's ``fit`` on the run's
    backend (or its multi-worker loop). Wrap it to act around training (time it, profile it, open a
    tracker's session)::

        @cifarkit.hookimpl(wrapper=True)
        def run_fit(run):
            started = time.perf_counter()
            result = yield          # the training; its exception is raised here
            print(f"fit took {time.perf_counter() - started:.1f} s")
            return result

    An implementation that returns anything but ``None`` replaces the
    training (pluggy's firstresult): it must train ``run.model`` itself.
    """


@hookspec
def run_finish(run, status):
    """Called once per run after summary.json holds its final ``status``
    ("completed", "interrupted" or "failed"), whatever happened. Read
    ``run.summary`` and ``run.rows`` (the per-epoch metrics); write only
    ``run.artifact(NAME)`` paths; ``run.add_metric`` rewrites summary.json. An
    exception here is reported and does not change the status.
    """


#: The hooks of a run's lifecycle, in the order they are called.
LIFECYCLE = ("run_start", "run_fit", "run_finish")


# -- the contract, in one place ---------------------------------------------

def _keras(path: str):
    def load(backend=None):
        import keras

        obj = keras
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj
    return load


def _strategy_type(backend):
    if backend is None:  # a check outside a run: the backend the run would choose
        from cifarkit.backends import get

        backend = get(None)
    return backend.strategy_type()


def _splits_type(backend=None):
    from cifarkit.data import Splits

    return Splits


@dataclass(frozen=True)
class Kind:
    """One plugin kind: its hook, what cifarkit injects, what it must return.

    Attributes:
        name: the kind as recipes and ``list-plugins --kind`` name it.
        hook: the hook a plugin implements to register factories of this kind.
        injected: parameter names cifarkit supplies (never recipe parameters).
        reserved: parameter names a factory of this kind must not declare:
            they are the recipe's own keys in the plugin's table.
        returns: what the factory must return, as the error message says it.
        result_type: loads the class the result must be an instance of, given the
            run's :class:`cifarkit.backends.Backend` (imported only when a factory
            has been called).
    """

    name: str
    hook: str
    injected: frozenset[str]
    reserved: frozenset[str]
    returns: str
    result_type: Callable[[Any], type]

    def check(self, result: Any, backend: Any = None) -> bool:
        """Whether a factory's result honours this kind's contract (on ``backend``)."""
        return isinstance(result, self.result_type(backend))


#: The ``[data]`` table's own keys (the recipe's DataConfig fields); a dataset
#: plugin's parameters share that table, so it cannot declare these names.
DATA_KEYS = frozenset(_schema(DataConfig))

_PLUGIN = frozenset({"plugin"})

#: Every plugin kind, in the order ``list-plugins`` shows them.
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("augmentation", "register_augmentations", frozenset({"seed"}), _PLUGIN,
         "a keras.layers.Layer", _keras("layers.Layer")),
    Kind("model", "register_models", frozenset({"input_shape", "num_classes", "sample_images"}),
         _PLUGIN, "a keras.Model", _keras("Model")),
    Kind("strategy", "register_strategies", frozenset(), _PLUGIN,
         "a tf.distribute.Strategy (tensorflow backend) or a "
         "keras.distribution DataParallel or ModelParallel (jax backend)", _strategy_type),
    Kind("callback", "register_callbacks", frozenset({"run_dir", "learning_rate"}), _PLUGIN,
         "a keras.callbacks.Callback", _keras("callbacks.Callback")),
    Kind("dataset", "register_datasets", frozenset(), DATA_KEYS | _PLUGIN,
         "a cifarkit.data.Splits", _splits_type),
    Kind("optimizer", "register_optimizers", frozenset({"learning_rate"}), _PLUGIN,
         "a keras.optimizers.Optimizer", _keras("optimizers.Optimizer")),
)}
