"""Past runs: ``cifarkit runs`` (one row per run directory) and ``cifarkit compare``
(the recipe keys that differ, the final figures, the curves overlaid).

Reads run directories only: summary.json, metrics.csv and recipe.toml (parsed
as TOML, never run: no plugin file, no dataset), so any folder, foreign or
damaged, is safe to list. Imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cifarkit.errors import CifarkitError, OutputError, first_line, printable, terminal_safe
from cifarkit.runs import folder
from cifarkit.runs.listing import describe, read_metrics

#: The columns of ``cifarkit runs``: key, heading.
COLUMNS = (("name", "run"), ("recipe", "recipe"), ("backend", "backend"), ("status", "status"),
           ("epochs", "epochs"), ("best_val_accuracy", "best val acc"),
           ("test_accuracy", "test acc"), ("train_time_s", "training s"),
           ("started", "started"))
#: Keys sorted best first (largest first); every other key sorts ascending.
DESCENDING = {"best_val_accuracy", "test_accuracy", "started"}


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``rows`` sorted by a column or by a recipe key that differs among them (rows
    without a value last)."""
    keys = [k for k, _ in COLUMNS]
    differing = {k for r in rows for k in r.get("recipe_keys") or {}}
    if key not in keys and key not in differing:
        raise CifarkitError(f"runs --sort: {key!r} is not a column; use one of "
                            f"{', '.join(keys)}, or a recipe key that differs among the runs"
                            + (f" ({', '.join(sorted(differing))})" if differing else ""))
    field = "epochs_run" if key == "epochs" else key if key in keys else f"recipe_keys.{key}"
    present = [r for r in rows if _value(r, field) is not None]
    missing = [r for r in rows if _value(r, field) is None]
    try:
        present.sort(key=lambda r: _value(r, field), reverse=key in DESCENDING)
    except TypeError:  # values of several types (a number here, a string there)
        present.sort(key=lambda r: str(_value(r, field)), reverse=key in DESCENDING)
    return present + missing


#: How a column's value is shown (others: as it is; a missing value: "-").
FORMATS = {"best_val_accuracy": lambda v: f"{100 * v:.2f} %",
           "test_accuracy": lambda v: f"{100 * v:.2f} %",
           "train_time_s": lambda v: f"{v:.1f}", "test_loss": lambda v: f"{v:.4f}",
           "started": lambda v: str(v)[5:16].replace("T", " ")}


def shown(key: str, value: Any) -> str:
    """A cell: known columns in their format, other numbers to 4 significant digits
    (a searched learning rate 0.0978 rather than 0.09781801964118502)."""
    if value is None:
        return "-"
    if key in FORMATS:
        return FORMATS[key](value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _value(row: dict[str, Any], key: str) -> Any:
    if key.startswith("recipe_keys."):
        return (row.get("recipe_keys") or {}).get(key[len("recipe_keys."):])
    return row.get(key)


def _cells(row: dict[str, Any], columns) -> list[str]:
    """A row's cells; an unreadable folder's are its name, status and the reason."""
    if row.get("status") != "unreadable":
        return [shown(k, _value(row, k)) for k, _ in columns]
    cells = [str(row.get(k, "")) if k in ("name", "status") else "" for k, _ in columns]
    cells[-1] = row.get("error", "")
    return cells


def print_rows(console, rows: list[dict[str, Any]], columns=COLUMNS, title: str = "") -> None:
    """A rich table on a terminal; plain aligned lines when piped. Every cell is untrusted
    text (folder names, summary values): control characters are shown escaped, never
    obeyed, and rich markup in it is printed as it is, never interpreted."""
    cells = [[terminal_safe(c) for c in _cells(r, columns)] for r in rows]
    if console.is_terminal:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(terminal_safe(title)) if title else None)
        for _, heading in columns:
            table.add_column(Text(terminal_safe(heading)))
        for line in cells:
            table.add_row(*(Text(c) for c in line))
        console.print(table)
        return
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, (_, h) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip())
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


