"""The built-in commands, one module each: its arguments beside its handler, as the
``COMMAND`` (:class:`cifarkit.cli.options.Command`) it exports."""

#: The built-in command modules, in the order ``cifarkit --help`` lists them.
BUILT_IN = ("run", "list_plugins", "new_plugin", "evaluate", "predict", "runs", "compare",
            "show", "sweep", "export", "completion")
