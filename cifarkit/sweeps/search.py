"""A search: Optuna asks for each trial's values from the recipe's ``[sweep.params]``;
each trial reports its metric every epoch (and may be pruned). The study lives in
its storage, which several sweep processes (on several machines) may share."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cifarkit.errors import CifarkitError, RecipeError, masked_url
from cifarkit.sweeps.folder import name_run_dir, started, trial_dir, write_state
from cifarkit.sweeps.grid import StopAfterTrial, start_trial

PARAM_KEYS = {"float": {"type", "low", "high", "log", "step"},
              "int": {"type", "low", "high", "log", "step"},
              "categorical": {"type", "choices"}}


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise CifarkitError("sweep --trials needs Optuna: pip install -e \".[sweep]\"") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def space(recipe, registry) -> dict[str, dict[str, Any]]:
    """``[sweep.params]``, checked: each range's form, and each of its ends (or choices)
    as a value ``cifarkit run`` accepts for its key."""
    from cifarkit.core.recipe import load_recipe

    params = recipe.sweep.params
    where = f"{recipe.path}: sweep.params"
    if not isinstance(params, dict) or not params:
        raise RecipeError(f"{where}: give at least one key to search, e.g. "
                          '"train.learning_rate" = { type = "float", low = 1e-4, high = 0.1, '
                          "log = true }")
    for key, spec in params.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in PARAM_KEYS:
            raise RecipeError(f"{where}.{key}: expected a table with type = \"float\", \"int\" "
                              "or \"categorical\"")
        extra = set(spec) - PARAM_KEYS[kind]
        if extra:
            raise RecipeError(f"{where}.{key}: unknown key {sorted(extra)[0]!r} for type "
                              f"{kind!r} (allowed: {', '.join(sorted(PARAM_KEYS[kind]))})")
        ends = spec.get("choices") if kind == "categorical" else [spec.get("low"), spec.get("high")]
        if not isinstance(ends, list) or not ends or any(v is None for v in ends):
            raise RecipeError(f"{where}.{key}: " + ("choices must be a non-empty array"
                              if kind == "categorical" else "needs low and high"))
        if kind != "categorical" and not ends[0] < ends[1]:
            raise RecipeError(f"{where}.{key}: low must be below high")
        for value in ends:
            load_recipe(recipe.path, [*recipe.overrides, f"{key}={_toml(value)}"], registry)
    return params


def _toml(value: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    suggest_fn = trial.suggest_float if kind == "float" else trial.suggest_int
    return suggest_fn(key, spec["low"], spec["high"], log=bool(spec.get("log", False)),
                      **({"step": spec["step"]} if "step" in spec else {}))


#: Storage URLs with their passwords, by their masked form (kept in memory only).
_SECRETS: dict[str, str] = {}


def remember_storage(url: str) -> str:
    """The masked form of ``url``, remembering the whole URL for this process."""
    masked = masked_url(url)
    _SECRETS[masked] = url
    return masked


def open_study(state: dict[str, Any]):
    optuna = import_optuna()
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
              if state["pruner"] == "median" else optuna.pruners.NopPruner())
    for attempt in range(5):  # workers started together race to create the storage's tables
        try:
            return optuna.create_study(
                study_name=state["study"], storage=_SECRETS.get(state["storage"], state["storage"]),
                load_if_exists=True,
                direction=state["direction"], pruner=pruner,
                sampler=optuna.samplers.TPESampler(seed=state["seed"]))
        except Exception as exc:  # a storage URL it cannot open, a study of another direction
            error = exc
            time.sleep(0.5 * (attempt + 1))
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    password = urlsplit(_SECRETS.get(state["storage"], "")).password
    if password:  # a driver's message may quote the URL or the password itself
        reason = reason.replace(password, "***")
    raise CifarkitError(f"sweep: Optuna storage {state['storage']}: {reason}")


def search(folder: Path, state: dict[str, Any], child: list[str],
           stop: StopAfterTrial) -> None:
    """Ask the study for trials until it holds ``state["trials"]`` of them (from every
    worker sharing its storage), run each as a process of its own, report its
    per-epoch metric as it goes (Optuna may prune it: it is stopped after its
    current step) and tell the study its best value."""
    optuna = import_optuna()
    study = open_study(state)
    States = optuna.trial.TrialState
    for trial in state["trials"]:  # left RUNNING when this folder's sweep died
        frozen = study.trials[trial["optuna"]] if trial["optuna"] < len(study.trials) else None
        if frozen is None or frozen.state != States.RUNNING:
            continue
        run_dir = trial_dir(folder, trial)
        if run_dir is not None and not stop.requested:
            # continue its run (the folder's lock says no other process has it), or start
            # the one it named but never began, reporting to the same Optuna trial,
            # instead of starting another beside it
            asked = optuna.trial.Trial(study, frozen._trial_id)
            resume = ["run", "--resume", str(run_dir), *child] if started(run_dir) else None
            trial["status"] = _run_reported(folder, trial, state, child, stop, study, asked,
                                            resume)
        else:
            study.tell(trial["optuna"], state=States.FAIL)
            trial["status"] = "failed"
        write_state(folder, state)
    while not stop.requested:
        if len(study.get_trials(deepcopy=False)) >= state["trials_wanted"]:
            return
        asked = study.ask()
        values = {k: suggest(asked, k, spec) for k, spec in state["space"].items()}
        name = f"{state['recipe_name']}-t{asked.number + 1:02d}"
        record = {"trial": asked.number + 1, "optuna": asked.number, "name": name,
                  "values": values, "run_dir": None, "status": "running",
                  "overrides": [*state["set"], *(f"{k}={_toml(v)}" for k, v in values.items()),
                                f"name={name}"]}
        state["trials"].append(record)
        write_state(folder, state)
        outcome = _run_reported(folder, record, state, child, stop, study, asked)
        record["status"] = outcome
        write_state(folder, state)


def _run_reported(folder, record, state, child_extra, stop, study, asked,
                  args: list[str] | None = None) -> str:
    """One trial's process (``args``: a new run, or a resume), its metric reported to
    Optuna each epoch; the outcome."""
    import warnings

    optuna = import_optuna()
    States = optuna.trial.TrialState
    warnings.filterwarnings("ignore", message=".*already reported.*")  # a resumed trial's
    run_dir = name_run_dir(folder, state, record)  # in sweep.json before the process starts
    args = args or ["run", state["recipe"],
                    *(a for o in record["overrides"] for a in ("--set", o)),
                    "--run-dir", str(run_dir), *child_extra]
    print(f"── trial {record['trial']}: "
          + ", ".join(f"{k}={v}" for k, v in record["values"].items()), flush=True)
    stop.child = child = start_trial(args)
    reported, pruned = 0, False
    while True:
        ended = child.poll() is not None
        rows = _metric_rows(run_dir, state["metric"]) if started(run_dir) else []
        for epoch, value in rows[reported:]:
            asked.report(value, epoch)
            reported += 1
            if not pruned and asked.should_prune():
                pruned = True
                child.send_signal(signal.SIGINT)
        if ended:
            break
        time.sleep(0.5)
    from cifarkit.runs.artifacts import read_summary

    values = [v for _, v in rows]
    asked.set_user_attr("run_dir", str(run_dir))
    status = read_summary(run_dir).get("status") if started(run_dir) else "failed"
    if pruned and status != "completed":  # (one that finished before the signal counts)
        study.tell(asked, state=States.PRUNED)
        return "pruned"
    if status != "completed" or not values:
        study.tell(asked, state=States.FAIL)
        return status or "failed"
    study.tell(asked, max(values) if state["direction"] == "maximize" else min(values))
    return "completed"


def _metric_rows(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    from cifarkit.runs.listing import read_metrics

    return [(int(r["epoch"]), r[metric]) for r in read_metrics(run_dir)
            if r.get(metric) is not None and r.get("epoch") is not None]


def finished(state: dict[str, Any], trial_rows: list[dict[str, Any]]) -> bool:
    """Whether nothing is left to run: every grid trial done, or a study that holds all
    its trials (from every worker)."""
    if state.get("mode") == "search":
        return len(open_study(state).get_trials(deepcopy=False)) >= state["trials_wanted"]
    return all(r.get("status") in ("completed", "failed") for r in trial_rows)


def study_best(state: dict[str, Any]) -> dict[str, Any] | None:
    """The study's best trial, over every worker sharing its storage."""
    study = open_study(state)
    try:
        trial = study.best_trial
    except ValueError:  # no completed trial
        return None
    return {"trial": trial.number + 1, "value": trial.value, "params": trial.params,
            "run_dir": trial.user_attrs.get("run_dir")}
