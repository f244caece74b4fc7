"""The ``cifarkit`` command. Starting it never imports TensorFlow or Keras;
``cifarkit run`` imports them once the recipe and data have been checked.

Each built-in command is a module of :mod:`cifarkit.cli.commands` (its arguments
beside its handler); a plugin adds commands through the ``register_commands`` hook.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cifarkit.version import __version__
from cifarkit.cli.options import Command
from cifarkit.errors import CifarkitError, is_plugin_exit, plugin_exit, terminal_safe


def built_in_commands() -> list[Command]:
    from cifarkit.cli.commands import BUILT_IN

    return [importlib.import_module(f"cifarkit.cli.commands.{name}").COMMAND
            for name in BUILT_IN]


def plugin_commands(registry) -> list[Command]:
    """The commands the registry's plugins register. One whose name is taken (by a
    built-in command or an earlier plugin's) is recorded as broken, not added."""
    from cifarkit.core.registry import BrokenPlugin

    taken = {c.name: c.source for c in built_in_commands()}
    commands = []
    for source, call in registry.commands():
        if call["name"] in taken:
            registry.broken.append(BrokenPlugin(source, (
                f"command {call['name']!r} is already a command of {taken[call['name']]}; "
                "rename it")))
            continue
        taken[call["name"]] = source
        commands.append(Command(call["name"], call["handler"], call["help"], call["arguments"],
                                call["description"], source=source))
    return commands


def build_parser(commands: list[Command] | None = None) -> argparse.ArgumentParser:
    """The parser of every command: the built-in ones and ``commands`` (plugins')."""
    parser = argparse.ArgumentParser(
        prog="cifarkit",
        description="Train image classifiers from TOML recipes; extend with pluggy plugins.",
        epilog="Examples:\n  cifarkit run recipes/default.toml --set data.limit=512 --set train.epochs=1\n"
               "  cifarkit list-plugins --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cifarkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    every = [*built_in_commands(), *(commands or [])]
    for command in every:
        command.add_to(sub)
    parser.set_defaults(command_names=[c.name for c in every])
    return parser


def _parser(argv: list[str] | None, registry=None) -> argparse.ArgumentParser:
    """The parser, with plugins' commands (``registry``'s, else the installed plugins')
    where the command line may need them: a built-in command's start reads no
    installed plugin for its parser."""
    built_in = {c.name for c in built_in_commands()}
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    if words and words[0] in built_in:
        return build_parser()
    if registry is None:
        from cifarkit.core.registry import load_registry

        registry = load_registry()
    return build_parser(plugin_commands(registry))


def _unknown_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> str | None:
    """A one-line error for a first word that is no command (with a suggestion), else None."""
    from cifarkit.errors import allowed, did_you_mean

    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    names = parser.get_default("command_names")
    if not words or words[0] in names:
        return None
    word = terminal_safe(words[0])
    return f"unknown command {word!r}{did_you_mean(words[0], names)} ({allowed(names)})"


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command line, with recipe overrides anywhere after the command: KEY=VALUE,
    KEY+=VALUE and ~KEY words before, between and after options, and ``--set`` values,
    applied in the order they were typed (as Hydra users type them)."""
    from cifarkit.cli.options import ordered_overrides

    words = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(words)
    stray = [w for w in extra if not _looks_like_override(w)]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if hasattr(args, "overrides"):
        args.ordered = ordered_overrides(words, args, extra)
    return args


def _looks_like_override(word: str) -> bool:
    return not word.startswith("-") and ("=" in word or word.startswith("~"))


def main(argv: list[str] | None = None, registry=None) -> int:
    """Run ``cifarkit ARGV``; its exit status. ``registry``: the plugins whose commands
    the command line has (default: the installed plugins)."""
    parser = _parser(argv, registry)
    if "_ARGCOMPLETE" in os.environ:  # a Tab press, through `cifarkit completion`'s code
        import argcomplete

        argcomplete.autocomplete(parser)  # answers and exits
    unknown = _unknown_command(parser, argv)
    if unknown is not None:
        print(f"cifarkit: error: {unknown}", file=sys.stderr)
        return 2
    args = _parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        try:
            code = args.command_handler(args)
            return 0 if code is None else int(code)
        except SystemExit as exc:  # plugin code calling sys.exit(): not a success
            if is_plugin_exit(exc):
                raise plugin_exit(exc) from None
            raise
    except CifarkitError as exc:
        if exc.__cause__ is not None and os.environ.get("CIFARKIT_TRACEBACK"):
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
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
