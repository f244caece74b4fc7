"""Console presentation, in one place: the run reporter (live progress in a
terminal, plain lines elsewhere), the evaluation tables and the plugin tables.

It knows nothing about Keras: the runner feeds it events. Every line the
reporter prints is also appended to the run directory's ``run.log``.
"""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.markup import escape
from rich.table import Table

from cifarkit.errors import terminal_safe
from cifarkit.runs.report import Report

PLAIN_INTERVAL_S = 10.0


def _fmt_metric(key: str, value: Any) -> str:
    if value is None:
        return f"{key} -"
    if key in ("learning_rate", "lr"):
        return f"lr {value:.3g}"
    return f"{key} {value:.4f}"


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def make_console(**kwargs) -> Console:
    """The command's console: on a terminal as rich as it is; piped or redirected, lines
    are printed whole (no hard wrap at 80 columns that would break paths)."""
    console = Console(**kwargs)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def print_table(console: Console, table) -> None:
    """A table, as wide as its contents need when the output is not a terminal (piped
    output is not cut to 80 columns, so long class names stay whole)."""
    if console.is_terminal:
        console.print(table)
        return
    needed = Measurement.get(console, console.options.update_width(10**6), table).maximum
    saved = console.width
    console.width = max(saved, needed)
    try:
        console.print(table)
    finally:
        console.width = saved


