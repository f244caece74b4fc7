"""cifarkit's version (a leaf module: anything may import it)."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("cifarkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
