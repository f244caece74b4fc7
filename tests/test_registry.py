"""Plugin registry, parameter declarations, and import-lightness."""

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import pytest

import cifarkit
from cifarkit.errors import PluginError
from cifarkit.core.params import ParamTypeError, Range, coerce, docstring_args, params_from_signature
from cifarkit.core.registry import Registry, load_registry

KINDS = {"augmentation", "model", "strategy", "callback", "dataset", "optimizer"}


def test_builtins_register_through_entry_points(registry):
    by_kind = {}
    for p in registry.all():
        by_kind.setdefault(p.kind, set()).add(p.name)
        assert p.source == "built-in"
        assert p.summary, f"{p.kind} {p.name} has no summary"
    assert set(by_kind) == KINDS
    assert {"random_rotation", "random_translation", "random_flip"} <= by_kind["augmentation"]
    assert {"one_device", "mirrored"} <= by_kind["strategy"]
    assert {"early_stopping", "model_checkpoint", "csv_logger", "reduce_lr_on_plateau",
            "tensorboard"} <= by_kind["callback"]
    assert registry.broken == []


def test_metadata_is_readable_without_tensorflow():
    code = ("import sys; from cifarkit.core.registry import load_registry; r = load_registry(); "
            "[p.to_json() for p in r.all()]; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_injected_names_are_not_recipe_parameters(registry):
    assert [p.name for p in registry.get("model", "seed_cnn").params] == [
        "filters", "dropout", "dense_units", "dense_dropout"]
    assert "seed" not in {p.name for p in registry.get("augmentation", "random_flip").params}
    assert "run_dir" not in {p.name for p in registry.get("callback", "model_checkpoint").params}


def test_parameter_json_has_type_default_and_description(registry):
    params = {p["name"]: p for p in registry.get("augmentation", "random_rotation").to_json()["parameters"]}
    assert params["degrees"] == {
        "name": "degrees", "type": "float in [0, 180]", "required": False, "default": 15.0,
        "description": "largest rotation, in degrees (ImageDataGenerator's rotation_range)."}


def test_unknown_plugin_suggests_a_close_name(registry):
    with pytest.raises(PluginError, match=r"did you mean 'early_stopping'\?.*allowed: cosine_decay, csv_logger"):
        registry.get("callback", "early_stoping")


def test_local_plugin_file_and_conflicts(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "import cifarkit\n"
        "def seed_cnn(input_shape, num_classes, width: int = 3):\n"
        "    'Another seed_cnn.'\n"
        "def tiny(input_shape, num_classes, width: int = 3):\n"
        "    'A tiny model.'\n"
        "@cifarkit.hookimpl\n"
        "def register_models(register):\n"
        "    register(seed_cnn)\n"
        "    register(tiny, name='tiny_model')\n")
    registry = load_registry((plugin,))
    assert registry.get("model", "tiny_model").source == str(plugin)
    with pytest.raises(PluginError, match=r"two model plugins are named 'seed_cnn': from 'built-in' and '.*mine.py'"):
        registry.get("model", "seed_cnn")


def test_broken_plugin_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import cifarkit\n\nraise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match=r"bad.py: plugin file failed to import: RuntimeError: boom \(line 3\)"):
        load_registry((bad,))
    typo = tmp_path / "typo.py"
    typo.write_text("import cifarkit\n@cifarkit.hookimpl\ndef register_model(register):\n    pass\n")
    with pytest.raises(PluginError, match="unknown hook 'register_model'; did you mean 'register_models'"):
        load_registry((typo,))
    with pytest.raises(PluginError, match="plugin file not found"):
        load_registry((tmp_path / "nope.py",))


def test_a_failing_register_hook_is_listed_as_broken():
    class Broken:
        @cifarkit.hookimpl
        def register_models(self, register):
            raise ImportError("missing dependency 'foo'")

    registry = Registry()
    registry.register(Broken(), "brokenpkg 1.0")
    assert registry.all() == []
    assert registry.broken[0].source == "brokenpkg 1.0"
    assert "missing dependency 'foo'" in registry.broken[0].error
    with pytest.raises(PluginError, match="plugins that failed to load: brokenpkg 1.0"):
        registry.get("model", "anything")


def test_load_plugins_env_var_empty_keeps_builtins(monkeypatch):
    """CIFARKIT_LOAD_PLUGINS="" still loads cifarkit's own plugins."""
    monkeypatch.setenv("CIFARKIT_LOAD_PLUGINS", "")
    assert "seed_cnn" in load_registry().names("model")


@pytest.mark.parametrize("ann, value, expected", [
    (int, 3, 3), (float, 3, 3.0), (bool, True, True), (str, "a", "a"),
    (list[int], [1, 2], [1, 2]), (int | None, 4, 4), (Literal["a", "b"], "b", "b"),
    (Annotated[float, Range(0, 1)], 1, 1.0), (Path, "/x", Path("/x")),
])
def test_coerce_accepts(ann, value, expected):
    assert coerce(ann, value) == expected


