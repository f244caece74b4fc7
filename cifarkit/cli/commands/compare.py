"""``cifarkit compare RUN_DIR RUN_DIR...``: recipe differences, final figures, curves."""

from __future__ import annotations

from pathlib import Path

from cifarkit.cli import options
from cifarkit.errors import terminal_safe


def arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--plot", default="compare.png", metavar="PNG",
                        help="where to write the curves (default: compare.png)")
    options.as_json(parser, "the same data as JSON")


FIGURES = (("name", "run"), ("status", "status"), ("epochs", "epochs"),
           ("best_val_accuracy", "best val acc"), ("test_accuracy", "test acc"),
           ("test_loss", "test loss"), ("train_time_s", "training s"))


def main(args) -> int:
    from cifarkit.cli import history

    result = history.compare([Path(d) for d in args.run_dirs], Path(args.plot))
    if args.json:
        print(options.json_text(result))
        return 0
    console = options.make_console()
    names = [Path(d).name for d in args.run_dirs]
    diffs = result["differences"]
    if diffs:
        rows = [{"key": k, **{n: options.dumps(v) for n, v in zip(names, values)}}
                for k, values in diffs.items()]
        history.print_rows(console, rows, (("key", "recipe key"), *((n, n) for n in names)),
                           "recipe keys that differ")
    else:
        print("the recipes are the same")
    history.print_rows(console, result["runs"], FIGURES, "final figures")
    print(f"curves: {terminal_safe(result['plot'])}")
    return 0


COMMAND = options.Command(
    "compare", main, "compare runs: recipe differences, figures, curves", arguments,
    description="Print the recipe keys whose values differ between the runs and each run's "
                "final figures, and write one PNG of their accuracy and loss curves overlaid.")
