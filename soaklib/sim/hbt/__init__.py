"""The hftbacktest engine (opt-in: ``soak run --runner hbt``; docs/SIMULATOR.md, issue 12).

Synthetic markets as hftbacktest event arrays, a function of (scenario, seed, window) only (common
random numbers: every parameter set meets the same market), replayed by hftbacktest with queue
position, two-sided latency and fees; the strategy is numba code on hftbacktest's API with the same
7 registry parameters and in-strategy guards as the embedded simulator, and the KPIs are derived
from its fills. Markets are cached on disk (``cache.MarketCache``).

Public API: ``simulate`` (same signature and ``SimResult`` as ``soaklib.sim.simulate``).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite
from soaklib.sim.hbt.backtest import derive, effective_params, settings
from soaklib.sim.hbt.cache import MarketCache, default_dir
from soaklib.sim.hbt.generator import Market, generate
from soaklib.sim.hbt.scenario import load_scenario
from soaklib.sim.result import SimResult

__all__ = ["SimResult", "simulate", "market_for", "window_index", "load_scenario", "settings"]


def window_index(start_s: float, duration_s: float) -> int:
    """The window a start time falls in (iteration n of a soak starts at (n-1)·duration_s)."""
    for k, v in (("duration_s", duration_s), ("start_s", start_s)):
        if finite(v) is None or v < 0:
            raise ConfigError(f"expected a number >= 0, got {v!r}", field=k)
    if duration_s <= 0:
        raise ConfigError(f"expected a duration > 0 s, got {duration_s!r}", field="duration_s")
    return int(float(start_s) // float(duration_s))


def market_for(scenario: str | Path, seed: int, window: int, duration_s: float,
               config: Mapping[str, Any]) -> Market:
    """The window's market: from the disk cache (``[hbt].market_cache``), else generated."""
    h = config["hbt"]
    if h["market_cache"]:
        return MarketCache(default_dir(h)).get(scenario, seed, window, duration_s)
    return generate(scenario, seed, window, duration_s)


def simulate(params: Mapping[str, Any], scenario: str | Path = "default", seed: int = 0,
             duration_s: float = 3600.0, *, start_s: float = 0.0, config: Mapping[str, Any] | None = None) -> SimResult:
    """Backtest ``duration_s`` seconds of the market of window ``start_s // duration_s`` of ``scenario``.

    The market depends on (scenario, seed, window, duration_s) only; ``config`` is the effective
    soaklib config (defaults if None).
    """
    cfg = settings(config)
    window = window_index(start_s, duration_s)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"expected an integer seed >= 0, got {seed!r}", field="seed")
    effective_params(params, cfg)  # a bad parameter fails before a market is generated
    sc = load_scenario(scenario)
    return derive(params, market_for(sc, int(seed), window, float(duration_s), cfg), cfg)
