"""What a run tells whoever watches it: the engine's reporting protocol.

The engine (:mod:`cifarkit.runs`) calls these methods as a run goes; it knows no
console. :class:`Report` does nothing in each, so a notebook, a plugin or a test
subclasses it and overrides what it wants to see. The ``cifarkit`` command's rich
console reporter (:class:`cifarkit.cli.reporter.Reporter`) implements them all.
"""

from __future__ import annotations

import faulthandler
import time
from pathlib import Path
from typing import Any, TextIO


class Report:
    """A run's events, in the order they come. Every method is optional; this base
    keeps run.log (the header, each epoch's row, notes, the outcome, a failure's
    traceback), so a run started from Python has one too."""

    log: TextIO | None = None

    # -- the run log -----------------------------------------------------------
    def attach_log(self, path: Path) -> None:
        """Append to ``path`` (run.log) from now on; a native crash writes its Python
        stack there too."""
        from cifarkit.runs.folder import open_append

        try:
            self.log = open_append(path)
        except OSError as exc:
            from cifarkit.errors import OutputError

            raise OutputError(f"{path}: cannot append to the run log ({exc.strerror or exc}; "
                              "a symbolic link or other non-file there is not written "
                              "through)") from None
        faulthandler.enable(self.log, all_threads=True)

    def write_log(self, text: str) -> None:
        """One line for the log alone."""
        if self.log is not None:
            self.log.write(time.strftime("%H:%M:%S ") + text + "\n")

    def line(self, text: str, style: str | None = None) -> None:
        """One line of the run's header or closing report."""
        self.write_log(text)

    def note(self, text: str) -> None:
        """A remark worth the user's attention (an interruption, a warning)."""
        self.line(text)

    # -- events ---------------------------------------------------------------
    def start(self, facts: dict[str, Any]) -> None:
        """The run is about to train: what it is (recipe, model, data, strategy, ...)."""
        for key, value in facts.items():
            self.write_log(f"{key}: {value}")

    def train_begin(self, epochs: int, steps: int, batch_size: int) -> None:
        """Training starts: planned epochs, steps per epoch, batch size."""

    def epoch_begin(self, epoch: int) -> None:
        """Epoch ``epoch`` (1-based) starts."""

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        """A training step (1-based within the epoch) ended, with its running metrics."""

    def epoch_end(self, row: dict[str, Any]) -> None:
        """An epoch ended: its metrics.csv row."""
        self.write_log("epoch " + "  ".join(f"{k} {v:.6g}" if isinstance(v, float) else
                                            f"{k} {v}" for k, v in row.items()))

    def evaluating(self, done: int, total: int, passes: str = "") -> None:
        """Evaluation of the test split: ``done`` of ``total`` images (``passes``: what
        test-time augmentation adds)."""
        self.phase(f"evaluating the test split{passes}", done, total, "images")

    def phase(self, what: str, done: int, total: int, unit: str = "batches") -> None:
        """Progress of a step of the run outside training (``what``: "recomputing
        BatchNorm statistics", say): ``done`` of ``total`` ``unit``."""

    def stop_live(self) -> None:
        """Anything drawn live (a progress bar) should stop now."""

    def finish(self, summary: dict[str, Any]) -> None:
        """The run ended: its summary.json."""
        self.write_log(f"{summary.get('status')}: test accuracy "
                       f"{summary.get('test_accuracy')}, test loss {summary.get('test_loss')}")

    def close(self) -> None:
        """The run is over; release the log."""
        self.stop_live()
        if self.log is not None:
            faulthandler.disable()
            self.log.close()
            self.log = None
