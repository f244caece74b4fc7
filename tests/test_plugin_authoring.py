"""Plugin authors' path: fixtures, scaffold, the tutorial package, the docs' code."""

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib

import pytest

from conftest import ROOT, cifarkit, cli

TUTORIAL = ROOT / "examples" / "cifarkit-tutorial"


def blocks(doc, lang):
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S)


def run_pytest(folder, *args, env=None, timeout=600, warnings=False):
    full_env = {**os.environ, **(env or {})}
    quiet = [] if warnings else ["-W", "ignore::DeprecationWarning"]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *quiet, *args],
                          cwd=folder, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_tutorial_code_blocks_are_the_example_files():
    seen = set()
    for lang in ("python", "toml"):
        for block in blocks("writing-plugins.md", lang):
            first, _, body = block.partition("\n")
            assert first.startswith("# "), f"a {lang} block without a file name: {first!r}"
            rel = first[2:].strip()
            assert (TUTORIAL / rel).read_text() == body, rel
            seen.add(rel)
    assert {"cifarkit_tutorial/resnet.py", "cifarkit_tutorial/cutout.py",
            "cifarkit_tutorial/lr_logger.py", "cifarkit_tutorial/split_cpu.py",
            "cifarkit_tutorial/npz_dataset.py", "cifarkit_tutorial/lion.py",
            "cifarkit_tutorial/fit_timer.py", "cifarkit_tutorial/hook_trace.py",
            "recipe.toml", "pyproject.toml", "tests/test_tutorial.py"} <= seen


@pytest.mark.slow  # one of its runs is a JAX subprocess
def test_testing_docs_example_passes(tmp_path):
    (code,) = blocks("testing-plugins.md", "python")
    (tmp_path / "test_docs_example.py").write_text(code)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "5 passed" in result.stdout  # test_on_every_backend runs twice


