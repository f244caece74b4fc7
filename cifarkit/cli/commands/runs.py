"""``cifarkit runs [DIR]``: one row per run directory in a folder."""

from __future__ import annotations

from pathlib import Path

from cifarkit.cli import options
from cifarkit.errors import terminal_safe


def arguments(parser) -> None:
    parser.add_argument("folder", nargs="?", default="runs", metavar="DIR",
                        help="where the run directories are (default: runs, as for cifarkit run)")
    parser.add_argument("--sort", default="started", metavar="KEY",
                        help="column to sort by: name, recipe, backend, status, epochs, "
                             "best_val_accuracy, test_accuracy, train_time_s, started "
                             "(accuracies and start: newest/best first; default: started), "
                             "or a recipe key that differs among the runs")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only the runs whose recipe key (train.learning_rate) or column "
                             "(status, backend) has this value; repeatable: all must match")
    options.as_json(parser, "the rows as JSON (recipe_keys: the recipe keys that differ)")


def main(args) -> int:
    from cifarkit.cli import history
    from cifarkit.runs.listing import list_runs

    rows, keys = history.with_recipe_keys(list_runs(Path(args.folder)), args.where)
    rows = history.sort_rows(rows, args.sort)
    if args.json:
        print(options.json_text(rows))
        return 0
    if not rows:
        print(f"no run directories in {terminal_safe(args.folder)}" + (
            " match " + " and ".join(terminal_safe(w) for w in args.where) if args.where else ""))
        return 0
    console = options.make_console()
    columns, note = history.fit_columns(rows, keys, console.width)  # fits the terminal
    history.print_rows(console, rows, columns, title=f"runs in {args.folder}")
    if note:
        print(terminal_safe(note))
    return 0


COMMAND = options.Command(
    "runs", main, "list the run directories in a folder", arguments,
    description="One row per run directory in DIR: recipe, backend, a column for each "
                "recipe key whose value differs among the runs listed, status, epochs "
                "done/planned, best validation and test accuracy, training time, start. A "
                "folder that is not a readable run is a row marked unreadable.")
