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
                             "(accuracies and start: newest/best first; default: started)")
    options.as_json(parser, "the rows as JSON")


def main(args) -> int:
    from cifarkit.cli import history
    from cifarkit.runs.listing import list_runs

    rows = history.sort_rows(list_runs(Path(args.folder)), args.sort)
    if args.json:
        print(options.json_text(rows))
        return 0
    if not rows:
        print(f"no run directories in {terminal_safe(args.folder)}")
        return 0
    history.print_rows(options.make_console(), rows, title=f"runs in {args.folder}")
    return 0


COMMAND = options.Command(
    "runs", main, "list the run directories in a folder", arguments,
    description="One row per run directory in DIR: recipe, backend, status, epochs "
                "done/planned, best validation and test accuracy, training time, start. A "
                "folder that is not a readable run is a row marked unreadable.")
