"""The package's layering: each part of cifarkit imports only parts on its own floor or
below, so the engine never reaches up into the command line (or sweeps, or the test
helpers), and backends and data readers know nothing of recipes or runs."""

import ast

from conftest import ROOT

#: Each part of the package and its floor; a module may import its own floor and below.
FLOORS = {"errors": 0, "version": 0, "files": 0, "losses": 0, "arguments": 0,
          "backends": 1, "data": 1,
          "core": 2,
          "runs": 3,
          "sweeps": 4,
          "api": 5,
          "cli": 6,
          "testing": 7, "pytest_plugin": 7, "__main__": 7, "__init__": 7}


def part(module: str) -> str:
    """The part of cifarkit a dotted module name belongs to."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def imports(path):
    """Every cifarkit module ``path`` imports (at its top or inside a function)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "cifarkit":
                yield from (f"cifarkit.{a.name}" for a in node.names
                            if f"cifarkit.{a.name}".split(".")[1] in FLOORS)
            elif node.module.startswith("cifarkit."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("cifarkit."))


def test_every_part_of_the_package_has_a_floor():
    parts = {p.stem if p.is_file() else p.name for p in (ROOT / "cifarkit").iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert parts == set(FLOORS)


def test_no_import_runs_up_the_floors():
    upward = []
    for path in sorted((ROOT / "cifarkit").rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        me = part(".".join(relative.parts)) if len(relative.parts) > 1 else "__init__"
        for module in imports(path):
            if FLOORS[part(module)] > FLOORS[me]:
                upward.append(f"{relative}: {me} imports {module}")
    assert upward == []


def test_no_backend_name_outside_the_backends():
    """Only cifarkit/backends/ names a backend: everything else asks the Backend object
    it was given (or backends.DEFAULT). Docstrings may mention them."""
    from cifarkit.backends import BACKENDS

    found = []
    for path in sorted((ROOT / "cifarkit").rglob("*.py")):
        if "backends" in path.relative_to(ROOT).parts:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                                           ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
                  for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in BACKENDS
                  and id(node) not in docstrings]
    assert found == []


def test_functions_and_modules_stay_readable():
    """No function over 60 lines and no module over 400 in cifarkit/ or plugins/."""
    long = []
    for path in sorted([*(ROOT / "cifarkit").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]):
        text = path.read_text()
        if text.count("\n") > 400:
            long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        long += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                 f"{node.end_lineno - node.lineno + 1} lines"
                 for node in ast.walk(ast.parse(text))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.end_lineno - node.lineno + 1 > 60]
    assert long == []


def test_every_package_is_installed():
    """pyproject.toml lists its packages one by one: a new subpackage must be listed, or
    a non-editable install leaves it out."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "cifarkit").rglob("__init__.py")}
    assert found - listed == set()
