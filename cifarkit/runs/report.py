"""What a run tells whoever watches it: the engine's reporting protocol.

The engine (:mod:`cifarkit.runs`) calls these methods as a run goes; it knows no
console. :class:`Report` does nothing in each, so a notebook, a plugin or a test
subclasses it and overrides what it wants to see. The ``cifarkit`` command's rich
console reporter (:class:`cifarkit.cli.reporter.Reporter`) implements them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Report:
    """A run's events, in the order they come. Every method is optional."""

    # -- the run log -----------------------------------------------------------
    def attach_log(self, path: Path) -> None:
        """The run's log file (run.log) exists: what is reported may be appended to it."""

    def write_log(self, text: str) -> None:
        """One line for the log alone."""

    def line(self, text: str, style: str | None = None) -> None:
        """One line of the run's header or closing report."""

    def note(self, text: str) -> None:
        """A remark worth the user's attention (an interruption, a warning)."""

    # -- events ---------------------------------------------------------------
    def start(self, facts: dict[str, Any]) -> None:
        """The run is about to train: what it is (recipe, model, data, strategy, ...)."""

    def train_begin(self, epochs: int, steps: int, batch_size: int) -> None:
        """Training starts: planned epochs, steps per epoch, batch size."""

    def epoch_begin(self, epoch: int) -> None:
        """Epoch ``epoch`` (1-based) starts."""

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        """A training step (1-based within the epoch) ended, with its running metrics."""

    def epoch_end(self, row: dict[str, Any]) -> None:
        """An epoch ended: its metrics.csv row."""

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

    def close(self) -> None:
        """The run is over; release the log."""
