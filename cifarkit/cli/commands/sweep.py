"""``cifarkit sweep RECIPE --grid KEY=V1,V2`` (or a search of its ``[sweep]`` table, or
``--resume SWEEP_DIR``): the trials (cifarkit.sweeps runs them) and their table."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from cifarkit.cli import options
from cifarkit.errors import CifarkitError, terminal_safe


def arguments(parser) -> None:
    options.recipe(parser, optional=True)
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a recipe key and its values, comma-separated (repeatable; a "
                             "value may be a TOML array: --grid model.filters=[32,64],[64,128])")
    options.overrides(parser, every_trial=True)
    options.backend(parser, "Keras backend (as for run)")
    parser.add_argument("--output", "-o", default="runs", metavar="DIR",
                        help="where the sweep folder goes (default: runs/)")
    parser.add_argument("--trials", type=int, metavar="N",
                        help="search the recipe's [sweep] table with Optuna for N trials "
                             "(default: its sweep.trials); needs pip install -e \".[sweep]\"")
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage the study lives in (default: a SQLite file in the "
                             "sweep folder); workers given the same URL and --study share one "
                             "study")
    parser.add_argument("--study", metavar="NAME",
                        help="the study's name (default: the recipe's)")
    parser.add_argument("--resume", metavar="SWEEP_DIR", help="continue a sweep")
    options.plugin_files(parser, "also load plugins from this Python file")
    options.as_json(parser, "the final table as JSON")
    parser.add_argument("--trust-run", action="store_true",
                        help="with --resume: run what the sweep folder's sweep.json names "
                             "(recipe, overrides, plugin files) even if another user's cifarkit "
                             "made it")


def main(args) -> int:
    from cifarkit.sweeps import folder as sweep_folder
    from cifarkit.sweeps import search, start

    plugin_files = tuple(str(Path(p).absolute()) for p in args.plugin_files)
    # --json: stdout carries the table alone; progress and the trials' output go to stderr
    progress = sys.stderr if args.json else sys.stdout
    sets = options.assignments(args)
    if args.resume:
        if args.recipe or args.grid or sets or args.backend or args.trials \
                or args.study:
            raise CifarkitError("sweep --resume SWEEP_DIR takes no RECIPE, --grid, --set, "
                                "--backend, --trials or --study: the sweep folder's "
                                "sweep.json holds them")
        folder = Path(args.resume).absolute()
        state = start.resumed_sweep(folder, args.storage, args.trust_run)
    else:
        folder, state = start.new_sweep(
            args.recipe, sets + options.backend_override(args), args.grid,
            Path(args.output), plugin_files, args.trials, args.storage, args.study)
        what = (f"{len(state['trials'])} trials" if state["mode"] == "grid" else
                f"searching {state['trials_wanted']} trials in study {state['study']!r} "
                f"({state['storage']})")
        print(f"sweep: {what}; folder {folder}", file=progress, flush=True)
    with contextlib.redirect_stdout(progress):
        stop = start.run_sweep(folder, state, plugin_files, args.trust_run)
    rows = sweep_folder.rows(folder, state)
    _print_table(args, folder, state, rows)
    if stop.requested and not search.finished(state, rows):
        print(f"stopped; continue with: cifarkit sweep --resume {folder}", file=sys.stderr)
        return 130
    return 0 if all(r.get("status") in ("completed", "pruned") for r in rows) else 1


def _print_table(args, folder: Path, state: dict, rows: list) -> None:
    from cifarkit.cli import history
    from cifarkit.sweeps import search
    from cifarkit.sweeps.folder import best as best_trial

    best = best_trial(rows)
    study_best = search.study_best(state) if state.get("mode") == "search" else None
    if args.json:
        print(options.json_text({"sweep": str(folder), "trials": rows,
                                 "best": None if best is None else best["trial"],
                                 "study_best": study_best}))
        return
    keys = list(state.get("space") or (state["trials"][0]["values"] if state["trials"] else []))
    columns = (("trial", "trial"), *((k, k) for k in keys), ("status", "status"),
               ("best_val_accuracy", "best val acc"), ("test_accuracy", "test acc"),
               ("name", "run"))
    history.print_rows(options.make_console(), rows, columns, f"sweep {folder.name}")
    if study_best is not None:
        print(terminal_safe(f"best in the study: trial {study_best['trial']} ({state['metric']} "
                            f"{study_best['value']:.4g}), recipe "
                            f"{study_best['run_dir']}/recipe.toml"))
    elif best is not None:
        print(terminal_safe(f"best: trial {best['trial']} (validation accuracy "
                            f"{100 * best['best_val_accuracy']:.2f} %), recipe "
                            f"{best['path']}/recipe.toml"))


COMMAND = options.Command(
    "sweep", main, "one run per combination of --grid values, and their table", arguments,
    description="Run the recipe once per combination of the --grid values (each trial an "
                "ordinary run directory in one sweep folder), then print the trials as a "
                "table with the best one by validation accuracy. Ctrl-C stops after the "
                "current trial; --resume SWEEP_DIR continues.")
