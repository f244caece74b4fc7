"""Starting a sweep as ``cifarkit sweep`` does: a new sweep folder (every trial's recipe,
or the search space, checked first: a mistake is one line and writes nothing), or a
sweep folder resumed; then its trials, one process at a time, under the folder's lock."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cifarkit.errors import CifarkitError, masked_url
from cifarkit.sweeps import grid, search
from cifarkit.sweeps.folder import check_trusted, new_folder, started_at, write_state


def new_sweep(recipe: str | None, overrides: list[str], grid_options: list[str],
              output: Path, plugin_files: tuple, trials: int | None = None,
              storage: str | None = None, study: str | None = None) -> tuple[Path, dict]:
    """A new sweep folder and its sweep.json: ``(folder, state)``. ``overrides`` apply to
    every trial; ``grid_options`` (``KEY=V1,V2``) make a grid, else the recipe's
    ``[sweep]`` table is searched (``trials``, ``storage``, ``study``)."""
    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry

    if not recipe:
        raise CifarkitError("sweep: give a RECIPE with --grid KEY=V1,V2 or a [sweep] table, "
                            "or --resume SWEEP_DIR")
    registry = load_registry(plugin_files)
    path = locate_recipe(recipe)
    loaded = load_recipe(path, overrides, registry)
    state: dict[str, Any] = {"recipe": str(path), "recipe_name": loaded.name, "set": overrides,
                             "started_at": started_at()}
    if grid_options:
        if trials or storage or study:
            raise CifarkitError("sweep: --grid runs every combination; --trials, --storage "
                                "and --study belong to a search of the recipe's [sweep] table")
        state.update(mode="grid", grid=grid_options, trials=grid.plan(
            path, overrides, grid.parse_grid(grid_options), registry, loaded.name))
    else:
        space = search.space(loaded, registry)
        search.import_optuna()
        cfg = loaded.sweep
        state.update(mode="search", space=space, metric=cfg.metric, direction=cfg.direction,
                     pruner=cfg.pruner, seed=loaded.seed, trials=[],
                     trials_wanted=trials or cfg.trials, study=study or f"{loaded.name}-sweep")
    folder = new_folder(output.absolute(), loaded.name)
    if state["mode"] == "search":
        state["storage"] = search.remember_storage(storage or f"sqlite:///{folder / 'optuna.db'}")
        try:
            search.open_study(state)
        except CifarkitError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    write_state(folder, state)
    return folder, state


def resumed_sweep(folder: Path, storage: str | None, trust_run: bool) -> dict[str, Any]:
    """The state of a sweep folder to resume, once it is trusted; a search whose storage
    has a password needs the whole URL again (sweep.json keeps it masked)."""
    state = check_trusted(folder, trust_run)  # read once: checked and parsed from one read
    stored = state.get("storage")
    if storage:
        if masked_url(storage) != stored:
            raise CifarkitError(f"sweep --resume: --storage {masked_url(storage)} "
                                f"is not this sweep's storage ({stored})")
        search.remember_storage(storage)
    elif isinstance(stored, str) and ":***@" in stored:
        raise CifarkitError(f"sweep --resume: this sweep's storage {stored} has a password, "
                            "which cifarkit does not store; pass --storage with the whole URL")
    return state


def run_sweep(folder: Path, state: dict[str, Any], plugin_files: tuple,
              trust_run: bool) -> grid.StopAfterTrial:
    """Run (or continue) the sweep's trials under the folder's lock (a second sweep of
    the folder is one line); returns the stop handler (``.requested``: Ctrl-C came)."""
    from cifarkit.runs.lock import RunLock

    child = grid.child_args(plugin_files, trust_run)
    with RunLock(folder), grid.StopAfterTrial() as stop:
        if state.get("mode") == "search":
            search.search(folder, state, child, stop)
        else:
            grid.run_trials(folder, state, state["recipe"], child, stop)
    return stop