@pytest.mark.parametrize("ann, value", [
    (int, True), (int, 1.5), (float, "1"), (bool, 1), (str, 3), (list[int], [1, "2"]),
    (Literal["a", "b"], "c"), (Annotated[float, Range(0, 1)], 1.5), (float, float("nan")),
    (Annotated[int, Range(0, 10, max_inclusive=False)], 10), (Path, ""),
])
def test_coerce_rejects(ann, value):
    with pytest.raises(ParamTypeError):
        coerce(ann, value)


def test_signature_declarations():
    def good(seed, size: int = 3, name: str = "x", rate: Annotated[float, Range(0, 1)] = 0.5):
        """Summary.

        Args:
            size: the size,
                continued.
            name: a name.
        """
    specs = params_from_signature(good, frozenset({"seed"}))
    assert [s.name for s in specs] == ["size", "name", "rate"]
    assert specs[0].description == "the size, continued."
    assert docstring_args(good.__doc__)["name"] == "a name."

    def star(**kwargs):
        pass

    def untyped(x):
        pass

    def odd(x: complex = 1j):
        pass

    for bad in (star, untyped, odd):
        with pytest.raises(TypeError):
            params_from_signature(bad, frozenset())


class _Models:
    """A plugin object whose register_models hook registers one model through a helper."""

    def __init__(self, name):
        self.name = name

    def _add(self, register):
        def factory(input_shape, num_classes):
            """A model never built."""
        register(factory, name=self.name)

    @cifarkit.hookimpl
    def register_models(self, register):
        self._add(register)  # register() called from a helper: still attributed


class _Broken:
    @cifarkit.hookimpl
    def register_models(self, register):
        raise RuntimeError("oops")


def test_register_hooks_go_through_pluggy_with_attribution():
    calls = []
    registry = Registry()
    registry.pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name),
                                        lambda *a: None)
    registry.register(_Models("first"), "pkg-a")
    registry.register(_Broken(), "pkg-broken")
    registry.register(_Models("second"), "pkg-b")

    class Wrapper:
        seen = []

        @cifarkit.hookimpl(wrapper=True)
        def register_models(self, register):
            Wrapper.seen.append("before")
            result = yield
            Wrapper.seen.append("after")
            return result

    registry.register(Wrapper(), "pkg-wrapper")
    assert sorted(registry.names("model")) == ["first", "second"]
    assert registry.get("model", "first").source == "pkg-a"
    assert registry.get("model", "second").source == "pkg-b"
    assert [(b.source, b.error) for b in registry.broken] == [
        ("pkg-broken", "register_models() failed: RuntimeError: oops")]
    assert "register_models" in calls  # hook-call monitoring sees the calls
    assert Wrapper.seen[-2:] == ["before", "after"]  # (the call that met the broken one raised)


def test_a_plugin_per_backend_and_what_it_controls():
    from cifarkit.backends import get
    from cifarkit.core.schema import PluginCall

    class PerBackend:
        @cifarkit.hookimpl
        def register_callbacks(self, register):
            def on_tf(every: int = 1):
                """TensorFlow form."""
            def on_jax(every: int = 1):
                """JAX form."""
            def tf_only(every: int = 1):
                """Only on TensorFlow."""
            def odd(other: int = 1):
                """Different parameters."""
            register(on_tf, name="both", backend="tensorflow", controls=["learning_rate"])
            register(on_jax, name="both", backend="jax", controls=["learning_rate"])
            register(tf_only, backend="tensorflow")
            register(on_tf, name="mismatch", backend="tensorflow")
            register(odd, name="mismatch", backend="jax")
            register(on_tf, name="nowhere", backend="torch")

    registry = Registry()
    registry.register(PerBackend(), "pkg")
    both = registry.get("callback", "both")
    assert both.backends == ("tensorflow", "jax") and both.controls == ("learning_rate",)
    assert registry.variant("callback", "both", get("jax")).summary == "JAX form."
    assert registry.variant("callback", "both", get("tensorflow")).summary == "TensorFlow form."
    call = PluginCall("callback", "tf_only", {}, "callbacks[0]", "r.toml")
    with pytest.raises(PluginError, match=r"r.toml: callbacks\[0\]: callback plugin 'tf_only' "
                                          "exists for the tensorflow backend only, and this "
                                          "run is on jax"):
        registry.variant("callback", "tf_only", get("jax"), call)
    errors = [b.error for b in registry.broken]
    assert any("'mismatch' for the jax backend declares parameters (other) unlike its "
               "tensorflow form's (every)" in e for e in errors)
    assert any("backend='torch' is not a backend" in e for e in errors)
