"""The ``cifarkit`` command. Starting it never imports TensorFlow or Keras;
``cifarkit run`` imports them once the recipe and data have been checked."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import CifarkitError, allowed, did_you_mean
from .hookspecs import KINDS

from .scaffold import KIND_CHOICES


def _builtin_recipes() -> dict[str, Path]:
    folder = resources.files("cifarkit.recipes")
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def resolve_recipe_path(text: str) -> Path:
    """A recipe path; a bare name such as ``default`` means a recipe shipped with cifarkit."""
    path = Path(text)
    if path.exists() or "/" in text or text.endswith(".toml"):
        return path
    builtin = _builtin_recipes()
    if text in builtin:
        return builtin[text]
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifarkit",
        description="Train image classifiers from TOML recipes; extend with pluggy plugins.",
        epilog="Examples:\n  cifarkit run recipes/default.toml --set data.limit=512 --set train.epochs=1\n"
               "  cifarkit list-plugins --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cifarkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", help="train, evaluate and write a run directory for a recipe",
        description="Train the recipe's model, evaluate it once on the test split and write "
                    "a run directory: recipe.toml, metrics.csv, summary.json, model.keras, "
                    "accuracy.png, loss.png, run.log.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="KEY is a dotted recipe key: data.limit, train.epochs, model.dense_units, "
               "augmentation.0.degrees,\ncallbacks.early_stopping.patience. VALUE is read as "
               "a TOML value (1, 0.5, true, [64, 128]),\nelse as a plain string.")
    run.add_argument("recipe", metavar="RECIPE",
                     help="recipe file, or the name of a recipe shipped with cifarkit (e.g. default)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one recipe key (repeatable)")
    run.add_argument("--output", "-o", default="runs", metavar="DIR",
                     help="where run directories go (default: runs/)")
    run.add_argument("--plugin", dest="plugin_files", action="append", default=[], metavar="PATH",
                     help="also load plugins from this Python file (trusted code; repeatable)")

    lp = sub.add_parser("list-plugins", help="list every registered plugin",
                        description="List registered plugins: kind, name, source, summary and "
                                    "parameters. Does not import TensorFlow.")
    lp.add_argument("name", nargs="?", metavar="NAME", help="show one plugin in full")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    lp.add_argument("--kind", choices=list(KINDS), help="only plugins of this kind")
    lp.add_argument("--plugin", dest="plugin_files", action="append", default=[], metavar="PATH",
                    help="also load plugins from this Python file (trusted code; repeatable)")
    new = sub.add_parser("new-plugin", help="write a ready-to-install plugin package",
                         description="Write DIR/cifarkit-NAME/: a package with one working plugin "
                                     "of KIND, its entry point, a test using cifarkit's pytest "
                                     "fixtures, and a README.")
    new.add_argument("name", metavar="NAME", help="plugin name (lowercase, digits, '_')")
    new.add_argument("--kind", default="model", choices=KIND_CHOICES,
                     help="plugin kind (default: model)")
    new.add_argument("--dir", default=".", metavar="DIR", help="where to create it (default: .)")
    return parser


def cmd_new_plugin(args) -> int:
    from .scaffold import new_plugin

    root = new_plugin(args.name, args.kind, Path(args.dir))
    print(f"wrote {root}\nnext: cd {root} && pip install -e . && pytest")
    return 0


def cmd_run(args) -> int:
    from rich.console import Console

    from .recipe import load_recipe
    from .registry import load_registry
    from .reporter import Reporter

    registry = load_registry(tuple(args.plugin_files))
    recipe = load_recipe(resolve_recipe_path(args.recipe), args.overrides, registry)
    from .runner import run

    result = run(recipe, registry, Path(args.output), Reporter(Console()))
    return 0 if result.summary.get("status") == "completed" else 1


def cmd_list_plugins(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .registry import load_registry

    registry = load_registry(tuple(args.plugin_files))
    plugins = registry.all()
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
        doc = {"plugins": [p.to_json() for p in plugins],
               "broken": [b.to_json() for b in registry.broken]}
        print(json.dumps(doc, indent=2))
        return 0
    console = Console()
    if args.name:
        for p in plugins:
            console.rule(f"{p.kind} {p.name}")
            console.print(f"source: {p.source}", highlight=False)
            console.print(p.doc or "(no docstring)", highlight=False, markup=False)
            _print_params(console, p)
        return 0
    for kind in KINDS:
        group = [p for p in plugins if p.kind == kind]
        if not group:
            continue
        table = Table(title=f"{kind} plugins", title_justify="left", show_lines=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("source")
        table.add_column("summary")
        table.add_column("parameters (default)", overflow="fold")
        for p in group:
            params = ", ".join(
                f"{s.name}" + ("" if s.required else f"={_show(s.default)}") for s in p.params)
            table.add_row(p.name, p.source, p.summary, params or "-")
        console.print(table)
    for b in registry.broken:
        console.print(f"[bold red]broken[/] {b.source}: {b.error}", highlight=False)
    return 0


def _show(value) -> str:
    if value is None:
        return "unset"
    return json.dumps(value) if isinstance(value, (str, list, bool)) else str(value)


def _print_params(console, p) -> None:
    from rich.table import Table

    if not p.params:
        console.print("parameters: none")
        return
    table = Table(show_header=True, title="parameters", title_justify="left")
    for col in ("name", "type", "default", "description"):
        table.add_column(col)
    for s in p.params:
        table.add_row(s.name, s.type_name, "(required)" if s.required else _show(s.default),
                      s.description)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"run": cmd_run, "list-plugins": cmd_list_plugins,
               "new-plugin": cmd_new_plugin}[args.command]
    try:
        return handler(args)
    except CifarkitError as exc:
        print(f"cifarkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cifarkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