class Reporter(Report):
    """Reports a run's progress and its final summary on a rich console (live progress
    on a terminal, plain lines otherwise), and appends them to run.log."""

    def __init__(self, console: Console | None = None, plain_interval_s: float = PLAIN_INTERVAL_S):
        self.console = console or make_console()
        self.live = self.console.is_terminal and not self.console.is_dumb_terminal
        self.plain_interval_s = plain_interval_s
        self.log: TextIO | None = None
        self._progress: Progress | None = None
        self._task = None
        self._phase: str | None = None  # what the progress bar of a step after training shows
        self._epoch = 0
        self._epochs = 0
        self._steps = 0
        self._batch_size = 0
        self._t0 = 0.0
        self._last_plain = 0.0
        self._first: tuple[float, int] | None = None  # (time, step) of the epoch's first step
        self._last: tuple[float, int] | None = None  # ... and of its latest
        self._steady: list[float] = []  # seconds of epochs that compiled nothing

    # -- plumbing ------------------------------------------------------------
    def line(self, text: str, style: str | None = None) -> None:
        """Print one line (above the live bar, if any) and log it."""
        target = self._progress.console if self._progress is not None else self.console
        target.print(text, style=style, highlight=False, markup=False, soft_wrap=True)
        self.write_log(text)

    # -- events --------------------------------------------------------------
    def start(self, facts: dict[str, Any]) -> None:
        """Describe the run before training starts: one line per fact."""
        self.console.rule(f"cifarkit run: {facts.get('recipe', '')}", style="cyan")
        for key, value in facts.items():
            if key != "recipe":
                self.line(f"{key:>14}: {value}")

    def train_begin(self, epochs: int, steps: int, batch_size: int) -> None:
        self._epochs, self._steps, self._batch_size = epochs, steps, batch_size

    def epoch_begin(self, epoch: int) -> None:
        self._epoch = epoch
        self._t0 = self._last_plain = time.perf_counter()
        if self.live:
            if self._progress is None:
                self._progress = Progress(
                    TextColumn("[bold]epoch {task.fields[epoch]}"),
                    BarColumn(bar_width=30),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[metrics]}"),
                    TextColumn("[cyan]{task.fields[speed]}"),
                    TextColumn("run ETA {task.fields[eta]}"),
                    console=self.console, transient=True, refresh_per_second=8)
                self._progress.start()
            self._task = self._progress.add_task(
                "train", total=self._steps, epoch=f"{epoch}/{self._epochs}", metrics="", speed="",
                eta="…")

    def _step_seconds(self, now: float, step: int) -> float | None:
        """Seconds per step, from the epoch's first step on (the first pays compilation)."""
        if self._first is None:
            self._first = (now, step)
            return None
        t, first = self._first
        return (now - t) / (step - first) if step > first else None

    def run_eta(self, now: float, step: int) -> float | None:
        """Seconds left in the whole run: the epochs to come at the steady epochs' pace
        (else at this epoch's step rate after its first step, which pays compilation),
        plus what is left of this epoch."""
        per_step = self._step_seconds(now, step)
        per_epoch = (sum(self._steady) / len(self._steady) if self._steady
                     else per_step * self._steps if per_step else None)
        if per_epoch is None:
            return None
        here = per_step if per_step else per_epoch / max(self._steps, 1)
        return (self._steps - step) * here + (self._epochs - self._epoch) * per_epoch

    def _epochs_left_eta(self, row: dict[str, Any]) -> float | None:
        """At an epoch's end: the epochs to come at the steady pace."""
        left = self._epochs - row["epoch"]
        if left <= 0:
            return None
        if self._steady:
            return left * sum(self._steady) / len(self._steady)
        if self._first is not None and self._last is not None and self._last[1] > self._first[1]:
            (t0, s0), (t1, s1) = self._first, self._last
            return left * (t1 - t0) / (s1 - s0) * self._steps
        return None

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        now = time.perf_counter()
        elapsed = max(now - self._t0, 1e-9)
        speed = step * self._batch_size / elapsed
        metrics = "  ".join(_fmt_metric(k, v) for k, v in logs.items())
        eta = self.run_eta(now, step)
        self._last = (now, step)
        shown = "…" if eta is None else format_duration(eta)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step, metrics=metrics,
                                  speed=f"{speed:,.0f} img/s", eta=shown)
        elif not self.live and now - self._last_plain >= self.plain_interval_s:
            self._last_plain = now
            self.line(f"  epoch {self._epoch}/{self._epochs}  step {step}/{self._steps}  "
                      f"{metrics}  {speed:,.0f} img/s  run ETA {shown}")

    def epoch_end(self, row: dict[str, Any]) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        if not row.get("compiled"):
            self._steady.append(row["epoch_time_s"])
        eta = self._epochs_left_eta(row)
        self._first = self._last = None
        skip = {"epoch", "epoch_time_s", "images_per_s", "train_time_s", "compiled",
                "compile_time_s"}
        metrics = "  ".join(_fmt_metric(k, v) for k, v in row.items() if k not in skip)
        self.line(f"epoch {row['epoch']}/{self._epochs}  {metrics}  "
                  f"{row['images_per_s']:,.0f} img/s  {format_duration(row['epoch_time_s'])}"
                  + (f"  run ETA {format_duration(eta)}" if eta is not None else ""))

    def phase(self, what: str, done: int, total: int, unit: str = "batches") -> None:
        """Progress of a step after training (BatchNorm statistics, the test split's
        predictions): a bar on a terminal, a line every few seconds elsewhere."""
        now = time.perf_counter()
        if self.live:
            if self._progress is None or self._phase != what:
                self.stop_live()
                self._phase = what
                self._progress = Progress(
                    TextColumn("[bold]{task.fields[what]}"),
                    BarColumn(bar_width=30), MofNCompleteColumn(), TextColumn(unit),
                    console=self.console, transient=True, refresh_per_second=8)
                self._progress.start()
                self._task = self._progress.add_task("phase", total=total, what=escape(what))
            self._progress.update(self._task, completed=done, total=total)
        elif done == 0 or done == total or now - self._last_plain >= self.plain_interval_s:
            self._last_plain = now
            self.line(f"  {what}: {done:,}/{total:,} {unit}")

    def note(self, text: str) -> None:
        self.line(text, style="yellow")

    def stop_live(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def finish(self, summary: dict[str, Any]) -> None:
        """Print the final summary table."""
        self.stop_live()
        table = Table(title=f"{summary.get('recipe')}: {summary.get('status')}",
                      box=box.SIMPLE_HEAD, show_header=False, title_justify="left")
        table.add_column("what", style="bold")
        table.add_column("value")

        def pct(v):
            return "-" if v is None else f"{100 * v:.2f} %"

        def num(v, fmt):
            return "-" if v is None else format(v, fmt)

        rows = [
            ("test accuracy", pct(summary.get("test_accuracy"))),
            ("test loss", num(summary.get("test_loss"), ".4f")),
            ("best epoch", f"{summary.get('best_epoch')} ({summary.get('best_monitor')} "
                           f"{num(summary.get('best_value'), '.4f')})"),
            ("epochs run", f"{summary.get('epochs_run')} of {summary.get('epochs_planned')}"
                           + (" (stopped early)" if summary.get("stopped_early") else "")),
            ("wall time", format_duration(summary.get("wall_time_s") or 0.0)
             + ("" if summary.get("wall_time_this_invocation_s") is None else
                f" ({format_duration(summary['wall_time_this_invocation_s'])} of it this "
                "invocation; the rest before the resume)")),
            ("training time", format_duration(summary.get("train_time_s") or 0.0)
             + ("" if summary.get("compile_time_s") is None else
                f" ({format_duration(summary['compile_time_s'])} of it compiling)")),
            ("throughput", f"{num(summary.get('train_images_per_s'), ',.0f')} images/s (training)"),
            ("run directory", str(summary.get("run_dir"))),
        ]
        for what, value in rows:
            table.add_row(what, value)
            self.write_log(f"{what}: {value}")
        print_table(self.console, table)


def render_evaluation(console, result: dict[str, Any], class_names: list[str], title: str) -> None:
    """Print accuracy, loss, per-class accuracy and the confusion matrix as rich tables."""
    console.print(f"[bold]{escape(terminal_safe(title))}[/]: "
                  f"accuracy {100 * result['accuracy']:.2f} %, "
                  f"loss {result['loss']:.4f} on {result['examples']:,} examples", highlight=False)
    per = Table(title="per-class accuracy", title_justify="left")
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    per.add_column("examples", justify="right")
    for i, name in enumerate(class_names):
        acc = result["per_class_accuracy"][name]
        per.add_row(escape(name), "-" if acc is None else f"{100 * acc:.1f} %",
                    str(sum(result["confusion_matrix"][i])))
    print_table(console, per)
    if len(class_names) <= 20:
        cm = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
        cm.add_column("")
        for name in class_names:
            cm.add_column(escape(name[:6]), justify="right")
        for name, row in zip(class_names, result["confusion_matrix"]):
            cm.add_row(escape(name), *[str(v) for v in row])
        print_table(console, cm)


def _show(value) -> str:
    if value is None:
        return "unset"
    return json.dumps(value) if isinstance(value, (str, list, bool)) else str(value)


def render_plugins(console, plugins, broken, clashes=None, slow=(), commands=()) -> None:
    """``cifarkit list-plugins``: one table per kind (plain lines on a narrow or
    non-terminal console, which never cut a name or a value), the commands plugins
    add, then clashes, the plugins that failed to load and slow imports."""
    from cifarkit.core.hookspecs import KINDS

    clashes = clashes or {}
    tables = console.is_terminal and console.width >= 120
    for kind in KINDS:
        group = [p for p in plugins if p.kind == kind]
        if not group:
            continue
        if tables:
            table = Table(title=f"{kind} plugins", title_justify="left", show_lines=False)
            table.add_column("name", style="bold cyan", no_wrap=True)
            table.add_column("source")
            table.add_column("summary")
            table.add_column("parameters (default)")
        else:
            console.print(f"{kind} plugins:", style="bold", highlight=False)
        for p in group:  # a plugin's text is shown escaped, never obeyed by the terminal
            params = ", ".join(
                f"{s.name}" + ("" if s.required else f"={_show(s.default)}") for s in p.params)
            name = p.name + (" (clash)" if (p.kind, p.name) in clashes else "")
            name, source, summary, params = (terminal_safe(v) for v in
                                             (name, p.source, p.summary, params))
            if tables:
                table.add_row(*(escape(v) for v in (name, source, summary, params or "-")))
            else:
                console.print(f"  {name} [{source}]: {summary}", highlight=False,
                              markup=False, soft_wrap=True)
                if params:
                    console.print(f"      {params}", highlight=False, markup=False, soft_wrap=True)
        if tables:
            print_table(console, table)
    if commands:
        console.print("commands:", style="bold", highlight=False)
    for c in commands:
        console.print(terminal_safe(f"  {c.name} [{c.source}]: {c.help}"), highlight=False,
                      markup=False, soft_wrap=True)
    for (kind, name), infos in clashes.items():
        console.print(f"[bold red]clash[/] two {kind} plugins are named {escape(repr(name))}: "
                      + " and ".join(escape(terminal_safe(i.source)) for i in infos)
                      + "; a recipe that names it is refused: uninstall or rename one",
                      highlight=False, soft_wrap=True)
    for b in broken:
        console.print(f"[bold red]broken[/] {escape(terminal_safe(b.source))}: "
                      f"{escape(terminal_safe(b.error))}",
                      highlight=False, soft_wrap=True)
    for source, note in slow:
        console.print(f"[yellow]slow[/] {escape(terminal_safe(source))}: "
                      f"{escape(terminal_safe(note))}",
                      highlight=False, soft_wrap=True)


def render_plugin(console, p) -> None:
    """``cifarkit list-plugins NAME``: one plugin in full."""
    def safe(value: object) -> str:  # a plugin's text: escaped, never obeyed or styled
        return escape(terminal_safe(value))

    console.rule(safe(f"{p.kind} {p.name}"))
    console.print(f"source: {safe(p.source)}", highlight=False)
    if p.backends:
        console.print(f"backends: {safe(', '.join(p.backends))} (one form each; the "
                      f"{safe(p.backends[0])} form's documentation below)", highlight=False)
    if p.controls:
        console.print(f"controls: {safe(', '.join(p.controls))}", highlight=False)
    console.print(terminal_safe(p.doc or "(no docstring)", lines=True), highlight=False,
                  markup=False)
    if not p.params:
        console.print("parameters: none")
        return
    table = Table(show_header=True, title="parameters", title_justify="left")
    for col in ("name", "type", "default", "description"):
        table.add_column(col)
    for s in p.params:
        table.add_row(*(safe(v) for v in (s.name, s.type_name,
                                          "(required)" if s.required else _show(s.default),
                                          s.description)))
    print_table(console, table)
