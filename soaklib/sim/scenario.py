"""Scenario files: TOML market descriptions shipped in ``soaklib/sim/scenarios``.

``_base.toml`` defines the market constants and the regimes; a scenario file may override any of
them and lists its schedule as ``[[segments]]``. The schedule repeats (cyclic), so any window
``[start_s, start_s + duration_s)`` maps onto it. Reading, overlay and validation are
``soaklib.sim.tables`` (shared with the hbt engine); this module holds this engine's keys and bounds.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

from soaklib.sim import layout as E
from soaklib.sim import tables
from soaklib.sim.tables import MAX_CRASH_BPS, SEGMENT_KEYS, Bound

# Moves of the mid (and spreads) beyond 10 % per step/second make no sense for a market-making
# scenario and can drive the mid to <= 0 (the engine also stops with a ConfigError if it ever does).
MAX_MOVE_BPS = 1000.0
_POS = Bound(0.0, True)
_BPS = Bound(0.0, False, MAX_MOVE_BPS)
REGIME_KEYS = {  # key -> (column in the regime table, bound)
    "vol_bps_per_sqrt_s": (E.R_VOL, _BPS), "drift_bps_per_s": (E.R_DRIFT, Bound(-MAX_MOVE_BPS, False, MAX_MOVE_BPS)),
    "jump_rate_per_h": (E.R_JUMP_RATE, Bound(0.0)), "jump_bps": (E.R_JUMP_BPS, _BPS),
    "informed_share": (E.R_INF_SHARE, Bound(0.0, False, 1.0)), "informed_impact_bps": (E.R_INF_BPS, _BPS),
    "order_rate_per_s": (E.R_RATE, _POS), "kappa_per_bps": (E.R_KAPPA, _POS), "latency_mult": (E.R_LAT_MULT, _POS),
    "market_half_spread_bps": (E.R_MKT_HS, _BPS),
}
MARKET_KEYS = {"base_half_spread_bps": Bound(0.0, True, MAX_MOVE_BPS), "latency_base_ms": _POS}
__all__ = ["MAX_CRASH_BPS", "MARKET_KEYS", "REGIME_KEYS", "SEGMENT_KEYS", "Scenario", "load_scenario", "shipped"]


@dataclass(frozen=True)
class Scenario(tables.Tables):
    CRASH_AT_ABSOLUTE: ClassVar[bool] = False  # see tables.Tables


def _dir():
    return resources.files("soaklib.sim").joinpath("scenarios")


def shipped() -> list[str]:
    """Names of the scenarios shipped with soaklib."""
    return tables.shipped_names(_dir())


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``default``, ``calm``...) or a TOML file path."""
    got = tables.load(name_or_path, shipped_dir=_dir(), shown_dir="soaklib/sim/scenarios",
                      market_keys=MARKET_KEYS, regime_keys=REGIME_KEYS, n_rcol=E.N_RCOL)
    return Scenario(**got.fields)
