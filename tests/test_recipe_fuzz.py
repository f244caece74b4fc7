"""Property: whatever TOML and --set values come in, the recipe loader raises
nothing but the user-error family (CifarkitError)."""

import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifarkit.errors import CifarkitError
from cifarkit.core.recipe import load_recipe
from cifarkit.core.registry import load_registry

REGISTRY = load_registry()
KEYS = ["name", "description", "seed", "extends", "plugins", "data", "augmentation", "model",
        "strategy", "train", "callbacks", "plugin", "dataset", "path", "validation_split",
        "batch_size", "limit", "shuffle", "epochs", "optimizer", "learning_rate", "loss",
        "label_smoothing", "metrics", "steps_per_epoch", "deterministic", "degrees", "mode",
        "filters", "dropout", "dense_units", "patience", "monitor", "devices", "label_mode",
        "seed_cnn", "random_flip", "early_stopping", "adam", "sgd", "mirrored", "cifar10"]
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
scalars = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(KEYS), st.sampled_from(["/", ".", "..", "x.toml", ""]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=20)
documents = st.dictionaries(keys, values, max_size=8)
set_options = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={v}", st.text(max_size=20), st.text(max_size=20)),
        st.builds(lambda path, v: f"{'.'.join(path)}={v}",
                  st.lists(st.one_of(st.sampled_from(KEYS), st.sampled_from(["0", "1", "[0]"])),
                           min_size=1, max_size=3),
                  st.one_of(st.text(max_size=10), st.sampled_from(["1", "0.5", "true", "[1, 2]",
                                                                   '"x"', "{a = 1}", "nan"]))),
        st.text(max_size=30)),
    max_size=3)


def check(text: str, sets: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.toml"
        path.write_text(text)
        try:
            load_recipe(path, sets, REGISTRY)
        except CifarkitError as exc:
            assert "\n" not in str(exc)  # one line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, set_options)
def test_random_documents_raise_only_user_errors(doc, sets):
    check(tomli_w.dumps(doc), sets)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), set_options)
def test_random_text_raises_only_user_errors(text, sets):
    check(text, sets)


@settings(max_examples=200, deadline=None)
@given(set_options)
def test_random_sets_on_the_default_recipe(sets):
    check((Path(__file__).parent.parent / "recipes" / "default.toml").read_text(), sets)


def test_an_extends_path_with_a_newline_is_one_line(tmp_path):
    """Found by Hypothesis: the error's path part quoted the newline raw."""
    path = tmp_path / "recipe.toml"
    path.write_text('extends = "\\n"\n')
    try:
        load_recipe(path, [], REGISTRY)
    except CifarkitError as exc:
        assert "\n" not in str(exc) and "not found" in str(exc)
    else:
        raise AssertionError("extends of a missing file loaded")


def test_the_fuzz_is_derandomised_and_writes_nothing_into_the_checkout():
    import os

    from hypothesis import settings

    assert settings.default.derandomize is True
    assert settings.default.database is None
    storage = Path(os.environ["HYPOTHESIS_STORAGE_DIRECTORY"]).resolve()
    assert Path(__file__).resolve().parent.parent not in storage.parents
