"""``cifarkit show RECIPE``: the recipe resolved, its plugins and its model."""

from __future__ import annotations

from cifarkit.cli import options


def arguments(parser) -> None:
    options.recipe(parser)
    options.overrides(parser)
    options.backend(parser, "Keras backend (as for run)")
    options.plugin_files(parser, "also load plugins from this Python file")
    parser.add_argument("--no-model", action="store_true",
                        help="leave out the model (no dataset read, no Keras started)")
    options.as_json(parser, "the same as JSON")


def main(args) -> int:
    from cifarkit.cli.show import model_summary, plugin_rows
    from cifarkit.core.recipe import load_recipe, locate_recipe
    from cifarkit.core.registry import load_registry

    registry = load_registry(tuple(args.plugin_files))
    sets = options.assignments(args) + options.backend_override(args)
    if args.recipe is None:
        from cifarkit.errors import CifarkitError

        raise CifarkitError("show: give a RECIPE")
    recipe = load_recipe(locate_recipe(args.recipe), sets, registry)
    plugins = plugin_rows(recipe, registry)
    summary, count, trainable = (model_summary(recipe, registry) if not args.no_model
                                 else (None, None, None))
    if args.json:
        print(options.json_text({"recipe": recipe.resolved(), "plugins": plugins,
                                 "model_summary": summary, "parameters": count,
                                 "trainable_parameters": trainable}))
        return 0
    from cifarkit.errors import terminal_safe  # a plugin's text: shown escaped, never obeyed

    print(recipe.dumps())
    print("# plugins")
    for p in plugins:
        print(terminal_safe(f"{p['key']}: {p['kind']} {p['plugin']!r} from {p['from']} "
                            f"({p['module']})"))
        for param in p["parameters"]:
            print(terminal_safe(f"    {param['name']} = {options.dumps(param['value'])}  "
                                f"({param['source']})"))
    if summary is not None:
        print("\n# model")
        print(terminal_safe(summary.rstrip(), lines=True))
        print(f"parameters: {count:,} ({trainable:,} trainable, {trainable / 1e6:.2f}M)")
    return 0


COMMAND = options.Command(
    "show", main, "print a recipe resolved, its plugins and its model", arguments,
    description="Print the recipe as a run would use it (extends, --set and every default "
                "resolved) as TOML, each plugin it resolves to with its parameters and their "
                "source, and the model's layers and parameter count. Nothing is trained; the "
                "model is built for the image shape and classes the dataset's metadata gives "
                "(no image is read where the dataset plugin describes itself, as CIFAR's do).")
