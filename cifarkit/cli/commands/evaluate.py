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
    from cifarkit.cli.inference import evaluate_run

    result = evaluate_run(Path(args.run_dir), args.data,
                          Path(args.output) if args.output else None,
                          console=None if args.json else options.make_console(),
                          backend=args.backend, trust_run=args.trust_run,
                          plugin_files=tuple(args.plugin_files))
    if args.json:
        print(options.json_text(result))
    return 0


COMMAND = options.Command(
    "evaluate", main, "evaluate a run's model.keras on the test split", arguments,
    description="Reload RUN_DIR/model.keras and evaluate it on the run's test split (or the "
                "test split of --data): accuracy, loss, per-class accuracy, confusion matrix. "
                "Writes confusion_matrix.png, confusion_matrix_normalized.png and evaluation.json to --output.")