@pytest.fixture(scope="module")
def installed_tutorial(tmp_path_factory):
    """The tutorial package built and installed (non-editable) into its own folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(TUTORIAL)], check=True, capture_output=True,
                   timeout=300)
    return target


@pytest.mark.slow
def test_installed_tutorial_is_found_through_entry_points(installed_tutorial):
    result = cifarkit("list-plugins", "--json", env={"PYTHONPATH": str(installed_tutorial),
                                                     "CIFARKIT_LOAD_PLUGINS": "cifarkit-tutorial"})
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    for name, kind in [("small_resnet", "model"), ("cutout", "augmentation"),
                       ("lr_logger", "callback"), ("split_cpu", "strategy")]:
        assert plugins[name]["kind"] == kind
        assert plugins[name]["source"] == "cifarkit-tutorial 0.1.0"
    assert plugins["split_cpu"]["backends"] == ["tensorflow"]
    (command,) = json.loads(result.stdout)["commands"]
    assert command == {"name": "best-run", "source": "cifarkit-tutorial 0.1.0",
                       "summary": "the completed run with the best test accuracy"}
    env = {"PYTHONPATH": str(installed_tutorial), "CIFARKIT_LOAD_PLUGINS": "cifarkit-tutorial"}
    helped = cifarkit("--help", env=env)
    assert "best-run" in helped.stdout and "the completed run with the best" in helped.stdout
    missing = cifarkit("best-run", "nowhere", env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("cifarkit: error: nowhere: ")
    assert missing.stderr.count("\n") == 1
    only_builtins = cifarkit("list-plugins", "--json",
                             env={"PYTHONPATH": str(installed_tutorial), "CIFARKIT_LOAD_PLUGINS": ""})
    assert "small_resnet" not in only_builtins.stdout


@pytest.mark.slow
def test_tutorial_package_tests_pass(installed_tutorial, tmp_path):
    result = run_pytest(TUTORIAL, "-o", f"cache_dir={tmp_path}",
                        env={"PYTHONPATH": str(installed_tutorial)}, warnings=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "9 passed" in result.stdout
    assert "DeprecationWarning" not in result.stdout  # its pyproject filters the frameworks'


SCAFFOLD_KINDS = ["model", "augmentation", "callback", "strategy", "optimizer", "dataset"]


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """A package of every kind from ``cifarkit new-plugin``, and one pytest session over
    all their tests (one interpreter and one TensorFlow start for the six), with every
    package's plugin under test: ``(root, pytest's result)``."""
    root = tmp_path_factory.mktemp("scaffolds")
    for kind in SCAFFOLD_KINDS:
        made = cli("new-plugin", f"my_{kind}", "--kind", kind, "--output", str(root))
        assert made.returncode == 0, made.stderr
    packages = [root / f"cifarkit-my-{kind}" for kind in SCAFFOLD_KINDS]
    (root / "pytest.ini").write_text("[pytest]\ncifarkit_plugins =\n" + "".join(
        f"    cifarkit_my_{kind}\n" for kind in SCAFFOLD_KINDS))
    result = run_pytest(root, "-rA", "--import-mode=importlib",
                        *[str(p / "tests") for p in packages],
                        env={"PYTHONPATH": os.pathsep.join(map(str, packages))})
    return root, result


@pytest.mark.slow  # one test, not one per kind: xdist would build the fixture on each worker
def test_scaffolded_package_tests_pass(scaffolded):
    root, result = scaffolded
    for kind in SCAFFOLD_KINDS:
        package = root / f"cifarkit-my-{kind}"
        assert sorted(p.relative_to(package).as_posix() for p in package.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts) == [
            "README.md", f"cifarkit_my_{kind}/__init__.py", "pyproject.toml",
            "tests/test_plugin.py"], kind
        meta = tomllib.loads((package / "pyproject.toml").read_text())
        assert meta["project"]["entry-points"]["cifarkit"] == {f"my_{kind}": f"cifarkit_my_{kind}"}
        assert meta["tool"]["pytest"]["ini_options"]["cifarkit_plugins"] == [f"cifarkit_my_{kind}"]
        listed = cli("list-plugins", "--json", "--plugin",
                     str(package / f"cifarkit_my_{kind}/__init__.py"))
        assert any(p["name"] == f"my_{kind}" and p["kind"] == kind
                   for p in json.loads(listed.stdout)["plugins"]), kind
        passed = re.findall(rf"^PASSED cifarkit-my-{kind}/tests/test_plugin.py::(\w+)",
                            result.stdout, re.M)
        assert len(passed) == 2, (kind, result.stdout[-3000:])


@pytest.mark.parametrize("kind", ["model", "optimizer", "dataset"])
def test_scaffolded_parameters_line_up_under_the_first(tmp_path, kind):
    from cifarkit.cli.scaffold import plugin_files

    for name in ("a", "a_much_longer_plugin_name"):
        lines = plugin_files(name, kind)[f"cifarkit_{name}/__init__.py"].splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
        column = len(f"def {name}(")
        end = next(i for i in range(start, len(lines)) if lines[i].endswith("):"))
        following = lines[start + 1:end + 1]  # the signature's continuation lines
        assert following and all(line[:column].strip() == "" and line[column] != " "
                                 for line in following)


def test_new_plugin_refuses_bad_names_and_existing_folders(tmp_path):
    bad = cifarkit("new-plugin", "My-Plugin", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "not a usable plugin name" in bad.stderr
    assert cifarkit("new-plugin", "ok", "--output", str(tmp_path)).returncode == 0
    again = cifarkit("new-plugin", "ok", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_fixture_registry_takes_plugins_under_test_from_ini_and_marker(tmp_path):
    (tmp_path / "extra_plugin.py").write_text(textwrap.dedent('''
        import cifarkit

        def shout(input_shape, num_classes):
            """A model that is never built."""

        @cifarkit.hookimpl
        def register_models(register):
            register(shout)
    '''))
    (tmp_path / "pytest.ini").write_text("[pytest]\ncifarkit_plugins = extra_plugin.py\n")
    (tmp_path / "test_it.py").write_text(textwrap.dedent('''
        import pytest

        def test_ini(cifarkit_registry):
            assert cifarkit_registry.get("model", "shout").summary == "A model that is never built."

        @pytest.mark.cifarkit_plugins("json")
        def test_marker_module_without_hooks_is_fine(cifarkit_registry):
            assert "seed_cnn" in cifarkit_registry.names("model")
    '''))
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout


@pytest.mark.slow
def test_an_installed_wrapper_and_tracer_act_around_a_run(installed_tutorial, tmp_path,
                                                          cifar10_dir):
    """Lifecycle hooks from an outside package: pluggy's wrapper and tryfirst work, and
    CIFARKIT_TRACE_PLUGINS shows every hook call with the plugins it reaches."""
    from conftest import tiny_overrides

    sets = [a for s in tiny_overrides(cifar10_dir) for a in ("--set", s)]
    done = cifarkit("run", "default", *sets, "--set", "train.steps_per_epoch=2",
                    "-o", str(tmp_path / "runs"),
                    env={"PYTHONPATH": str(installed_tutorial),
                         "CIFARKIT_LOAD_PLUGINS": "cifarkit-tutorial",
                         "CIFARKIT_TRACE_PLUGINS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "fit_time.json").read_text())["epochs"] == 1
    log = [line.split(" ", 1)[1] for line in (run_dir / "hooks.log").read_text().splitlines()]
    assert log == ["run_start default on tensorflow", "run_fit begins",
                   "run_fit ends after 1 epoch(s)", "run_finish completed"]
    assert ("cifarkit: hook run_fit(run) -> cifarkit-tutorial:hook_trace, "
            "cifarkit-tutorial:fit_timer, cifarkit:run") in done.stderr


def test_a_plugin_command_that_clashes_or_is_malformed_is_broken_not_added(tmp_path):
    from cifarkit.core.registry import load_registry
    from cifarkit.cli import build_parser, plugin_commands

    plugin = tmp_path / "commands.py"
    plugin.write_text(
        "import cifarkit\n\n"
        "@cifarkit.hookimpl\n"
        "def register_commands(register):\n"
        "    register('run', print, help='shadows the built-in run')\n"
        "    register('hello', lambda args: print('hi'), help='says hi')\n")
    registry = load_registry((plugin,))
    commands = plugin_commands(registry)
    assert [c.name for c in commands] == ["hello"]
    assert any("command 'run' is already a command of built-in" in b.error
               for b in registry.broken)
    assert "hello" in build_parser(commands).format_help()
    bad = tmp_path / "bad.py"
    bad.write_text("import cifarkit\n\n@cifarkit.hookimpl\n"
                   "def register_commands(register):\n    register('Bad Name', print, help='x')\n")
    registry = load_registry((bad,))
    assert plugin_commands(registry) == []
    assert "lowercase letters, digits and '-'" in registry.broken[-1].error

