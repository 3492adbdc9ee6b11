"""Scenario files of the hftbacktest engine: TOML market descriptions (``soaklib/sim/hbt/scenarios``).

``_base.toml`` holds the market constants (``[market]``) and the regimes (``[regimes.*]``); a
scenario may override any of them and lists its schedule as ``[[segments]]``, which repeats
(cyclic), so window ``n`` of ``duration_s`` maps onto ``[n*duration_s, (n+1)*duration_s)``.
Reading, overlay and validation are ``soaklib.sim.tables`` (shared with the embedded simulator);
this module holds this engine's keys and bounds and the content hash the market cache keys on.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from soaklib.core.errors import ConfigError
from soaklib.sim import tables
from soaklib.sim.tables import MAX_CRASH_BPS, SEGMENT_KEYS, Bound

SCENARIO_DIR = Path(__file__).with_name("scenarios")
SHOWN_DIR = "soaklib/sim/hbt/scenarios"  # how a shipped scenario is named in an error message

# regime key -> (column, bound); columns are the generator's layout
REGIME_KEYS: dict[str, tuple[int, Bound]] = {
    "vol_bps_per_sqrt_s": (0, Bound(0.0, False, 1000.0)),
    "drift_bps_per_s": (1, Bound(-1000.0, False, 1000.0)),
    "jump_rate_per_h": (2, Bound(0.0)),
    "jump_bps": (3, Bound(0.0, False, 1000.0)),
    "vol_of_vol": (4, Bound(0.0, False, 2.0)),
    "vol_halflife_s": (5, Bound(0.0, True)),
    "trade_rate_per_s": (6, Bound(0.0, False, 10000.0)),
    "trade_size_mean": (7, Bound(0.0, True)),
    "informed_share": (8, Bound(0.0, False, 1.0)),
    "sweep_share": (9, Bound(0.0, False, 1.0)),
    "sweep_depth_bps": (10, Bound(0.0, True, 1000.0)),
    "depth_qty": (11, Bound(0.0, True)),
    "depth_updates_per_s": (12, Bound(0.0, False, 100000.0)),
    "spread_levels": (13, Bound(1.0, False, 1000.0, True)),
    "latency_mult": (14, Bound(0.0, True)),
}
N_RCOL = 15
(R_VOL, R_DRIFT, R_JUMP_RATE, R_JUMP_BPS, R_VOV, R_VOL_HL, R_TRADE_RATE, R_TRADE_SIZE, R_INF, R_SWEEP,
 R_SWEEP_BPS, R_DEPTH, R_DEPTH_RATE, R_SPREAD_LV, R_LAT_MULT) = range(N_RCOL)

MARKET_KEYS: dict[str, Bound] = {
    "mid0": Bound(0.0, True),
    "tick": Bound(0.0, True),
    "lot": Bound(0.0, True),
    "level_gap_ticks": Bound(1.0, False, 10000.0, True),
    "levels": Bound(1.0, False, 200.0, True),
    "depth_slope": Bound(0.0, False, 100.0),
    "depth_sigma": Bound(0.0, False, 3.0),
    "base_half_spread_bps": Bound(0.0, True, 1000.0),
    "mid_step_ms": Bound(1.0, False, 60000.0),
    "informed_horizon_s": Bound(0.0, False, 3600.0),
    "feed_latency_ms": Bound(0.0, False, 10000.0),
    "feed_jitter_ms": Bound(0.0, False, 10000.0),
    "latency_base_ms": Bound(0.0, True, 60000.0),
    "latency_sigma": Bound(0.0, False, 3.0),
    "latency_halflife_s": Bound(0.0, True),
    "latency_sample_ms": Bound(1.0, False, 60000.0),
    "latency_entry_share": Bound(0.0, True, 1.0),
}
__all__ = ["MAX_CRASH_BPS", "MARKET_KEYS", "REGIME_KEYS", "SEGMENT_KEYS", "Scenario", "load_scenario", "shipped"]


@dataclass(frozen=True)
class Scenario(tables.Tables):
    content_hash: str              # sha256 of the resolved content (the cache key's scenario part)

    def regime_dict(self, name: str) -> dict[str, float]:
        i = self.regime_names.index(name)
        return {k: float(self.regimes[i, c[0]]) for k, c in REGIME_KEYS.items()}


def shipped() -> list[str]:
    return tables.shipped_names(SCENARIO_DIR)


def load_scenario(name_or_path: str | Path | Scenario) -> Scenario:
    """A shipped scenario by name (``default``, ``calm``...) or a TOML file path."""
    if isinstance(name_or_path, Scenario):
        return name_or_path
    got = tables.load(name_or_path, shipped_dir=SCENARIO_DIR, shown_dir=SHOWN_DIR, market_keys=MARKET_KEYS,
                      regime_keys=REGIME_KEYS, n_rcol=N_RCOL)
    f = got.fields
    if f["market"]["tick"] >= f["market"]["mid0"]:
        raise ConfigError(f"expected a tick < market.mid0 ({f['market']['mid0']:g})", path=f["path"],
                          field="market.tick")
    # resolved content, not file bytes: a comment edit keeps the cache, a value edit invalidates it
    content = json.dumps({"market": f["market"], "regimes": got.regime_specs, "segments": list(f["segments"])},
                         sort_keys=True, default=float)
    return Scenario(**f, content_hash=hashlib.sha256(content.encode()).hexdigest())