# -- compare ---------------------------------------------------------------------------
def _recipe(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "recipe.toml"
    try:
        return folder.read_toml(path)
    except OSError as exc:
        raise OutputError(f"{path}: unreadable ({first_line(exc)})") from None


def _flat(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(doc, list) and any(isinstance(v, dict) for v in doc):
        out = {}
        for i, v in enumerate(doc):
            out.update(_flat(v, f"{prefix[:-1]}[{i}]."))
        return out
    return {prefix[:-1]: doc}


def _differing(flat: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys = sorted(set().union(*flat)) if flat else []
    return {k: [f.get(k) for f in flat] for k in keys
            if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1}


def differences(run_dirs: list[Path]) -> dict[str, list[Any]]:
    """The recipe keys whose values differ between the runs: key -> each run's value."""
    return _differing([_flat(_recipe(d)) for d in run_dirs])


#: The most recipe-key columns ``cifarkit runs`` shows (``--json`` has every one).
MAX_KEY_COLUMNS = 6


def with_recipe_keys(rows: list[dict[str, Any]], where: list[str]) -> tuple[list, list]:
    """The runs among ``rows`` that match every ``--where KEY=VALUE`` (a recipe key, else
    a row's column; the value read as in ``--set``), each with ``recipe_keys``: its values
    of the recipe keys that differ among them. Returns (rows, those keys). Folders that
    are not readable runs are kept only when nothing is filtered."""
    from cifarkit.core.document import parse_value
    from cifarkit.errors import did_you_mean

    runs = [r for r in rows if r.get("status") not in ("unreadable", "sweep")]
    flat = {}
    for r in runs:
        try:
            flat[r["path"]] = _flat(_recipe(Path(r["path"])))
        except (CifarkitError, OSError):
            flat[r["path"]] = {}
    for condition in where:
        key, sep, text = condition.partition("=")
        key = key.strip()
        known = set().union(*flat.values(), (k for k, _ in COLUMNS))
        if not sep or key not in known:
            raise CifarkitError(f"runs --where {printable(condition)}: " + (
                "expected KEY=VALUE, e.g. --where train.learning_rate=0.01" if not sep else
                f"no run has {printable(key)!r}{did_you_mean(key, known)}"))
        value = parse_value(text)
        runs = [r for r in runs  # a recipe key first: `name` is the recipe's, not the folder's
                if _matches(flat[r["path"]].get(key, r.get(key)), value)]
    differing = _differing([flat[r["path"]] for r in runs]) if len(runs) > 1 else {}
    for r in runs:
        r["recipe_keys"] = {k: flat[r["path"]].get(k) for k in differing}
    return (runs if where else rows), list(differing)


def _matches(have: Any, want: Any) -> bool:
    if isinstance(have, (int, float)) and isinstance(want, (int, float)):
        return not isinstance(have, bool) and not isinstance(want, bool) and have == want
    return have == want or str(have) == str(want)


#: The recipe keys a practitioner looks at first when runs differ, in this order (a
#: pattern's ``*`` stands for an index); every other differing key follows, the model's
#: and training's parameters before the rest.
FIRST_KEYS = ("model.plugin", "train.learning_rate", "train.epochs", "data.batch_size",
              "train.optimizer.plugin", "train.optimizer", "augmentation[*].plugin",
              "train.schedule.plugin", "seed", "data.limit")


def rank(keys: list[str]) -> list[str]:
    """``keys`` (recipe keys that differ), those that matter first (:data:`FIRST_KEYS`),
    then ``model.*`` and ``train.*``, then the rest, each group in alphabetical order."""
    import fnmatch

    def order(key: str) -> tuple:
        for i, pattern in enumerate(FIRST_KEYS):
            if fnmatch.fnmatchcase(key, pattern.replace("[*]", "[[]*[]]")):
                return (0, i, key)
        group = 1 if key.startswith(("model.", "train.")) else 2
        return (group, 0, key)

    return sorted(keys, key=order)


def fit_columns(rows: list[dict[str, Any]], keys: list[str],
                width: int) -> tuple[tuple, str]:
    """The columns of ``cifarkit runs`` that fit ``width`` characters, in table order: the
    run, its outcome and the recipe keys that differ, those that matter most first
    (:func:`rank`; at most :data:`MAX_KEY_COLUMNS`), then the rest as room allows
    (a backend column only where backends differ). Returns (columns, a note naming
    what was left out)."""
    ranked = rank(keys)
    keyed = [(f"recipe_keys.{k}", k) for k in ranked[:MAX_KEY_COLUMNS]]
    base = dict(COLUMNS)
    if len({r.get("backend") for r in rows}) <= 1:
        base.pop("backend")
    by_priority = ["name", "test_accuracy", *keyed[:1], "status", "best_val_accuracy",
                   *keyed[1:2], "epochs", "recipe", *keyed[2:4], "train_time_s", "started",
                   "backend", *keyed[4:]]
    chosen: list = []
    for col in by_priority:
        column = col if isinstance(col, tuple) else (col, base.get(col))
        if column[1] is not None and table_width(rows, [*chosen, column]) <= width:
            chosen.append(column)
    order = [c for c in COLUMNS if c in chosen]
    at = next((i for i, (k, _) in enumerate(order) if k == "status"), len(order))
    columns = (*order[:at], *(c for c in keyed if c in chosen), *order[at:])
    rest = [k for k in ranked if (f"recipe_keys.{k}", k) not in chosen]
    dropped = [h for k, h in COLUMNS if k in base and (k, h) not in chosen]
    note = "; ".join(filter(None, [
        f"{len(rest)} more recipe key{'s' if len(rest) != 1 else ''} differ: "
        f"{', '.join(rest[:8])}{', ...' if len(rest) > 8 else ''} (--json lists them; --sort "
        "and --where take them)" if rest else "",
        f"left out to fit {width} columns: {', '.join(dropped)}" if dropped else ""]))
    return columns, note


def table_width(rows: list[dict[str, Any]], columns) -> int:
    """The characters a table of ``rows`` in ``columns`` takes (cells, padding, rules)."""
    return sum(max([len(h), *(len(shown(k, _value(r, k))) for r in rows)]) + 3
               for k, h in columns) + 1


def labels(run_dirs: list[Path], diffs: dict[str, list[Any]]) -> list[str]:
    """Each run's label in compare.png: its folder name and the values of the keys that
    differ (those that matter first, at most three)."""
    keys = rank(list(diffs))[:3]
    return [d.name + "".join(f"\n  {k}={shown(k, diffs[k][i])}" for k in keys)
            for i, d in enumerate(run_dirs)]


def compare(run_dirs: list[Path], plot: Path) -> dict[str, Any]:
    """The differing recipe keys, each run's row and its curves overlaid in ``plot``."""
    if len(run_dirs) < 2:
        raise CifarkitError("compare: give at least two run directories")
    if plot.suffix.lower() != ".png":
        raise CifarkitError(f"compare --plot: {printable(str(plot))} does not end in .png; "
                            "the curves are a PNG image, written nowhere else")
    if os.path.lexists(plot) and not _is_png(plot):
        raise OutputError(f"{printable(str(plot))}: exists and is not a PNG image; compare "
                          "--plot replaces only an earlier plot (remove it, or choose another)")
    rows = []
    for d in run_dirs:
        row = describe(d)
        if row["status"] == "unreadable":
            raise OutputError(f"{d}: {row['error']}")
        rows.append(row)
    diffs = differences(run_dirs)
    result = {"differences": diffs, "runs": rows, "labels": labels(run_dirs, diffs)}
    plot_curves(run_dirs, plot, result["labels"])
    result["plot"] = str(plot)
    return result


def _is_png(path: Path) -> bool:
    try:
        return folder.read_head(path, 8) == b"\x89PNG\r\n\x1a\n"
    except (OSError, CifarkitError):
        return False


def plot_curves(run_dirs: list[Path], path: Path, names: list[str]) -> None:
    """Accuracy and loss by epoch, training solid and validation dashed, one colour a run
    labelled by ``names`` in a legend below the plots; a run of one epoch as points; the
    loss on a log scale where one run's loss dwarfs another's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2 + 0.35 * len(run_dirs)))
    losses = []
    for i, (d, name) in enumerate(zip(run_dirs, names)):
        rows, colour = read_metrics(d), f"C{i % 10}"
        epochs = [r.get("epoch") for r in rows]
        for ax, metric in zip(axes, ("accuracy", "loss")):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = [r.get(prefix + metric) for r in rows]
                if any(v is not None for v in values):
                    ax.plot(epochs, values, style, color=colour,  # one epoch: a point
                            marker=("x" if prefix else "o") if len(rows) == 1 else None)
                    if metric == "loss":
                        losses += [v for v in values if isinstance(v, (int, float)) and v > 0]
        axes[0].plot([], [], "-", color=colour, label=name)  # one legend entry a run
    if losses and max(losses) / min(losses) > 20:
        axes[1].set_yscale("log")
    axes[0].plot([], [], "-", marker="o", color="grey", label="training")
    axes[0].plot([], [], "--", marker="x", color="grey", label="validation")
    last = max((len(read_metrics(d)) for d in run_dirs), default=0)
    from matplotlib.ticker import MaxNLocator

    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if last <= 1:
            ax.set_xlim(0.5, 1.5)
            ax.set_xticks([1])
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", fontsize=7,
               ncol=min(3, len(run_dirs) + 2), frameon=False)
    fig.tight_layout(rect=(0, min(0.45, 0.09 * (len(run_dirs) + 2) / 2), 1, 1))
    import io

    from cifarkit.runs.artifacts import atomic_write

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{printable(str(path.parent))}: cannot create the folder "
                          f"({exc.strerror or exc})") from None
    atomic_write(path, buffer.getvalue())
