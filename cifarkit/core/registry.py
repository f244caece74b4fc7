"""The plugin registry: a pluggy PluginManager plus plugin metadata.

Plugins are found three ways, all through the same hooks
(:mod:`cifarkit.core.hookspecs`):

1. installed distributions that declare the ``cifarkit`` entry-point group
   (cifarkit's own built-ins register this way too);
2. local Python files named by a recipe (``plugins = ["my_plugins.py"]``) or
   by ``--plugin PATH`` on the command line;
3. objects registered in code (``Registry.register``), as tests do.

``CIFARKIT_LOAD_PLUGINS`` (comma-separated distribution names; empty means
none) limits which installed distributions load; cifarkit's built-ins always
load. A distribution that fails to import is recorded as *broken* and does
not stop the others. Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from cifarkit.core import hookspecs
from cifarkit.backends import BACKENDS
from cifarkit.errors import CifarkitError, PluginError, allowed, did_you_mean
from cifarkit.core.params import params_from_signature
from cifarkit.core.plugin_info import (BrokenPlugin, CoreFit, FinishFailed, PluginInfo,
                                       command_call, describe, factory_call, impls_by_code,
                                       normalise_dist, raising_impl, short_error, trace_after,
                                       trace_before, validation_message)

if TYPE_CHECKING:
    from cifarkit.backends import Backend
    from cifarkit.core.schema import PluginCall

ENTRY_POINT_GROUP = "cifarkit"
ENV_LOAD_PLUGINS = "CIFARKIT_LOAD_PLUGINS"
ENV_TRACE_PLUGINS = "CIFARKIT_TRACE_PLUGINS"
SLOW_IMPORT_S = 1.0
BUILTIN_DIST = "cifarkit"


@dataclass
class Registry:
    """All plugins known to one cifarkit invocation."""

    pm: pluggy.PluginManager = field(init=False)
    broken: list[BrokenPlugin] = field(default_factory=list)
    slow: list[tuple[str, str]] = field(default_factory=list)  # (source, why list-plugins is slow)
    _sources: dict[str, str] = field(default_factory=dict)
    _plugins: dict[str, dict[str, PluginInfo]] | None = None
    _conflicts: dict[tuple[str, str], list[PluginInfo]] = field(default_factory=dict)
    _variants: dict[tuple[str, str], dict[str | None, PluginInfo]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager("cifarkit")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get(ENV_TRACE_PLUGINS):
            self.pm.add_hookcall_monitoring(trace_before, trace_after)

    # -- loading -----------------------------------------------------------
    def register(self, plugin: object, source: str, name: str | None = None) -> None:
        """Register a plugin object (a module or any object with hookimpls).

        A plugin that pluggy refuses (a hook of the wrong signature, or a hook
        cifarkit does not define) is recorded in :attr:`broken` instead.
        """
        name = name or f"{source}:{id(plugin)}"
        if self.pm.has_plugin(name):
            return
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = [hc.name for hc in self.pm.get_hookcallers(plugin) or ()
                       if not hc.has_spec()]
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self.broken.append(BrokenPlugin(source, validation_message(exc, unknown)))
            return
        self._sources[name] = source
        self._plugins = None

    def load_entrypoints(self, only: str | None = None) -> None:
        """Load installed plugin distributions (the ``cifarkit`` entry points).

        ``only``: comma-separated distribution names (the value of
        ``CIFARKIT_LOAD_PLUGINS``); ``None`` loads all, ``""`` loads only
        cifarkit's built-ins.
        """
        wanted = None
        if only is not None:
            wanted = {normalise_dist(n) for n in only.split(",") if n.strip()}
        seen, installed = set(), set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist is not None else "unknown"
            key = (normalise_dist(dist_name), ep.name, ep.value)
            if key in seen:
                continue
            seen.add(key)
            builtin = normalise_dist(dist_name) == BUILTIN_DIST
            if not builtin:
                installed.add(normalise_dist(dist_name))
            if not builtin and wanted is not None and normalise_dist(dist_name) not in wanted:
                continue
            source = "built-in" if builtin else f"{dist_name} {dist.version if dist else ''}".strip()
            started = time.perf_counter()
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not stop the others
                self.broken.append(BrokenPlugin(source, f"cannot import {ep.value}: {short_error(exc)}"))
                continue
            self._note_import(source, ep.value, time.perf_counter() - started)
            self.register(plugin, source, name=f"{dist_name}:{ep.name}")
        for name in sorted((wanted or set()) - installed):
            self.broken.append(BrokenPlugin(ENV_LOAD_PLUGINS, (
                f"names {name!r}, which is not an installed cifarkit plugin package"
                f"{did_you_mean(name, installed)} ({allowed(installed)})")))

    def _note_import(self, source: str, what: str, seconds: float) -> None:
        if seconds > SLOW_IMPORT_S:
            self.slow.append((source, f"importing {what} took {seconds:.1f} s; import heavy "
                                      "libraries (Keras, TensorFlow) inside the factory, not at "
                                      "the module's top level"))

    def load_file(self, path: str | os.PathLike) -> None:
        """Import a local plugin file (trusted Python code) and register it."""
        path = Path(path).expanduser().absolute()
        if not path.is_file():
            raise PluginError(f"{path}: plugin file not found")
        modname = "cifarkit_local_" + re.sub(r"\W", "_", str(path))
        if self.pm.has_plugin(f"file:{path}"):
            return
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"{path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        started = time.perf_counter()
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(modname, None)
            raise PluginError(f"{path}: plugin file failed to import: {short_error(exc, path)}") from None
        self._note_import(str(path), path.name, time.perf_counter() - started)
        before = len(self.broken)
        self.register(module, str(path), name=f"file:{path}")
        if len(self.broken) > before:
            raise PluginError(f"{path}: {self.broken.pop().error}")

    # -- metadata ----------------------------------------------------------
    def _collect(self) -> dict[str, dict[str, PluginInfo]]:
        """Call every ``register_*`` hook through pluggy's hook caller (so hookwrappers,
        tryfirst/trylast and hook-call monitoring apply) and gather what was registered,
        each factory attributed to the plugin whose hook registered it."""
        if self._plugins is not None:
            return self._plugins
        self._plugins = {k: {} for k in hookspecs.KINDS}
        self._variants = {}
        self._conflicts = {}
        for kind in hookspecs.KINDS.values():
            for source, factory, name, backend, controls in self._call_register_hook(kind):
                self._add(kind, source, factory, name, backend, controls)
        return self._plugins

    def _call_register_hook(self, kind: hookspecs.Kind) -> list[tuple]:
        """``(source, factory, name, backend, controls)`` for each ``register()`` call of
        ``kind``'s hook."""
        return [(source, *call) for source, call in self._each_impl(kind.hook, factory_call)]

    def _each_impl(self, hook: str, check: Callable[..., Any]) -> list[tuple[str, Any]]:
        """``(source, check(*args, **kwargs))`` for each ``register(*args, **kwargs)`` call
        made by ``hook``'s implementations.

        Each plugin's implementation is called on its own, through pluggy (a subset
        hook caller without the other plugins' implementations, so wrappers and
        hook-call monitoring still apply), with a ``register`` of its own: what it
        registers is attributed to it by construction. One that raises (``check``
        raising included) is recorded as broken; the others still register. Plugins
        are called in the order they were registered (a clash names its sources in
        the order they loaded).
        """
        impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls()
                 if not (i.hookwrapper or i.wrapper)]
        found: list[tuple[str, Any]] = []
        for impl in impls:  # registration order (pluggy calls them the other way round)
            calls: list[Any] = []

            def register(*args, **kwargs):
                calls.append(check(*args, **kwargs))

            alone = self.pm.subset_hook_caller(
                hook, remove_plugins=[i.plugin for i in impls if i is not impl])
            try:
                alone(register=register)
            except Exception as exc:
                self.broken.append(BrokenPlugin(self._source_of(impl),
                                                f"{hook}() failed: {short_error(exc)}"))
                continue
            found.extend((self._source_of(impl), call) for call in calls)
        return found

    def commands(self) -> list[tuple[str, dict]]:
        """``(source, the keywords of register())`` for each command a plugin's
        ``register_commands`` registered; one that raises is recorded as broken."""
        return self._each_impl("register_commands", command_call)

    def _source_of(self, impl) -> str:
        if impl is None:
            return "unknown"
        return self._sources.get(impl.plugin_name, impl.plugin_name)

    def _add(self, kind: hookspecs.Kind, source: str, factory, name: str,
             backend: str | None, controls: tuple[str, ...] = ()) -> None:
        if backend is not None and backend not in BACKENDS:
            self.broken.append(BrokenPlugin(source, (
                f"{kind.name} plugin {name!r}: backend={backend!r} is not a backend "
                f"({allowed(BACKENDS)})")))
            return
        params = tuple(params_from_signature(factory, kind.injected))
        clash = sorted(kind.reserved & {p.name for p in params})
        if clash:
            self.broken.append(BrokenPlugin(source, (
                f"{kind.name} plugin {name!r} declares parameter(s) {', '.join(clash)}, "
                "reserved for the recipe's own keys in its table; rename them")))
            return
        info = PluginInfo(kind.name, name, factory, source, params,
                          (backend,) if backend else (), controls)
        plugins = self._plugins[kind.name]
        existing = plugins.get(name)
        variants = self._variants.setdefault((kind.name, name), {})
        if existing is not None and existing.factory is not factory:
            if existing.backends and backend and backend not in variants:  # one per backend
                if [p.name for p in existing.params] != [p.name for p in params]:
                    self.broken.append(BrokenPlugin(source, (
                        f"{kind.name} plugin {name!r} for the {backend} backend declares "
                        f"parameters ({', '.join(p.name for p in params) or 'none'}) unlike "
                        f"its {existing.backends[0]} form's "
                        f"({', '.join(p.name for p in existing.params) or 'none'}); a recipe "
                        "must mean the same on every backend")))
                    return
                variants[backend] = info
                plugins[name] = replace(existing, backends=existing.backends + (backend,))
                return
            self._conflicts.setdefault((kind.name, name), [existing]).append(info)
        variants.clear()
        variants[backend] = info
        plugins[name] = info

    @contextlib.contextmanager
    def core_fit(self, fit: Callable[[], None]):
        """cifarkit's own ``run_fit`` (``fit``, the run's training), registered for one hook
        call and called last: every plugin's ``run_fit`` wraps or replaces it."""
        core = CoreFit(fit)
        self.pm.register(core, name=CORE_FIT)
        try:
            yield
        finally:
            self.pm.unregister(core, name=CORE_FIT)

    def run_hook(self, name: str, **kwargs: Any) -> Any:
        """Call a lifecycle hook (``run_start``, ``run_fit``, ``run_finish``) through pluggy.

        A :class:`CifarkitError` from a plugin becomes one line naming the plugin
        and the hook; any other exception keeps its traceback, with a note naming
        the plugin. In ``run_finish`` a failing plugin is reported on stderr and
        does not change the run's outcome.
        """
        caller = getattr(self.pm.hook, name)
        impls = impls_by_code(caller)
        try:
            return caller(**kwargs)
        except Exception as exc:
            impl = raising_impl(exc, impls)
            source = self._source_of(impl) if impl is not None else None
            if source is None or impl.plugin_name == CORE_FIT:
                raise
            if name == "run_finish":  # the run's files are final: reported, and returned
                message = f"plugin {source}: run_finish() failed: {short_error(exc)}"
                print(f"cifarkit: warning: {message}", file=sys.stderr)
                return [FinishFailed(message)]
            if isinstance(exc, CifarkitError):
                raise type(exc)(f"plugin {source}: {name}(): {exc}") from None
            exc.add_note(f"raised by plugin {source} in its {name}() hook")
            raise

    def all(self) -> list[PluginInfo]:
        """Every registered plugin, grouped by kind in hook order, then by name."""
        plugins = self._collect()
        return [plugins[k][n] for k in hookspecs.KINDS for n in sorted(plugins[k])]

    def names(self, kind: str) -> list[str]:
        return sorted(self._collect()[kind])

    def shadowed(self) -> list[PluginInfo]:
        """Plugins hidden by another of the same kind and name (a recipe naming them is refused)."""
        plugins = self._collect()
        return [info for (kind, name), infos in self._conflicts.items() for info in infos
                if info is not plugins[kind].get(name)]

    def conflicts(self) -> dict[tuple[str, str], list[PluginInfo]]:
        self._collect()
        return dict(self._conflicts)

    def get(self, kind: str, name: str) -> PluginInfo:
        """The plugin of ``kind`` called ``name``, or a PluginError saying why not."""
        plugins = self._collect()
        if (kind, name) in self._conflicts:
            sources = " and ".join(repr(i.source) for i in self._conflicts[(kind, name)])
            raise PluginError(
                f"two {kind} plugins are named {name!r}: from {sources}; "
                "uninstall or rename one")
        info = plugins[kind].get(name)
        if info is None:
            message = (f"unknown {kind} plugin {name!r}{did_you_mean(name, plugins[kind])} "
                       f"({allowed(plugins[kind])})")
            if self.broken:
                message += "; plugins that failed to load: " + "; ".join(
                    f"{b.source}: {b.error}" for b in self.broken)
            raise PluginError(message)
        return info


    def variant(self, kind: str, name: str, backend: "Backend | None",
                call: "PluginCall | None" = None) -> PluginInfo:
        """The plugin's form for ``backend`` (its only form, if it has one for all)."""
        info = self.get(kind, name)
        if not info.backends or backend is None:
            return info
        chosen = self._variants.get((kind, name), {}).get(backend.name)
        if chosen is None:
            where = (f"{call.origin}: {call.key}: " if call and call.origin else "")
            raise PluginError(f"{where}{kind} plugin {name!r} exists for the "
                              f"{' and '.join(info.backends)} backend only, and this run is on "
                              f"{backend.name}")
        return chosen

    def call(self, call: "PluginCall", backend: "Backend | None" = None, **injected: Any) -> Any:
        """Build the object a recipe asks for, checked against its kind's contract.

        ``call`` is a validated :class:`cifarkit.core.recipe.PluginCall`; of
        ``injected``, only the names the factory declares are passed. A plugin
        declared per backend is called in its form for ``backend``. A
        :class:`CifarkitError` raised by the factory, or a result that is not
        what the kind must return, becomes one line naming the recipe key,
        the plugin and its source. Any other exception (a Keras layer refusing its
        argument, a bug in the plugin) is one :class:`PluginError` line too, naming
        the plugin and the error; the original is its ``__cause__``, whose
        traceback goes to run.log once the run has one (and to the terminal with
        ``CIFARKIT_TRACEBACK=1``).
        """
        info = self.variant(call.kind, call.plugin, backend, call)
        kind = hookspecs.KINDS[call.kind]
        accepted = inspect.signature(info.factory).parameters
        kwargs = {k: v for k, v in injected.items() if k in accepted}
        where = f"{call.origin}: {call.key}" if call.origin else call.key
        try:
            result = info.factory(**call.params, **kwargs)
        except CifarkitError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        except Exception as exc:
            raise PluginError(f"{where}: {call.kind} plugin {call.plugin!r} ({info.source}) "
                              f"failed: {short_error(exc)}") from exc
        if not kind.check(result, backend):
            raise PluginError(f"{where}: {call.kind} plugin {call.plugin!r} ({info.source}) "
                              f"returned {describe(result)}, not {kind.returns}")
        return result


#: The name cifarkit's own ``run_fit`` is registered under while a run trains.
CORE_FIT = "cifarkit:run"


def load_registry(plugin_files: tuple[str | os.PathLike, ...] = (),
                  load_entrypoints: bool = True) -> Registry:
    """A registry with installed plugins (per ``CIFARKIT_LOAD_PLUGINS``) and files."""
    registry = Registry()
    if load_entrypoints:
        registry.load_entrypoints(os.environ.get(ENV_LOAD_PLUGINS))
    for path in plugin_files:
        registry.load_file(path)
    return registry
