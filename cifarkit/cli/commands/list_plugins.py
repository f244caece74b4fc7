"""``cifarkit list-plugins [NAME]``: every registered plugin (and command), or one in full."""

from __future__ import annotations

from cifarkit.cli import options
from cifarkit.core.hookspecs import KINDS
from cifarkit.errors import CifarkitError, allowed, did_you_mean


def arguments(parser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="show one plugin in full")
    options.as_json(parser, "machine-readable output")
    parser.add_argument("--kind", choices=list(KINDS), help="only plugins of this kind")
    options.plugin_files(parser)


def main(args) -> int:
    from cifarkit.cli import plugin_commands
    from cifarkit.cli.reporter import render_plugin, render_plugins
    from cifarkit.core.registry import load_registry

    registry = load_registry(tuple(args.plugin_files))
    order = {kind: i for i, kind in enumerate(KINDS)}
    plugins = sorted(registry.all() + registry.shadowed(), key=lambda p: (order[p.kind], p.name))
    clashes = registry.conflicts()
    commands = plugin_commands(registry)
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
               "commands": [{"name": c.name, "source": c.source, "summary": c.help}
                            for c in commands],
               "broken": [b.to_json() for b in registry.broken],
               "slow_imports": [{"source": s, "note": note} for s, note in registry.slow]}
        print(options.json_text(doc))
        return 0
    console = options.make_console()
    if args.name:
        for p in plugins:
            render_plugin(console, p)
    else:
        render_plugins(console, plugins, registry.broken, clashes, registry.slow,
                       () if args.kind else commands)
    return 0


COMMAND = options.Command(
    "list-plugins", main, "list every registered plugin", arguments,
    description="List registered plugins: kind, name, source, summary and parameters, and the "
                "commands plugins add. Does not import TensorFlow.")
