"""Keras's private APIs are used in one module (cifarkit/backends/keras_internals.py),
each behind a check of the Keras release; this fails loudly on a release nobody has
checked them against, instead of a run that is silently slower or wrong."""

import re

import pytest

from conftest import ROOT

keras = pytest.importorskip("keras")


def test_the_installed_keras_is_a_release_the_private_apis_were_checked_against():
    from cifarkit.backends.keras_internals import CHECKED, checked, keras_release

    assert checked(), (
        f"Keras {keras.__version__} is not in keras_internals.CHECKED ({sorted(CHECKED)}): "
        "read the private APIs listed in cifarkit/backends/keras_internals.py against this "
        f"release, run tests/test_jax_device_steps.py, then add {keras_release()}")


def test_no_other_module_reaches_into_keras_internals():
    private = re.compile(r"keras\.src\.|\._initializer\b|_deferred_initialize|"
                         r"global_state|\.state_mapping\b|optimizer\._")
    found = [f"{p.relative_to(ROOT)}:{n}" for folder in ("cifarkit", "plugins")
             for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "keras_internals.py"
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if private.search(line) and not line.lstrip().startswith("#")]
    assert found == []
