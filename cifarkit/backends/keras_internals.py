"""Keras's private APIs that cifarkit uses, all of them, in this one module.

Each use is behind :func:`checked`: on a Keras release these were not read and
tested against, cifarkit takes Keras's public path instead (slower, never wrong),
the run's header says so (the JAX backend's advice), and
``tests/test_keras_internals.py`` fails until someone has checked the new release
and added it to :data:`CHECKED`.

What is used, and why:

* ``keras.src.backend.common.global_state``'s ``"uninitialized_variables"`` list,
  and a variable's ``_initializer``, ``_initialize(value)`` and
  ``_deferred_initialize()``: :func:`initialising` creates a model's variables
  inside a ``keras.StatelessScope`` and initialises them in one compiled JAX
  program instead of one compilation per initializer shape.
* ``keras.StatelessScope.state_mapping`` and ``keras.src.backend.common.variables
  .Variable`` (a scan of live objects): assignments made inside that scope to
  variables created before it are applied on exit.
* an optimizer's ``_learning_rate``: :func:`install_schedule` puts a learning-rate
  schedule there once the optimizer is built. Keras's public setter would untrack
  the learning-rate variable, so the optimizer's variables (and every checkpoint of
  them) would change shape mid-run and a resumed run would not continue exactly.
"""

from __future__ import annotations

import contextlib

#: Keras releases (major, minor) whose private APIs above were read and tested.
CHECKED = frozenset({(3, 15)})


def keras_release() -> tuple[int, int]:
    """The running Keras's (major, minor)."""
    import keras

    major, minor = keras.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def checked() -> bool:
    """Whether the running Keras is a release these private APIs were checked against."""
    return keras_release() in CHECKED


def install_schedule(optimizer, schedule) -> None:
    """Make ``schedule`` (a ``keras.optimizers.schedules.LearningRateSchedule``) the
    built ``optimizer``'s learning rate, keeping its variables as they are."""
    from cifarkit.errors import PluginError

    if not checked() and not hasattr(optimizer, "_learning_rate"):
        raise PluginError(f"Keras {'.'.join(map(str, keras_release()))} keeps an optimizer's "
                          "learning rate where cifarkit does not look for it; a learning-rate "
                          "schedule callback needs a Keras release cifarkit was checked "
                          f"against ({', '.join('.'.join(map(str, r)) for r in sorted(CHECKED))})")
    optimizer._learning_rate = schedule


def learning_rate_schedule(optimizer):
    """The optimizer's ``LearningRateSchedule``, or None where its rate is a value
    (the public ``learning_rate`` gives only the rate at the current step)."""
    import keras

    schedule = getattr(optimizer, "_learning_rate", None)
    return schedule if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) \
        else None


@contextlib.contextmanager
def initialising():
    """Create variables inside, initialise them in one compiled program on exit.

    Keras initialises each variable as it is created, and on JAX every initializer
    of a new shape is a compilation of its own (a dozen for a small CNN, each
    slow on a CPU). Inside a ``keras.StatelessScope`` Keras defers them instead;
    on exit the deferred initializers that are Keras's own (pure functions of
    shape, dtype and an integer seed) run together as one ``jax.jit`` program,
    and any other initializer runs as Keras would have run it. The values are
    the ones eager initialisation gives (JAX's random numbers do not depend on
    compilation). Assignments made inside (``set_weights`` of computed
    statistics, say) are kept in the scope and applied afterwards, in order.
    """
    import keras
    from keras.src.backend.common import global_state  # Keras's deferred-variable list

    if not checked():  # Keras's public path: each variable initialised as it is created
        yield
        return

    key = "uninitialized_variables"
    outer = global_state.get_global_attribute(key) or []
    global_state.set_global_attribute(key, [])
    scope = keras.StatelessScope(initialize_variables=False)
    try:
        with scope:
            yield
    finally:
        created = global_state.get_global_attribute(key) or []
        global_state.set_global_attribute(key, outer)
        _initialise(created)
        _apply_assignments(scope, created)


def _initialise(variables: list) -> None:
    import jax

    together = [v for v in variables if _pure(v._initializer)]
    calls = [(v._initializer, v.shape, v.dtype) for v in together]
    values = jax.jit(lambda: [init(shape, dtype=dtype) for init, shape, dtype in calls])() \
        if calls else []
    for variable, value in zip(together, values):
        variable._initializer = None
        variable._initialize(value)
    for variable in variables:
        if variable._initializer is not None:
            variable._deferred_initialize()


def _pure(initializer) -> bool:
    """Keras's own initializers with an integer seed (or none) trace into one program."""
    import keras

    return (isinstance(initializer, keras.initializers.Initializer)
            and type(initializer).__module__.startswith("keras.")
            and not isinstance(getattr(initializer, "seed", None), keras.random.SeedGenerator))


def _apply_assignments(scope, created: list) -> None:
    """What was assigned inside the scope, onto the variables (``created`` and any that
    already existed and were assigned)."""
    import gc

    by_id = {id(v): v for v in created}
    missing = set(scope.state_mapping) - set(by_id)
    if missing:  # assignments to variables created before the scope
        from keras.src.backend.common.variables import Variable

        by_id.update({id(o): o for o in gc.get_objects()
                      if isinstance(o, Variable) and id(o) in missing})
    for ident, value in scope.state_mapping.items():
        if ident in by_id:
            by_id[ident].assign(value)
