"""The user-error family.

Everything a user can fix by changing their input (a recipe, a ``--set``
value, a data path, a plugin choice) is raised as a :class:`CifarkitError`.
The CLI prints such errors as one line and exits with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CifarkitError(Exception):
    """Base class of every error the user can fix by changing their input.

    The message is kept on one line with no control characters, whatever it
    quotes (a path with a newline, a class name with escape sequences): they are
    shown escaped, so every user error prints as one line.
    """

    exit_code = 2

    def __init__(self, *args: object) -> None:
        super().__init__(*(terminal_safe(a) if isinstance(a, str) else a for a in args))


class RecipeError(CifarkitError):
    """A recipe (or a ``--set`` override) is malformed or invalid."""


class PluginError(CifarkitError):
    """A plugin is unknown, broken, declared twice, or used with bad parameters."""


class DataError(CifarkitError):
    """A dataset is missing, unreadable, corrupted or malformed."""


class StrategyError(CifarkitError):
    """A distribution strategy cannot be created on this machine."""


class OutputError(CifarkitError):
    """The run directory cannot be created or written."""


def printable(text: object) -> str:
    """``text`` as is when printable, else its repr (so an error stays one line)."""
    text = str(text)
    return text if text.isprintable() else repr(text)


def masked_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: what is printed and stored."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if not parts.password:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else "")
    except ValueError:
        return url
    return urlunsplit(parts._replace(netloc=netloc))


def terminal_safe(text: object, lines: bool = False) -> str:
    """``text`` on one line with no control characters: escape sequences (a class
    folder named with ANSI codes, a plugin's docstring) are shown escaped, never
    obeyed. ``lines``: newlines are kept (a docstring), every other control
    character is escaped."""
    return "".join(c if c.isprintable() or (lines and c == "\n") else repr(c)[1:-1]
                   for c in str(text))


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 epoch``, ``2 epochs`` (``words``: an irregular plural)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (one line, for an error that wraps another)."""
    text = str(exc)
    message = text.splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""``: the one choice
    that holds ``word`` whole (``resnet18`` -> ``preact_resnet18``), else the closest."""
    choices = list(choices)
    holding = [c for c in choices if len(str(word)) >= 3 and str(word) in c]
    if len(holding) == 1:
        return f"; did you mean {holding[0]!r}?"
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def allowed(choices: Iterable[str]) -> str:
    """Format a sorted list of allowed names for an error message."""
    names = sorted(choices)
    return "allowed: " + (", ".join(names) if names else "(none)")


#: Modules whose ``sys.exit()`` is not a plugin's: rich ends a closed pipe that way.
_OWN_EXITS = ("cifarkit.", "rich.", "argparse")


def _exit_frame(exc: SystemExit):
    tb, frame = exc.__traceback__, None
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
    return frame


def is_plugin_exit(exc: SystemExit) -> bool:
    """Whether plugin code (not cifarkit or the libraries it drives) called sys.exit()."""
    frame = _exit_frame(exc)
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return not any(module == own.rstrip(".") or module.startswith(own) for own in _OWN_EXITS)


def plugin_exit(exc: SystemExit) -> PluginError:
    """A ``sys.exit()`` from plugin code (never cifarkit's own way to end) as one line
    naming where it was called."""
    frame = _exit_frame(exc)
    where = ""
    if frame is not None:
        module = frame.f_globals.get("__name__", "?")
        where = f" in {module} ({frame.f_code.co_filename}, line {frame.f_lineno}, " \
                f"{frame.f_code.co_name}())"
    return PluginError(f"plugin code{where} called sys.exit({exc.code!r}); cifarkit "
                       "stopped the run and marks it failed (plugins raise "
                       "cifarkit.CifarkitError instead)")
