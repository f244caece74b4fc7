"""``cifarkit run RECIPE`` (or ``--resume RUN_DIR``): train, evaluate once, write a run
directory."""

from __future__ import annotations

import json

from cifarkit.cli import options


def arguments(parser) -> None:
    options.recipe(parser, optional=True)
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted run from its last completed epoch (or "
                             "a completed one, with --set train.epochs=N)")
    parser.add_argument("--deterministic", action="store_true",
                        help="TensorFlow op determinism (same as --set train.deterministic=true)")
    options.backend(parser)
    parser.add_argument("--compilation-cache", metavar="DIR|off",
                        help="where compiled programs are kept between runs (JAX backend; same "
                             "as --set train.compilation_cache=...; default: the user's cache "
                             "folder)")
    options.overrides(parser)
    parser.add_argument("--output", "-o", default="runs", metavar="DIR",
                        help="where run directories go (default: runs/)")
    parser.add_argument("--run-dir", metavar="DIR",
                        help="the run directory itself instead of a new one in --output "
                             "(created; an existing one must be empty): what a sweep names "
                             "before its trial starts")
    options.plugin_files(parser)
    parser.add_argument("--trust-run", action="store_true",
                        help="with --resume: run the plugin files the run directory's recipe "
                             "names even if another user's cifarkit made it (docs/runs.md)")


def overrides(args) -> list[str]:
    """``--set`` values, with the flags that stand for recipe keys added."""
    return (options.assignments(args)
            + (["train.deterministic=true"] if args.deterministic else [])
            + options.backend_override(args)
            + ([f"train.compilation_cache={json.dumps(args.compilation_cache)}"]
               if args.compilation_cache else []))


def main(args) -> int:
    from cifarkit.api import train
    from cifarkit.cli.reporter import Reporter

    result = train(args.recipe, overrides(args), args.output, plugins=args.plugin_files,
                   report=Reporter(options.make_console()), resume=args.resume,
                   trust_run=args.trust_run, run_dir=args.run_dir)
    if result.summary.get("finish_errors"):  # trained, but a tracker's record failed
        return 1
    return {"completed": 0, "interrupted": 130}.get(result.status, 1)


COMMAND = options.Command(
    "run", main, "train, evaluate and write a run directory for a recipe", arguments,
    description="Train the recipe's model, evaluate it once on the test split and write "
                "a run directory: recipe.toml, metrics.csv, timing.csv, summary.json, "
                "model.keras, accuracy.png, loss.png, learning_rate.png, confusion_matrix.png, "
                "confusion_matrix_normalized.png, run.log.",
    epilog="KEY is a dotted recipe key: data.limit, train.epochs, model.dense_units, "
           "augmentation.0.rotation,\ncallbacks.early_stopping.patience. VALUE is read as "
           "a TOML value (1, 0.5, true, [64, 128]),\nelse as a plain string.")
