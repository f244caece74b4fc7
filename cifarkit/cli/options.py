"""What the commands share: their arguments declared once, the console, JSON output,
and :class:`Command`, the form every command takes (built-in or a plugin's)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

from cifarkit.backends import BACKENDS


@dataclass(frozen=True)
class Command:
    """One ``cifarkit`` command: its parser's arguments beside its handler.

    Attributes:
        name: what follows ``cifarkit`` on the command line.
        handler: ``handler(args) -> int | None``, the exit status (None: 0).
        help: the one line ``cifarkit --help`` lists.
        arguments: adds the command's arguments to its ``argparse`` parser.
        description: the paragraph its ``--help`` starts with (default: ``help``).
        epilog: text its ``--help`` ends with.
        source: where it comes from ("built-in", or the plugin that registered it).
    """

    name: str
    handler: Callable[[argparse.Namespace], int | None]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    description: str | None = None
    epilog: str | None = None
    source: str = "built-in"

    def add_to(self, sub) -> None:
        parser = sub.add_parser(self.name, help=self.help,
                                description=self.description or self.help,
                                epilog=self.epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        if self.arguments is not None:
            self.arguments(parser)
        parser.set_defaults(command_handler=self.handler)


RECIPE_HELP = "recipe file, or the name of a recipe shipped with cifarkit (e.g. default)"


def recipe_completions(prefix: str, **_) -> list[str]:
    """What a RECIPE word completes to (``cifarkit completion``): the names of the
    recipes shipped with cifarkit, then .toml files and folders."""
    from argcomplete.completers import FilesCompleter

    from cifarkit.core.recipe import builtin_recipes

    names = [n for n in builtin_recipes() if n.startswith(prefix)]
    return names + list(FilesCompleter(allowednames=("toml",))(prefix))


def _no_completions(**_) -> list[str]:
    return []


def recipe(parser, optional: bool = False) -> None:
    """RECIPE, then any number of KEY=VALUE (the same as ``--set KEY=VALUE``)."""
    parser.add_argument("recipe", metavar="RECIPE", nargs="?" if optional else None,
                        help=RECIPE_HELP).completer = recipe_completions
    parser.add_argument("assignments", metavar="KEY=VALUE", nargs="*",
                        help="after the recipe: the same as --set KEY=VALUE (also "
                             "KEY+=VALUE, ~KEY)").completer = _no_completions


def _override(word: str) -> bool:
    return "=" in word or word.startswith("~")


def assignments(args) -> list[str]:
    """The command line's recipe overrides: KEY=VALUE, KEY+=VALUE and ~KEY words after
    the recipe (or in its place, where the recipe is optional) and ``--set`` values, in
    the order they were typed (:func:`ordered_overrides`)."""
    from cifarkit.errors import CifarkitError

    words = list(getattr(args, "assignments", None) or [])
    if args.recipe is not None and _override(args.recipe) and not os.path.exists(args.recipe):
        words.insert(0, args.recipe)  # run --resume DIR KEY=VALUE: no recipe word
        args.recipe = None
    for word in words:
        if not _override(word):
            raise CifarkitError(f"unexpected argument {word!r}: after the recipe, KEY=VALUE "
                                "sets a recipe key, KEY+=VALUE appends to an array and ~KEY "
                                "removes one (as --set does)")
    ordered = getattr(args, "ordered", None)
    return list(ordered) if ordered is not None else [*words, *args.overrides]


def ordered_overrides(argv: list[str], args, extra: list[str]) -> list[str]:
    """Every override of a command line in the order typed: the values of ``--set`` (and
    ``--set=``) and the KEY=VALUE, KEY+=VALUE and ~KEY words (those argparse took as
    positionals, the recipe's place included, or left over after options)."""
    from collections import Counter

    bare = Counter([*(getattr(args, "assignments", None) or []), *extra])
    if args.recipe is not None and _override(args.recipe) and not os.path.exists(args.recipe):
        bare[args.recipe] += 1
    out, words = [], iter(argv)
    for word in words:
        if word == "--set":
            value = next(words, None)
            if value is not None:
                out.append(value)
        elif word.startswith("--set="):
            out.append(word[len("--set="):])
        elif bare[word] > 0 and _override(word):
            bare[word] -= 1
            out.append(word)
    return out


def overrides(parser, every_trial: bool = False) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one recipe key " + ("in every trial " if every_trial
                                                           else "") +
                        "(repeatable): KEY=VALUE sets it, KEY+=VALUE appends to an array, "
                        "~KEY removes a key or an array entry")


def backend(parser, help: str = "Keras backend (same as --set train.backend=NAME; default: "
                                 "the recipe's train.backend, else KERAS_BACKEND, else "
                                 "tensorflow)") -> None:
    parser.add_argument("--backend", choices=BACKENDS, help=help)


LOAD_BACKEND = "Keras backend to load the model on (default: the one the run trained on)"


def plugin_files(parser, help: str = "also load plugins from this Python file (trusted code; "
                                     "repeatable)") -> None:
    parser.add_argument("--plugin", dest="plugin_files", action="append", default=[],
                        metavar="PATH", help=help)


def as_json(parser, help: str = "print JSON") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def trust(parser) -> None:
    """``--plugin`` and ``--trust-run`` for a command that reads a run directory's recipe."""
    plugin_files(parser, "load plugins from this Python file (trusted code; repeatable): one "
                         "the run's recipe names, say")
    parser.add_argument("--trust-run", action="store_true",
                        help="run the plugin files and read the data path that RUN_DIR's "
                             "recipe names even though your cifarkit did not make it "
                             "(a run directory is data; docs/runs.md)")


def backend_override(args) -> list[str]:
    """``--backend NAME`` as the override it stands for."""
    return [f"train.backend={args.backend}"] if getattr(args, "backend", None) else []


def make_console():
    from cifarkit.cli.reporter import make_console as make

    return make()


def json_text(obj: Any) -> str:
    from cifarkit.runs.artifacts import json_text as strict

    return strict(obj)


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
