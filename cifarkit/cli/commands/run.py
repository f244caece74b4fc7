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
    parser.add_argument("--smoke", action="store_true",
                        help="the whole chain in seconds: 2 steps of training on 256 examples, "
                             "validation, a checkpoint, a resume, the test split, model.keras "
                             "reloaded (its accuracy means nothing)")
    parser.add_argument("--overfit-batches", type=int, metavar="N",
                        help="train 30 epochs on the same N batches (no augmentation, "
                             "validation or callbacks): does the training loss go down?")
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

    if args.smoke or args.overfit_batches is not None:
        return _check_run(args)

    result = train(args.recipe, overrides(args), args.output, plugins=args.plugin_files,
                   report=Reporter(options.make_console()), resume=args.resume,
                   trust_run=args.trust_run, run_dir=args.run_dir)
    if result.summary.get("finish_errors"):  # trained, but a tracker's record failed
        return 1
    return {"completed": 0, "interrupted": 130}.get(result.status, 1)


def _check_run(args) -> int:
    """``--smoke`` and ``--overfit-batches N``: a run that checks the chain or the model,
    and one line saying what it showed."""
    import time

    from cifarkit.api import overfit, smoke
    from cifarkit.cli.reporter import Reporter
    from cifarkit.errors import CifarkitError

    if args.resume or args.run_dir or (args.smoke and args.overfit_batches is not None):
        raise CifarkitError("run: --smoke and --overfit-batches start a run of their own: give "
                            "a RECIPE, not --resume or --run-dir, and one of the two")
    if args.recipe is None:
        raise CifarkitError("run: give a RECIPE to --smoke or --overfit-batches")
    console = options.make_console()
    started = time.perf_counter()
    if args.smoke:
        run = smoke(args.recipe, overrides(args), args.output, plugins=args.plugin_files,
                    report=Reporter(console))
        if run.status == "completed":
            console.print(f"smoke run passed in {time.perf_counter() - started:.1f} s: trained, "
                          "validated, checkpointed, resumed, evaluated, saved and reloaded "
                          f"({run.run_dir}); its accuracy means nothing", style="green",
                          highlight=False, markup=False)
        return 0 if run.status == "completed" else 1
    run, first, last = overfit(args.recipe, args.overfit_batches, overrides(args), args.output,
                               plugins=args.plugin_files, report=Reporter(console))
    if first is None or last is None:
        return 1
    drop = last < first / 2
    console.print(f"training loss on {args.overfit_batches} batch(es): {first:.4g} in epoch 1, "
                  f"{last:.4g} in epoch {len(run.metrics())}: "
                  + ("the model learns them" if drop else "it did not halve: check the model, "
                     "the learning rate and the labels"),
                  style="green" if drop else "yellow", highlight=False, markup=False)
    return 0 if drop else 1


COMMAND = options.Command(
    "run", main, "train, evaluate and write a run directory for a recipe", arguments,
    description="Train the recipe's model, evaluate it once on the test split and write "
                "a run directory: recipe.toml, metrics.csv, timing.csv, summary.json, "
                "model.keras, accuracy.png, loss.png, learning_rate.png, confusion_matrix.png, "
                "confusion_matrix_normalized.png, run.log.",
    epilog="KEY is a dotted recipe key: data.limit, train.epochs, model.dense_units, "
           "augmentation.0.rotation,\ncallbacks.early_stopping.patience. VALUE is read as "
           "a TOML value (1, 0.5, true, [64, 128]),\nelse as a plain string.")
