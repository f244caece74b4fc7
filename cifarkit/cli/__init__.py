"""The ``cifarkit`` command. Starting it never imports TensorFlow or Keras;
``cifarkit run`` imports them once the recipe and data have been checked."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from cifarkit import __version__
from cifarkit.errors import (CifarkitError, allowed, did_you_mean, is_plugin_exit, masked_url,
                             plugin_exit, terminal_safe)
from cifarkit.backends import BACKENDS
from cifarkit.core.hookspecs import KINDS

from cifarkit.cli.scaffold import KIND_CHOICES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifarkit",
        description="Train image classifiers from TOML recipes; extend with pluggy plugins.",
        epilog="Examples:\n  cifarkit run recipes/default.toml --set data.limit=512 --set train.epochs=1\n"
               "  cifarkit list-plugins --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cifarkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for add in (_run_command, _list_plugins_command, _new_plugin_command, _evaluate_command,
                _predict_command, _runs_command, _compare_command, _show_command,
                _sweep_command, _export_command):
        add(sub)
    return parser


def _run_command(sub) -> None:
    run = sub.add_parser(
        "run", help="train, evaluate and write a run directory for a recipe",
        description="Train the recipe's model, evaluate it once on the test split and write "
                    "a run directory: recipe.toml, metrics.csv, timing.csv, summary.json, "
                    "model.keras, accuracy.png, loss.png, confusion_matrix.png, run.log.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="KEY is a dotted recipe key: data.limit, train.epochs, model.dense_units, "
               "augmentation.0.rotation,\ncallbacks.early_stopping.patience. VALUE is read as "
               "a TOML value (1, 0.5, true, [64, 128]),\nelse as a plain string.")
    run.add_argument("recipe", metavar="RECIPE", nargs="?",
                     help="recipe file, or the name of a recipe shipped with cifarkit (e.g. default)")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue an interrupted run from its last completed epoch")
    run.add_argument("--deterministic", action="store_true",
                     help="TensorFlow op determinism (same as --set train.deterministic=true)")
    run.add_argument("--backend", choices=BACKENDS,
                     help="Keras backend (same as --set train.backend=NAME; default: the "
                          "recipe's train.backend, else KERAS_BACKEND, else tensorflow)")
    run.add_argument("--compilation-cache", metavar="DIR|off",
                     help="where compiled programs are kept between runs (JAX backend; same as "
                          "--set train.compilation_cache=...; default: the user's cache folder)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one recipe key (repeatable)")
    run.add_argument("--output", "-o", default="runs", metavar="DIR",
                     help="where run directories go (default: runs/)")
    run.add_argument("--plugin", dest="plugin_files", action="append", default=[], metavar="PATH",
                     help="also load plugins from this Python file (trusted code; repeatable)")
    run.add_argument("--trust-run", action="store_true",
                     help="with --resume: run the plugin files the run directory's recipe names "
                          "even if another user's cifarkit made it (docs/runs.md)")


def _list_plugins_command(sub) -> None:
    lp = sub.add_parser("list-plugins", help="list every registered plugin",
                        description="List registered plugins: kind, name, source, summary and "
                                    "parameters. Does not import TensorFlow.")
    lp.add_argument("name", nargs="?", metavar="NAME", help="show one plugin in full")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    lp.add_argument("--kind", choices=list(KINDS), help="only plugins of this kind")
    lp.add_argument("--plugin", dest="plugin_files", action="append", default=[], metavar="PATH",
                    help="also load plugins from this Python file (trusted code; repeatable)")


def _new_plugin_command(sub) -> None:
    new = sub.add_parser("new-plugin", help="write a ready-to-install plugin package",
                         description="Write DIR/cifarkit-NAME/: a package with one working plugin "
                                     "of KIND, its entry point, a test using cifarkit's pytest "
                                     "fixtures, and a README.")
    new.add_argument("name", metavar="NAME", help="plugin name (lowercase, digits, '_')")
    new.add_argument("--kind", default="model", choices=KIND_CHOICES,
                     help="plugin kind (default: model)")
    new.add_argument("--dir", default=".", metavar="DIR", help="where to create it (default: .)")


def _show_command(sub) -> None:
    show = sub.add_parser("show", help="print a recipe resolved, its plugins and its model",
                          description="Print the recipe as a run would use it (extends, --set "
                                      "and every default resolved) as TOML, each plugin it "
                                      "resolves to with its parameters and their source, and "
                                      "the model's layers and parameter count. Nothing is "
                                      "trained; the model is built for the image shape and "
                                      "classes the dataset's metadata gives (no image is read "
                                      "where the dataset plugin describes itself, as CIFAR's do).")
    show.add_argument("recipe", metavar="RECIPE",
                      help="recipe file, or the name of a recipe shipped with cifarkit")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override one recipe key (repeatable)")
    show.add_argument("--backend", choices=BACKENDS, help="Keras backend (as for run)")
    show.add_argument("--plugin", dest="plugin_files", action="append", default=[],
                      metavar="PATH", help="also load plugins from this Python file")
    show.add_argument("--no-model", action="store_true",
                      help="leave out the model (no dataset read, no Keras started)")
    show.add_argument("--json", action="store_true", help="the same as JSON")


def cmd_show(args) -> int:
    from cifarkit.cli.show import model_summary, plugin_rows
    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry
    from cifarkit.runs.artifacts import json_text

    registry = load_registry(tuple(args.plugin_files))
    overrides = list(args.overrides) + ([f"train.backend={args.backend}"] if args.backend else [])
    recipe = load_recipe(locate_recipe(args.recipe), overrides, registry)
    plugins = plugin_rows(recipe, registry)
    summary, count = model_summary(recipe, registry) if not args.no_model else (None, None)
    if args.json:
        print(json_text({"recipe": recipe.resolved(), "plugins": plugins,
                         "model_summary": summary, "parameters": count}))
        return 0
    print(recipe.dumps())
    print("# plugins")
    for p in plugins:
        print(f"{p['key']}: {p['kind']} {p['plugin']!r} from {p['from']} ({p['module']})")
        for param in p["parameters"]:
            print(f"    {param['name']} = {json.dumps(param['value'], default=str)}  "
                  f"({param['source']})")
    if summary is not None:
        print("\n# model")
        print(summary.rstrip())
        print(f"parameters: {count:,}")
    return 0


def _sweep_command(sub) -> None:
    sw = sub.add_parser("sweep", help="one run per combination of --grid values, and their table",
                        description="Run the recipe once per combination of the --grid values "
                                    "(each trial an ordinary run directory in one sweep folder), "
                                    "then print the trials as a table with the best one by "
                                    "validation accuracy. Ctrl-C stops after the current trial; "
                                    "--resume SWEEP_DIR continues.")
    sw.add_argument("recipe", metavar="RECIPE", nargs="?",
                    help="recipe file, or the name of a recipe shipped with cifarkit")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="a recipe key and its values, comma-separated (repeatable; a value "
                         "may be a TOML array: --grid model.filters=[32,64],[64,128])")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one recipe key in every trial (repeatable)")
    sw.add_argument("--backend", choices=BACKENDS, help="Keras backend (as for run)")
    sw.add_argument("--output", "-o", default="runs", metavar="DIR",
                    help="where the sweep folder goes (default: runs/)")
    sw.add_argument("--trials", type=int, metavar="N",
                    help="search the recipe's [sweep] table with Optuna for N trials "
                         "(default: its sweep.trials); needs pip install -e \".[sweep]\"")
    sw.add_argument("--storage", metavar="URL",
                    help="Optuna storage the study lives in (default: a SQLite file in the "
                         "sweep folder); workers given the same URL and --study share one study")
    sw.add_argument("--study", metavar="NAME", help="the study's name (default: the recipe's)")
    sw.add_argument("--resume", metavar="SWEEP_DIR", help="continue a sweep")
    sw.add_argument("--plugin", dest="plugin_files", action="append", default=[],
                    metavar="PATH", help="also load plugins from this Python file")
    sw.add_argument("--json", action="store_true", help="the final table as JSON")
    sw.add_argument("--trust-run", action="store_true",
                    help="with --resume: run what the sweep folder's sweep.json names (recipe, "
                         "overrides, plugin files) even if another user's cifarkit made it")


def cmd_sweep(args) -> int:
    from cifarkit.cli import sweep

    plugin_files = tuple(str(Path(p).absolute()) for p in args.plugin_files)
    if args.resume:
        if args.recipe or args.grid or args.overrides or args.backend or args.trials \
                or args.study:
            raise CifarkitError("sweep --resume SWEEP_DIR takes no RECIPE, --grid, --set, "
                                "--backend, --trials or --study: the sweep folder's "
                                "sweep.json holds them")
        folder = Path(args.resume).absolute()
        sweep.check_trusted(folder, args.trust_run)
        state = sweep.read_state(folder)
        stored = state.get("storage")
        if args.storage:  # the whole URL again, password included (sweep.json keeps it masked)
            if masked_url(args.storage) != stored:
                raise CifarkitError(f"sweep --resume: --storage {masked_url(args.storage)} "
                                    f"is not this sweep's storage ({stored})")
            sweep.remember_storage(args.storage)
        elif isinstance(stored, str) and ":***@" in stored:
            raise CifarkitError(f"sweep --resume: this sweep's storage {stored} has a password, "
                                "which cifarkit does not store; pass --storage with the whole URL")
    else:
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
            folder, state = _new_sweep(args, plugin_files)
    child = sweep.child_args(plugin_files, args.trust_run)
    from cifarkit.runs.lock import RunLock

    # One sweep process per folder (a second is one line). --json: stdout carries the
    # table alone; progress and the trials' output go to stderr.
    with RunLock(folder), sweep.StopAfterTrial() as stop, contextlib.redirect_stdout(
            sys.stderr if args.json else sys.stdout):
        if state.get("mode") == "search":
            sweep.search(folder, state, child, stop)
        else:
            sweep.run_trials(folder, state, state["recipe"], child, stop)
    rows = sweep.rows(folder, state)
    _print_sweep(args, folder, state, rows)
    if stop.requested and not sweep.finished(state, rows):
        print(f"stopped; continue with: cifarkit sweep --resume {folder}", file=sys.stderr)
        return 130
    return 0 if all(r.get("status") in ("completed", "pruned") for r in rows) else 1


def _new_sweep(args, plugin_files: tuple):
    """A new sweep folder and its sweep.json, after every trial's recipe (grid) or the
    search space (search) was checked: a mistake is one line and writes nothing."""
    from cifarkit.cli import sweep
    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry

    if not args.recipe:
        raise CifarkitError("sweep: give a RECIPE with --grid KEY=V1,V2 or a [sweep] table, "
                            "or --resume SWEEP_DIR")
    registry = load_registry(plugin_files)
    path = locate_recipe(args.recipe)
    base = list(args.overrides) + ([f"train.backend={args.backend}"] if args.backend else [])
    recipe = load_recipe(path, base, registry)
    state: dict[str, Any] = {"recipe": str(path), "recipe_name": recipe.name, "set": base,
                             "started_at": sweep.started_at()}
    if args.grid:
        if args.trials or args.storage or args.study:
            raise CifarkitError("sweep: --grid runs every combination; --trials, --storage "
                                "and --study belong to a search of the recipe's [sweep] table")
        state.update(mode="grid", grid=args.grid, trials=sweep.plan(
            path, base, sweep.parse_grid(args.grid), registry, recipe.name))
    else:
        space = sweep.space(recipe, registry)
        sweep.import_optuna()
        cfg = recipe.sweep
        state.update(mode="search", space=space, metric=cfg.metric, direction=cfg.direction,
                     pruner=cfg.pruner, seed=recipe.seed, trials=[],
                     trials_wanted=args.trials or cfg.trials,
                     study=args.study or f"{recipe.name}-sweep")
    folder = sweep.new_folder(Path(args.output).absolute(), recipe.name)
    if state["mode"] == "search":
        state["storage"] = sweep.remember_storage(args.storage
                                                  or f"sqlite:///{folder / 'optuna.db'}")
        try:
            sweep.open_study(state)
        except CifarkitError:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
    sweep.write_state(folder, state)
    what = (f"{len(state['trials'])} trials" if state["mode"] == "grid" else
            f"searching {state['trials_wanted']} trials in study {state['study']!r} "
            f"({state['storage']})")
    print(f"sweep: {what}; folder {folder}", flush=True)
    return folder, state


def _print_sweep(args, folder: Path, state: dict[str, Any], rows: list) -> None:
    from cifarkit.cli import history, sweep
    from cifarkit.runs.artifacts import json_text

    best = sweep.best(rows)
    study_best = sweep.study_best(state) if state.get("mode") == "search" else None
    if args.json:
        print(json_text({"sweep": str(folder), "trials": rows,
                         "best": None if best is None else best["trial"],
                         "study_best": study_best}))
        return
    keys = list(state.get("space") or (state["trials"][0]["values"] if state["trials"] else []))
    columns = (("trial", "trial"), *((k, k) for k in keys), ("status", "status"),
               ("best_val_accuracy", "best val acc"), ("test_accuracy", "test acc"),
               ("name", "run"))
    history.print_rows(make_console(), rows, columns, f"sweep {folder.name}")
    if study_best is not None:
        print(terminal_safe(f"best in the study: trial {study_best['trial']} ({state['metric']} "
                            f"{study_best['value']:.4g}), recipe "
                            f"{study_best['run_dir']}/recipe.toml"))
    elif best is not None:
        print(terminal_safe(f"best: trial {best['trial']} (validation accuracy "
                            f"{100 * best['best_val_accuracy']:.2f} %), recipe "
                            f"{best['path']}/recipe.toml"))


def _runs_command(sub) -> None:
    runs = sub.add_parser("runs", help="list the run directories in a folder",
                          description="One row per run directory in DIR: recipe, backend, "
                                      "status, epochs done/planned, best validation and test "
                                      "accuracy, training time, start. A folder that is not a "
                                      "readable run is a row marked unreadable.")
    runs.add_argument("folder", nargs="?", default="runs", metavar="DIR",
                      help="where the run directories are (default: runs, as for cifarkit run)")
    runs.add_argument("--sort", default="started", metavar="KEY",
                      help="column to sort by: name, recipe, backend, status, epochs, "
                           "best_val_accuracy, test_accuracy, train_time_s, started "
                           "(accuracies and start: newest/best first; default: started)")
    runs.add_argument("--json", action="store_true", help="the rows as JSON")


def _compare_command(sub) -> None:
    cmp = sub.add_parser("compare", help="compare runs: recipe differences, figures, curves",
                         description="Print the recipe keys whose values differ between the "
                                     "runs and each run's final figures, and write one PNG of "
                                     "their accuracy and loss curves overlaid.")
    cmp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    cmp.add_argument("--plot", default="compare.png", metavar="PNG",
                     help="where to write the curves (default: compare.png)")
    cmp.add_argument("--json", action="store_true", help="the same data as JSON")


def cmd_runs(args) -> int:
    from cifarkit.cli import history
    from cifarkit.runs.artifacts import json_text

    rows = history.sort_rows(history.list_runs(Path(args.folder)), args.sort)
    if args.json:
        print(json_text(rows))
        return 0
    if not rows:
        print(f"no run directories in {terminal_safe(args.folder)}")
        return 0
    history.print_rows(make_console(), rows, title=f"runs in {args.folder}")
    return 0


def cmd_compare(args) -> int:
    from cifarkit.cli import history
    from cifarkit.runs.artifacts import json_text

    result = history.compare([Path(d) for d in args.run_dirs], Path(args.plot))
    if args.json:
        print(json_text(result))
        return 0
    console = make_console()
    names = [Path(d).name for d in args.run_dirs]
    diffs = result["differences"]
    if diffs:
        rows = [{"key": k, **{n: v for n, v in zip(names, values)}} for k, values in diffs.items()]
        columns = (("key", "recipe key"), *((n, n) for n in names))
        history.print_rows(console, [{k: json.dumps(v, default=str) if k != "key" else v
                                      for k, v in r.items()} for r in rows],
                           columns, "recipe keys that differ")
    else:
        print("the recipes are the same")
    figures = (("name", "run"), ("status", "status"), ("epochs", "epochs"),
               ("best_val_accuracy", "best val acc"), ("test_accuracy", "test acc"),
               ("test_loss", "test loss"), ("train_time_s", "training s"))
    history.print_rows(console, result["runs"], figures, "final figures")
    print(f"curves: {terminal_safe(result['plot'])}")
    return 0


def _evaluate_command(sub) -> None:
    ev = sub.add_parser("evaluate", help="evaluate a run's model.keras on the test split",
                        description="Reload RUN_DIR/model.keras and evaluate it on the run's test "
                                    "split (or the test split of --data): accuracy, loss, "
                                    "per-class accuracy, confusion matrix. Writes "
                                    "confusion_matrix.png and evaluation.json to --output.")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--data", metavar="PATH", help="another copy of the data (sets data.path)")
    ev.add_argument("--output", metavar="DIR", help="where to write (default: RUN_DIR/evaluation)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ev.add_argument("--backend", choices=BACKENDS, help="Keras backend to load the model on (default: the one the run trained on)")
    _trust_arguments(ev)


def _predict_command(sub) -> None:
    pr = sub.add_parser("predict", help="classify image files with a run's model",
                        description="Class names and probabilities for image files of any "
                                    "size (resized to the model's input): PNG and JPEG, or any "
                                    "other format Pillow reads (BMP, GIF, TIFF, WebP); 8- and "
                                    "16-bit, grayscale, palette and RGBA images are converted "
                                    "to 8-bit RGB (16-bit scaled, alpha dropped).")
    pr.add_argument("run_dir", metavar="RUN_DIR")
    pr.add_argument("images", metavar="IMAGE", nargs="+")
    pr.add_argument("--top", type=int, default=3, metavar="K", help="classes per image (default 3)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.add_argument("--backend", choices=BACKENDS, help="Keras backend to load the model on (default: the one the run trained on)")


def _export_command(sub) -> None:
    ex = sub.add_parser("export", help="export a run's model as ONNX or a TensorFlow SavedModel",
                        description="Export RUN_DIR/model.keras with Keras's model.export: the "
                                    "whole inference path (raw 0-255 float32 NHWC pixels in, "
                                    "class probabilities out), and a JSON beside it that "
                                    "describes the input, output and class names. ONNX needs "
                                    "the export extra: pip install -e \".[export]\".")
    ex.add_argument("run_dir", metavar="RUN_DIR")
    ex.add_argument("--format", required=True, choices=["onnx", "saved_model"])
    ex.add_argument("--output", metavar="PATH",
                    help="where to write (default: RUN_DIR/export/model.onnx or "
                         "RUN_DIR/export/saved_model)")
    ex.add_argument("--backend", choices=BACKENDS,
                    help="Keras backend to load the model on (default: tensorflow, whichever "
                         "backend trained it)")
    ex.add_argument("--json", action="store_true", help="print the description as JSON")


def cmd_export(args) -> int:
    from cifarkit.cli.export import export_run

    description = export_run(Path(args.run_dir), args.format,
                              Path(args.output) if args.output else None, args.backend)
    if args.json:
        print(json_text(description))
        return 0
    where = Path(args.output) if args.output else Path(args.run_dir) / "export"
    print(f"exported {args.format}: {where if args.output else where / description['path']} "
          f"(input {description['input']['name']!r}: float32 NHWC "
          f"{description['input']['shape'][1:]} 0-255; {len(description['class_names'])} "
          "class probabilities out)")
    return 0


def _trust_arguments(parser) -> None:
    parser.add_argument("--plugin", dest="plugin_files", action="append", default=[],
                        metavar="PATH", help="load plugins from this Python file (trusted "
                        "code; repeatable): one the run's recipe names, say")
    parser.add_argument("--trust-run", action="store_true",
                        help="run the plugin files and read the data path that RUN_DIR's "
                             "recipe names even though your cifarkit did not make it "
                             "(a run directory is data; docs/runs.md)")


def make_console():
    from cifarkit.cli.reporter import make_console as make

    return make()


def json_text(obj) -> str:
    from cifarkit.runs.artifacts import json_text as strict

    return strict(obj)


def cmd_evaluate(args) -> int:
    from cifarkit.cli.inference import evaluate_run

    result = evaluate_run(Path(args.run_dir), args.data,
                          Path(args.output) if args.output else None,
                          console=None if args.json else make_console(), backend=args.backend,
                          trust_run=args.trust_run, plugin_files=tuple(args.plugin_files))
    if args.json:
        print(json_text(result))
    return 0


def cmd_predict(args) -> int:
    from cifarkit.cli.inference import predict_images

    results = predict_images(Path(args.run_dir), [Path(p) for p in args.images], args.top,
                             backend=args.backend)
    if args.json:
        print(json_text(results))
        return 0
    console = make_console()
    for item in results:  # names escaped as everywhere: a file or class name is never obeyed
        best = ", ".join(f"{terminal_safe(p['class'])} {100 * p['probability']:.1f} %"
                         for p in item["predictions"])
        console.print(f"{terminal_safe(item['image'])}: {best}", highlight=False, markup=False)
    return 0


def cmd_new_plugin(args) -> int:
    from cifarkit.core.registry import load_registry
    from cifarkit.cli.scaffold import new_plugin

    existing = load_registry().all()
    taken = [p for p in existing if p.kind == args.kind and p.name == args.name]
    if taken:
        article = "an" if args.kind[0] in "aeiou" else "a"
        raise CifarkitError(f"new-plugin: {article} {args.kind} plugin named {args.name!r} already exists "
                            f"({taken[0].source}); choose another name")
    root = new_plugin(args.name, args.kind, Path(args.dir))
    print(f"wrote {root}\nnext: cd {root} && pip install -e . && pytest")
    return 0


def cmd_run(args) -> int:
    from cifarkit.core.recipe import load_recipe
    from cifarkit.core.registry import load_registry
    from cifarkit.cli.reporter import Reporter

    from cifarkit.runs.artifacts import read_resumable
    from cifarkit.core.recipe import locate_recipe
    from cifarkit.runs.runner import run

    overrides = (list(args.overrides)
                 + (["train.deterministic=true"] if args.deterministic else [])
                 + ([f"train.backend={args.backend}"] if args.backend else [])
                 + ([f"train.compilation_cache={json.dumps(args.compilation_cache)}"]
                    if args.compilation_cache else []))
    registry = load_registry(tuple(args.plugin_files))
    if args.resume:
        if args.recipe:
            raise CifarkitError("run --resume RUN_DIR takes no RECIPE: a resumed run uses the "
                                "recipe.toml in its run directory (--set may change the keys "
                                "a resume can honour, such as train.epochs)")
        run_dir = Path(args.resume).absolute()
        read_resumable(run_dir)  # a run directory, or a one-line error saying why not
        from cifarkit.runs.trust import check_resumable

        check_resumable(run_dir, args.trust_run)
        recipe = load_recipe(run_dir / "recipe.toml", overrides, registry)
        result = run(recipe, registry, run_dir.parent, Reporter(make_console()), resume=run_dir)
    else:
        if not args.recipe:
            raise CifarkitError("run: give a RECIPE, or --resume RUN_DIR")
        recipe = load_recipe(locate_recipe(args.recipe), overrides, registry)
        result = run(recipe, registry, Path(args.output), Reporter(make_console()))
    if result.summary.get("finish_errors"):  # trained, but a tracker's record failed
        return 1
    return {"completed": 0, "interrupted": 130}.get(result.summary.get("status"), 1)


def cmd_list_plugins(args) -> int:
    from cifarkit.core.registry import load_registry
    from cifarkit.cli.reporter import render_plugin, render_plugins

    registry = load_registry(tuple(args.plugin_files))
    order = {kind: i for i, kind in enumerate(KINDS)}
    plugins = sorted(registry.all() + registry.shadowed(), key=lambda p: (order[p.kind], p.name))
    clashes = registry.conflicts()
    if args.kind:
        plugins = [p for p in plugins if p.kind == args.kind]
    if args.name:
        chosen = [p for p in plugins if p.name == args.name]
        if not chosen:
            raise CifarkitError(f"no plugin named {args.name!r}"
                                f"{did_you_mean(args.name, [p.name for p in plugins])} "
                                f"({allowed({p.name for p in plugins})})")
        plugins = chosen
    if args.json:
        doc = {"plugins": [{**p.to_json(), "clash": (p.kind, p.name) in clashes} for p in plugins],
               "broken": [b.to_json() for b in registry.broken],
               "slow_imports": [{"source": s, "note": note} for s, note in registry.slow]}
        print(json_text(doc))
        return 0
    console = make_console()
    if args.name:
        for p in plugins:
            render_plugin(console, p)
    else:
        render_plugins(console, plugins, registry.broken, clashes, registry.slow)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"run": cmd_run, "list-plugins": cmd_list_plugins, "new-plugin": cmd_new_plugin,
               "evaluate": cmd_evaluate, "predict": cmd_predict, "runs": cmd_runs,
               "compare": cmd_compare, "show": cmd_show, "sweep": cmd_sweep,
               "export": cmd_export}[args.command]
    try:
        try:
            return handler(args)
        except SystemExit as exc:  # plugin code calling sys.exit(): not a success
            if is_plugin_exit(exc):
                raise plugin_exit(exc) from None
            raise
    except CifarkitError as exc:
        print(f"cifarkit: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cifarkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cifarkit ... | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0


if __name__ == "__main__":
    sys.exit(main())
