"""soaklib: soak-test, auto-tune, audit, gate and release a market-making strategy.

Analysts: ``run = soaklib.open_run("runs/latest")`` then ``run.iterations`` (one row per
iteration), ``run.params``, ``run.decisions``, ``run.blocks``, ``run.manifest``.
"""
from __future__ import annotations

from soaklib.core.config import load_config
from soaklib.core.errors import SoakError
from soaklib.core.version import __version__
from soaklib.store.loader import open_run

__all__ = ["open_run", "load_config", "SoakError", "__version__"]
