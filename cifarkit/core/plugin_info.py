"""What the registry knows of each plugin (PluginInfo), of a plugin that failed to load
(BrokenPlugin) or to finish (FinishFailed), the checks of what a register() call
was given, and the helpers that name a plugin in a message or a trace."""

from __future__ import annotations

import inspect
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


import pluggy

from cifarkit.backends import BACKENDS
from cifarkit.core import hookspecs
from cifarkit.core.hookspecs import hookimpl
from cifarkit.errors import allowed, did_you_mean, first_line
from cifarkit.core.params import ParamSpec, summary_line


@dataclass(frozen=True)
class PluginInfo:
    """Metadata of one registered plugin (readable without TensorFlow)."""

    kind: str
    name: str
    factory: Callable[..., Any]
    source: str
    params: tuple[ParamSpec, ...]
    #: The backends this plugin exists for (declared with ``register(..., backend=...)``,
    #: one factory per backend); empty: every backend, with one factory.
    backends: tuple[str, ...] = ()
    #: What the plugin's objects control during a run (``register(..., controls=
    #: ["learning_rate"])``): two plugins of a recipe that control one thing clash.
    controls: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        return summary_line(self.factory.__doc__)

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.factory.__doc__ or "")

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "summary": self.summary,
            "module": getattr(self.factory, "__module__", None),
            "parameters": [p.to_json() for p in self.params],
            "backends": list(self.backends) or list(BACKENDS),
            "controls": list(self.controls),
        }

@dataclass(frozen=True)
class FinishFailed:
    """What ``run_hook("run_finish")`` returns for a plugin that failed there (after the
    run's files were final): the one-line message, already printed as a warning."""

    message: str

@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin source that failed to import or to register."""

    source: str
    error: str

    def to_json(self) -> dict:
        return {"source": self.source, "error": self.error}

def short_error(exc: BaseException, path: Path | None = None) -> str:
    """``Type: message`` plus the innermost frame in ``path`` if any."""
    where = ""
    if path is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if Path(f.filename) == path]
        if frames:
            where = f" (line {frames[-1].lineno})"
        elif isinstance(exc, SyntaxError) and exc.lineno:
            where = f" (line {exc.lineno})"
    return first_line(exc) + where

def describe(obj: Any) -> str:
    text = repr(obj)
    return f"{type(obj).__name__} {text[:40] + '...' if len(text) > 40 else text}"

def trace_before(hook_name: str, hook_impls: list, kwargs: dict) -> None:
    """``CIFARKIT_TRACE_PLUGINS=1``: each hook call on stderr, with the plugins it calls."""
    names = ", ".join(impl.plugin_name for impl in reversed(hook_impls))
    print(f"cifarkit: hook {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)

def trace_after(outcome, hook_name: str, hook_impls: list, kwargs: dict) -> None:
    failed = outcome.exception
    print(f"cifarkit: hook {hook_name} "
          + (f"raised {type(failed).__name__}" if failed is not None else "returned"),
          file=sys.stderr)

def impls_by_code(caller) -> dict:
    """A hook's implementations by their code object (several plugin objects of one
    class share one), to find them on a stack or in a traceback."""
    out: dict = {}
    for impl in caller.get_hookimpls():
        out.setdefault(impl.function.__code__, []).append(impl)
    return out

def impl_of(frame, impls: dict) -> Any:
    """The implementation ``frame`` is running, or None."""
    found = impls.get(frame.f_code)
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    owner = frame.f_locals.get("self")  # methods of one class on several plugin objects
    return next((i for i in found if getattr(i.function, "__self__", None) is owner), found[-1])

def raising_impl(exc: BaseException, impls: dict) -> Any:
    """The innermost hook implementation in ``exc``'s traceback, or None."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        found = impl_of(tb.tb_frame, impls) or found
        tb = tb.tb_next
    return found

def factory_call(factory, name=None, *, backend=None, controls=()) -> tuple:
    """What a ``register_<kind>s`` hook's ``register()`` was given, checked."""
    if not callable(factory):
        raise TypeError(f"register() needs a callable, got {factory!r}")
    if isinstance(controls, str) or not all(isinstance(c, str) for c in controls):
        raise TypeError(f"register(controls=...) needs a list of names, got {controls!r}")
    return factory, name or factory.__name__, backend, tuple(controls)

def command_call(name, handler, *, help, arguments=None, description=None) -> dict:
    """What ``register_commands``'s ``register()`` was given, checked."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise TypeError(f"register() needs a command name of lowercase letters, digits and "
                        f"'-', got {name!r}")
    for what, value in (("handler", handler), ("arguments", arguments)):
        if value is not None and not callable(value):
            raise TypeError(f"register({what}=...) needs a callable, got {value!r}")
    if not isinstance(help, str) or not help.strip():
        raise TypeError("register(help=...) needs the command's one-line description")
    return {"name": name, "handler": handler, "help": help.strip().splitlines()[0],
            "arguments": arguments, "description": description}


def normalise_dist(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def validation_message(exc: pluggy.PluginValidationError, unknown: list[str]) -> str:
    """pluggy's refusal as one line, naming the hook."""
    known = ([kind.hook for kind in hookspecs.KINDS.values()] + ["register_commands"]
             + list(hookspecs.LIFECYCLE))
    if unknown:
        return f"unknown hook {unknown[0]!r}{did_you_mean(unknown[0], known)} ({allowed(known)})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    hook = re.search(r"for hook '(\w+)'", lines[0]) if lines else None
    detail = "; ".join(lines[1:]) or (lines[0] if lines else "refused by pluggy")
    return f"hook {hook.group(1) if hook else '?'} does not match its specification: {detail}"


class CoreFit:
    """cifarkit's own implementation of ``run_fit``: the run's training, called directly."""

    def __init__(self, fit: Callable[[], None]):
        self._fit = fit

    @hookimpl(trylast=True)
    def run_fit(self, run):
        self._fit()
        return True
