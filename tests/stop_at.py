"""A test plugin: act at a given training step, deterministically, instead of racing a clock.

Load it with ``cifarkit run ... --plugin tests/stop_at.py`` and set
``CIFARKIT_TEST_STOP_AT="EPOCH:STEP:ACTION"`` (1-based epoch and step, as
metrics.csv counts epochs; epoch 0: once training is over, before evaluation).
At the end of that step it

* ``kill``: kills its own process with SIGKILL (what a crash or ``kill -9`` does);
* ``int`` / ``term``: sends itself one SIGINT / SIGTERM (Ctrl-C, a scheduler's stop);
* ``int2`` / ``term2``: sends itself the signal twice, back to back;
* ``hold``: writes ``CIFARKIT_TEST_STOP_FILE`` (its process id) and waits there until
  it is killed, so a test can act on a run that is certainly mid-training.

A resume run without ``--plugin`` (or without the variable) trains on undisturbed:
the plugin is not part of the recipe, so the run directory never names it.
"""

import os
import signal
import time

import cifarkit


def _hold() -> None:
    """Wait (at most 5 minutes) until a SIGINT or SIGTERM arrives; the run's own handler
    still sees it, so the run then stops as it would have mid-step."""
    released = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def chained(signum, frame):
        released.append(signum)
        if callable(old[signum]):
            old[signum](signum, frame)

    for sig in old:
        signal.signal(sig, chained)
    try:
        deadline = time.monotonic() + 300
        while not released and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _callback(epoch: int, step: int, action: str):
    import keras

    class StopAt(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            self.epoch = index + 1

        def on_train_batch_end(self, batch, logs=None):
            if (getattr(self, "epoch", None), batch + 1) == (epoch, step):
                act()

        def on_train_end(self, logs=None):
            if epoch == 0:
                act()

    def act():
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action in ("int", "term", "int2", "term2"):
            sig = signal.SIGINT if action.startswith("int") else signal.SIGTERM
            for _ in range(2 if action.endswith("2") else 1):
                os.kill(os.getpid(), sig)
        elif action == "hold":
            marker = os.environ["CIFARKIT_TEST_STOP_FILE"]
            with open(marker + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
            _hold()
        else:
            raise ValueError(f"CIFARKIT_TEST_STOP_AT: unknown action {action!r}")

    return StopAt()


@cifarkit.hookimpl
def run_start(run):
    spec = os.environ.get("CIFARKIT_TEST_STOP_AT")
    if spec:
        epoch, step, action = spec.split(":")
        run.add_callback(_callback(int(epoch), int(step), action))
