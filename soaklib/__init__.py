"""soaklib: soak-test, auto-tune, audit, gate and release a market-making strategy.

Analysts: ``run = soaklib.open_run("runs/latest")`` then ``run.iterations`` (one row per
iteration), ``run.params``, ``run.decisions``, ``run.blocks``, ``run.manifest``.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("soaklib")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

from .config import load_config
from .errors import SoakError


def open_run(path):
    """Open a soak run (soaklib run dir, ``runs/latest`` or a seed-toolkit layout)."""
    from .loader import open_run as _open

    return _open(path)


__all__ = ["open_run", "load_config", "SoakError", "__version__"]
