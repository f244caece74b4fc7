"""``cifarkit evaluate RUN_DIR``: a run's model.keras on the test split, once more."""

from __future__ import annotations

from pathlib import Path

from cifarkit.cli import options


def arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--data", metavar="PATH",
                        help="another copy of the data (sets data.path)")
    parser.add_argument("--output", metavar="DIR",
                        help="where to write (default: RUN_DIR/evaluation)")
    options.as_json(parser, "print JSON instead of tables")
    options.backend(parser, options.LOAD_BACKEND)
    options.trust(parser)


def main(args) -> int:
    from cifarkit.api import evaluate

    result = evaluate(args.run_dir, data=args.data, output=args.output, backend=args.backend,
                      trust_run=args.trust_run, plugins=args.plugin_files)
    if args.json:
        print(options.json_text({k: v for k, v in result.items() if k != "written"}))
        return 0
    from cifarkit.cli.reporter import render_evaluation

    console = options.make_console()
    render_evaluation(console, result, result["class_names"],
                      f"{Path(result['run_dir']).name} on {result['data']}")
    *files, last = result["written"]
    console.print(f"wrote {', '.join(files)} and {last}", highlight=False, markup=False)
    return 0


COMMAND = options.Command(
    "evaluate", main, "evaluate a run's model.keras on the test split", arguments,
    description="Reload RUN_DIR/model.keras and evaluate it on the run's test split (or the "
                "test split of --data): accuracy, loss, per-class accuracy, confusion matrix. "
                "Writes confusion_matrix.png, confusion_matrix_normalized.png and evaluation.json to --output.")
