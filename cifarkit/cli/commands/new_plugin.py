"""``cifarkit new-plugin NAME --kind KIND``: write a ready-to-install plugin package."""

from __future__ import annotations

from pathlib import Path

from cifarkit.cli import options
from cifarkit.cli.scaffold import KIND_CHOICES
from cifarkit.errors import CifarkitError


def arguments(parser) -> None:
    parser.add_argument("name", metavar="NAME", help="plugin name (lowercase, digits, '_')")
    parser.add_argument("--kind", default="model", choices=KIND_CHOICES,
                        help="plugin kind (default: model)")
    parser.add_argument("--output", "-o", "--dir", dest="output", default=".", metavar="DIR",
                        help="where to create it (default: .; --dir is the older name)")


def main(args) -> int:
    from cifarkit.cli.scaffold import new_plugin
    from cifarkit.core.registry import load_registry

    taken = [p for p in load_registry().all() if p.kind == args.kind and p.name == args.name]
    if taken:
        article = "an" if args.kind[0] in "aeiou" else "a"
        raise CifarkitError(f"new-plugin: {article} {args.kind} plugin named {args.name!r} "
                            f"already exists ({taken[0].source}); choose another name")
    root = new_plugin(args.name, args.kind, Path(args.output))
    print(f"wrote {root}\nnext: cd {root} && pip install -e . && pytest")
    return 0


COMMAND = options.Command(
    "new-plugin", main, "write a ready-to-install plugin package", arguments,
    description="Write DIR/cifarkit-NAME/ (DIR: --output): a package with one working "
                "plugin of KIND, its entry point, a test using cifarkit's pytest fixtures, "
                "and a README.")
