"""``cifarkit show RECIPE``: the resolved recipe, the plugins it resolves to with each
parameter's source, and the model it builds (summary and parameter count), without
training. Refuses what ``cifarkit run`` would refuse, with the same one line."""

from __future__ import annotations

from typing import Any

from cifarkit.core.recipe import Recipe
from cifarkit.core.registry import Registry


def plugin_calls(recipe: Recipe) -> list:
    """Every plugin call of the recipe, in the order a run makes them."""
    return [recipe.data.dataset, *recipe.augmentation, recipe.model, recipe.strategy,
            recipe.train.optimizer, *recipe.callbacks]


def plugin_rows(recipe: Recipe, registry: Registry) -> list[dict[str, Any]]:
    """Each call: where it sits, the plugin and where it comes from, and its parameters
    with their source: ``default``, or the recipe file (or --set) that chose them."""
    out = []
    for call in plugin_calls(recipe):
        info = registry.get(call.kind, call.plugin)
        defaults = {p.name: p.default for p in info.params if not p.required}
        params = [{"name": k, "value": v,
                   "source": "default" if k in defaults and defaults[k] == v else call.origin}
                  for k, v in call.params.items()]
        out.append({"key": call.key, "kind": call.kind, "plugin": call.plugin,
                    "from": info.source, "module": getattr(info.factory, "__module__", None),
                    "parameters": params})
    return out


def model_summary(recipe: Recipe, registry: Registry) -> tuple[str, int, int]:
    """Build the recipe's model on its backend, nothing trained: ``(its layers as text,
    its parameters, the trainable ones)`` (papers count the trainable). The image shape
    and classes come from the dataset plugin's ``describe`` (its metadata) where it has
    one, so no image is read; the sample images a model may take are then noise (a
    model that learns from them, airbench's whitening, gets its layers and parameter
    count but not its values). A dataset without ``describe`` is read."""
    import numpy as np

    from cifarkit import backends
    from cifarkit.runs import build

    call = recipe.data.dataset
    describe = getattr(registry.get("dataset", call.plugin).factory, "describe", None)
    if describe is not None:
        shape, names = describe(**call.params)
        samples = np.random.default_rng(0).integers(0, 256, (64, *shape), np.uint8)
    else:
        data = build.load_data(recipe, registry)
        shape, names, samples = data.input_shape, data.class_names, data.x_train
    backend = backends.get(recipe.train.backend)
    backend.start(recipe.train.deterministic, recipe.seed)
    model = build.build_model(registry, recipe, tuple(shape), len(names), samples, backend)
    rows = [("layer (type)", "output shape", "parameters")]
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        rows.append((f"{layer.name} ({type(layer).__name__})",
                     str(tuple(shape.shape)) if shape is not None else "?",
                     f"{layer.count_params():,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c.rjust(widths[2])}"
             for a, b, c in rows]
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return f"{model.name}\n" + "\n".join(lines), int(model.count_params()), trainable
