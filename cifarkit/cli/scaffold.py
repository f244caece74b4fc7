"""``cifarkit new-plugin``: write a ready-to-install plugin package.

The files come from ``cifarkit/templates/*.tmpl`` (``string.Template``:
``${name}``, ``${module}``, ...), which the test suite renders and imports.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from cifarkit.errors import CifarkitError

KIND_CHOICES = ("model", "augmentation", "callback", "strategy", "optimizer", "dataset")

#: What a generated test overrides in the default recipe to use the new plugin.
def _overrides(kind: str, name: str) -> dict:
    return {
        "model": {"model": {"plugin": name, "width": 8}},
        "augmentation": {"augmentation": [{"plugin": name, "factor": 0.3}]},
        "callback": {"callbacks": [{"plugin": name}]},
        "strategy": {"strategy": {"plugin": name}},
        "optimizer": {"train": {"optimizer": {"plugin": name}}},
        "dataset": {"data": {"dataset": name, "train_size": 64, "test_size": 32}},
    }[kind]


USAGE = {
    "model": '[model]\nplugin = "{name}"',
    "augmentation": '[[augmentation]]\nplugin = "{name}"',
    "callback": '[[callbacks]]\nplugin = "{name}"',
    "strategy": '[strategy]\nplugin = "{name}"',
    "optimizer": '[train]\noptimizer = "{name}"',
    "dataset": '[data]\ndataset = "{name}"',
}


def render(template: str, **values: str) -> str:
    """One template file of ``cifarkit/templates`` with ``values`` substituted."""
    text = resources.files("cifarkit").joinpath("templates", template).read_text("utf-8")
    return Template(text).substitute(values)


def plugin_files(name: str, kind: str) -> dict[str, str]:
    """The files of a new plugin package, by relative path."""
    module = f"cifarkit_{name}"
    values = {"name": name, "kind": kind, "module": module,
              "dist": f"cifarkit-{name.replace('_', '-')}",
              "hang": " " * len(f"def {name}(")}  # continuation lines under the first parameter
    return {
        f"{module}/__init__.py": render(f"{kind}.py.tmpl", **values),
        "tests/test_plugin.py": render("test_plugin.py.tmpl",
                                       overrides=repr(_overrides(kind, name)), **values),
        "pyproject.toml": render("pyproject.toml.tmpl", **values),
        "README.md": render("README.md.tmpl", usage=USAGE[kind].format(name=name), **values),
    }


def new_plugin(name: str, kind: str, directory: Path) -> Path:
    """Write ``directory/cifarkit-NAME/`` and return its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,50}", name):
        raise CifarkitError(f"new-plugin: {name!r} is not a usable plugin name "
                            "(lowercase letters, digits and '_', starting with a letter)")
    if kind not in KIND_CHOICES:
        raise CifarkitError(f"new-plugin: unknown kind {kind!r} (allowed: {', '.join(KIND_CHOICES)})")
    root = directory / f"cifarkit-{name.replace('_', '-')}"
    if root.exists():
        raise CifarkitError(f"new-plugin: {root} already exists; choose another name or --output")
    files = plugin_files(name, kind)
    try:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as exc:
        raise CifarkitError(f"new-plugin: cannot write {root} ({exc.strerror or exc})") from None
    return root
