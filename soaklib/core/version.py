"""The installed soaklib version (one home; records and metrics stamp it)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("soaklib")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"
