"""The embedded market-making simulator (DESIGN §6). Public API: ``simulate``, ``SimResult``.

The event loop lives in ``soaklib.sim.engine`` (numba, cached); scenarios are TOML files in
``soaklib/sim/scenarios``. Everything reported here is computed from simulated events.
"""
from __future__ import annotations

from pathlib import Path

from soaklib.sim.engine import run_simulation
from soaklib.sim.result import SimResult

__all__ = ["SimResult", "simulate"]


def simulate(params: dict, scenario: str | Path = "default", seed: int = 0,
             duration_s: float = 3600.0, *, start_s: float = 0.0, config: dict | None = None) -> SimResult:
    """Simulate ``duration_s`` seconds of market starting at ``start_s`` into ``scenario``.

    ``start_s`` selects where in the scenario's regime schedule the window sits (iteration n of a
    soak starts at (n-1)·duration_s). ``config`` is the effective soaklib config (defaults if None).
    """
    return run_simulation(params, scenario, seed, duration_s, start_s=start_s, config=config)
